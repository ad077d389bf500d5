"""TensorBoard event files in the run directory, through torch's standard SummaryWriter.

`tensorboard --logdir runs` then shows every run: scalars per logged step (train loss and
accuracy so far in the epoch, learning rate, images/s) and per epoch (train and validation
loss, accuracy in percent, top-5), and the model's layer table as text. The model graph is
not written: tracing it costs a forward pass under torch.jit and often fails on compiled
models, for a picture `archc render` already draws. Only rank 0 writes. Without the
tensorboard package the run trains on with a warning: the events only mirror metrics.jsonl.
"""
from __future__ import annotations

import sys
from pathlib import Path


class Dashboard:
    def __init__(self, run_dir: Path | None, resume_step: int = 0, texts: dict | None = None):
        self.writer = None
        if run_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # the events are a view of metrics.jsonl, which is written anyway
            print(f"warning: no TensorBoard events for this run: {e} (make setup installs tensorboard); "
                  "metrics.jsonl and the curves are written as usual", file=sys.stderr)
            return

        # purge_step: a resumed run hides the events logged after its checkpoint, so the
        # curves show the run as it continued, not the steps that were redone.
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=resume_step or None)
        for tag, text in (texts or {}).items():
            self.writer.add_text(tag, text, global_step=resume_step)

    def step(self, step: int, loss: float, acc: float, lr: float, images_per_sec: float) -> None:
        if self.writer is None:
            return
        for tag, value in (("train/loss", loss), ("train/acc_percent", 100 * acc), ("train/lr", lr), ("train/images_per_sec", images_per_sec)):
            self.writer.add_scalar(tag, value, step)

    def epoch(self, row: dict) -> None:
        if self.writer is None:
            return
        step = row["step"]
        for key in ("train_loss", "val_loss", "epoch_seconds"):
            self.writer.add_scalar(f"epoch/{key}", row[key], step)
        for key in ("train_acc", "val_acc", "val_top5"):
            self.writer.add_scalar(f"epoch/{key}_percent", 100 * row[key], step)
        self.writer.flush()  # a dashboard open during the run sees each epoch at once

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
