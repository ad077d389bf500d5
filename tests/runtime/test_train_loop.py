"""fit(): what a run directory holds, exact resume, Ctrl-C, the NaN guard, the schedule as
applied, and out-of-memory advice."""
from __future__ import annotations

import json
import signal
import xml.etree.ElementTree as ET

import pytest
import torch
from torch import nn

from runtime import allocator
from runtime.errors import RuntimeUsageError
from runtime.train import checkpoint
from runtime.train.loop import Diverged, Interrupted, OutOfMemory, fit
from runtime.train.metrics import COLUMNS
from tests.runtime.train_helpers import config, small_data, tiny_model

# A staircase halving every 4 steps, so the schedule shows within 12 steps; Adam, dropout and
# batchnorm make every part of the state matter for an exact resume.
CFG = {"lr_decay_every": 4, "lr_decay": 0.5}


def run(tmp_path, name="run", model=None, cfg=None, **kw):
    train, val = small_data()
    return fit(model or (lambda device: tiny_model()), train, val, cfg or config(**CFG), tmp_path / name,
               extra_meta={"model": "tiny"}, **kw)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted 2-epoch run that several tests read (training is the slow part)."""
    base = tmp_path_factory.mktemp("straight")
    run(base, "run", extra_files={"spec.yaml": "name: tiny\n"})
    return base / "run"


def final_weights(run_dir) -> dict:
    return checkpoint.load(run_dir).weights


def test_run_directory_holds_everything_a_user_reads(straight):
    d = straight
    assert (d / "spec.yaml").read_text() == "name: tiny\n"
    assert json.loads((d / "config.json").read_text())["batch_size"] == 16
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [6, 12]
    assert set(COLUMNS) <= set(rows[0])
    csv_lines = (d / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:9] == ["epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "images_per_sec", "epoch_seconds"]
    assert len(csv_lines) == 3
    assert (d / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = [t.text for t in ET.parse(d / "curves.svg").iter() if t.text and "accuracy" in t.text.lower()]
    assert titles  # the svg parses and carries its panel titles
    for tag in ("last", "best"):
        assert (d / "checkpoints" / tag).is_symlink() and checkpoint.load(d / "checkpoints" / tag).meta["model"] == "tiny"
    on_disk = json.loads((d / "summary.json").read_text())
    assert on_disk["best_val_acc"] == max(r["val_acc"] for r in rows) and on_disk["best_epoch"] in (1, 2)
    assert on_disk["params"] == sum(p.numel() for p in tiny_model().parameters())
    assert on_disk["status"] == "complete" and on_disk["steps"] == 12 and "torch" in on_disk["versions"]
    assert on_disk["allocator"] == allocator.describe() != ""  # how the CPU steps got their memory
    assert on_disk["wall_time_s"] > 0 and on_disk["device"].startswith("cpu")
    assert len((d / "train.log").read_text().splitlines()) == 2  # one line per epoch stays


def test_resume_after_ctrl_c_is_bitwise_identical(tmp_path, straight):

    def ctrl_c_at_step_8(step):  # mid-epoch 2: loader position, Adam moments and dropout RNG all matter
        if step == 8:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(Interrupted) as info:
        run(tmp_path, "stopped", on_step=ctrl_c_at_step_8)
    assert info.value.exit_code == 130 and info.value.step == 8
    assert checkpoint.load(tmp_path / "stopped").meta["step"] == 8
    run(tmp_path, "stopped", resume=True)
    a, b = final_weights(straight), final_weights(tmp_path / "stopped")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = lambda d: [(r["train_loss"], r["val_acc"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
    assert rows(straight) == rows(tmp_path / "stopped")


def test_resume_after_max_steps_is_bitwise_identical(tmp_path, straight):
    summary = run(tmp_path, "short", cfg=config(**CFG, max_steps=3))
    assert summary["status"] == "max_steps" and summary["steps"] == 3
    rows = [json.loads(x) for x in (tmp_path / "short" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["partial"] is True  # a quick run still reports validation
    run(tmp_path, "short", resume=True)
    a, b = final_weights(straight), final_weights(tmp_path / "short")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(x) for x in (tmp_path / "short" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and not any(r.get("partial") for r in rows)


class NaNAfter(nn.Module):
    """The tiny model, whose output turns to NaN from the `bad`-th training forward on."""

    def __init__(self, bad: int):
        super().__init__()
        self.net, self.bad, self.calls = tiny_model(), bad, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        out = self.net(x)
        return out * float("nan") if self.training and self.calls >= self.bad else out


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(Diverged, match=r"became nan at step 9 \(epoch 2\).*last good checkpoint is .*step-0000006"):
        run(tmp_path, model=NaNAfter(bad=9))
    ckpt = checkpoint.load(tmp_path / "run")
    assert ckpt.meta["step"] == 6 and all(torch.isfinite(w.float()).all() for w in ckpt.weights.values())
    assert [p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")] == ["step-0000006"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"  # not "running" for ever


def test_a_run_that_fails_says_so_in_its_summary(tmp_path):
    """A full disk at a checkpoint (or a bug) stops the run: summary.json says it failed, so
    compare does not list it as running."""
    import errno

    def full(step):
        if step == 3:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        run(tmp_path, on_step=full)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed: OSError"


def test_the_optimizer_uses_the_staircase(straight):
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    # the rate of each epoch's last step: iteration 5 -> 1e-3 * 0.5**1, iteration 11 -> 1e-3 * 0.5**2
    assert [r["lr"] for r in rows] == [5e-4, 2.5e-4]


def test_a_run_directory_is_never_overwritten(straight):
    with pytest.raises(RuntimeUsageError, match="already holds a run; add --resume"):
        run(straight.parent, straight.name)


class OOM(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_suggests_a_smaller_batch(tmp_path):
    with pytest.raises(OutOfMemory, match="ran out of memory at batch size 16.*--batch-size 8"):
        run(tmp_path, model=OOM())


def test_modern_recipe_trains_with_warmup_augmentation_and_smoothing(tmp_path):
    from runtime.train.config import resolve

    cfg = resolve({}, {"epochs": 2, "batch_size": 16, "progress": False, "device": "cpu"}, recipe="modern")
    summary = run(tmp_path, cfg=cfg)
    assert summary["status"] == "complete"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["recipe"] == "modern" and saved["augment_flip"] and saved["label_smoothing"] == 0.1
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # 6 steps per epoch: 2 warm-up epochs would be the whole run, so warm-up is a fifth of it (2
    # steps), and the rate decays by cosine to almost 0 at the run's last step
    from runtime.train.schedule import from_config

    schedule = from_config(cfg, 6)
    assert schedule.warmup_steps == 2 and schedule(1) == pytest.approx(2e-3)
    assert [r["lr"] for r in rows] == pytest.approx([schedule(5), schedule(11)])
    assert rows[-1]["lr"] < 0.05 * 2e-3
