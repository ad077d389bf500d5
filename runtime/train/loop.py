"""`fit`: train any nn.Module on two ImageSets with a TrainConfig, into a run directory.

One epoch is: iterate the shuffled training batches, one optimizer step each, then measure
loss, top-1 and top-5 on the whole validation set (as the paper does), append a metrics row,
redraw the curves and checkpoint. Everything a resumed run needs is in the checkpoint: the
weights, the optimizer, the step (the schedule is a pure function of it), the loader position
(epoch, batch), every rank's RNG state and the epoch's running totals. On CPU a resumed run
therefore ends with the same bits as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from runtime import allocator, vocab
from runtime.errors import RuntimeUsageError, RuntimeUserError
from runtime.train import checkpoint, curves, distributed, metrics
from runtime.train.config import TrainConfig
from runtime.train.data import make_loader
from runtime.train.evaluate import evaluate
from runtime.files import write_json, write_text
from runtime.train.dashboard import Dashboard
from runtime.train.progress import Reporter
from runtime.train.resume import State, prepare_run_dir, release_run_dir, restore
from runtime.train.schedule import from_config, set_lr
from runtime.train.setup import (
    IgnoreSignals,
    StopOnSignal,
    channels_last_for,
    safe_layout,
    describe_device,
    device_kind,
    make_optimizer,
    place,
    resolved_amp,
    shard,
    unwrap,
    versions,
)


class Diverged(RuntimeUserError):
    """The loss became NaN or infinite; no checkpoint was written after it."""


class Interrupted(RuntimeUserError):
    """Ctrl-C or SIGTERM: a checkpoint was saved at the last finished step."""

    exit_code = 130

    def __init__(self, message: str, step: int, checkpoint_path: Path | None):
        super().__init__(message)
        self.step = step
        self.checkpoint_path = checkpoint_path


class OutOfMemory(RuntimeUserError):
    """The accelerator ran out of memory."""


def fit(model, train_set, val_set, config: TrainConfig, run_dir, *, resume: bool = False, extra_meta: dict | None = None,
        extra_files: dict | None = None, world: distributed.World | None = None, on_step: Callable[[int], None] | None = None,
        stream=None, dashboard_texts: dict | None = None) -> dict:
    """Train and return the summary (also written to run_dir/summary.json).

    `model` is an nn.Module, or a factory `f(device) -> nn.Module` (which may compile it).
    `extra_meta` (model name, FLOPs, spec hash...) goes into checkpoints and the summary;
    `extra_files` ({name: text}, e.g. the spec) are written into the run directory.
    `dashboard_texts` ({tag: markdown}, e.g. the layer table) go to TensorBoard as text.
    `on_step(step)` is called after each step: a hook for tests."""
    run_dir = Path(run_dir)
    kind = device_kind(config.device)
    world = world or distributed.init(kind)
    device = distributed.device_for(world, kind)
    amp = resolved_amp(config, kind)
    extra_meta = dict(extra_meta or {})
    if isinstance(model, nn.Module):  # config.json records the layout used; a factory's caller chose it (safe_layout too)
        config, _ = safe_layout(model, config, kind)
    else:
        config = dataclasses.replace(config, channels_last=channels_last_for(config, kind))
    if config.batch_size % world.size:
        raise RuntimeUsageError(f"batch size {config.batch_size} does not split evenly over {world.size} processes")

    prepare_run_dir(run_dir, resume, world)
    vocab.fast_device_settings(kind)  # CUDA: cuDNN's autotuner and TF32, as archc bench measures
    if kind != "cuda":
        allocator.keep_freed_memory()  # each step reuses the last one's pages instead of faulting in fresh ones
    torch.manual_seed(config.seed + world.rank)  # dropout differs per rank, as the batches do
    net = model(device) if callable(model) and not isinstance(model, nn.Module) else place(model, device, config, kind)
    raw = unwrap(net)
    if config.channels_last and (hazard := vocab.channels_last_hazard(raw, kind)):  # a factory's model: its caller chose the layout
        raise RuntimeUsageError(vocab.channels_last_refusal(hazard))
    trained = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if kind == "cuda" else None) if world.distributed else net
    optimizer = make_optimizer(raw.parameters(), config, kind)

    mean, std = train_set.channel_mean(), (train_set.channel_std() if config.normalize_std else None)
    train_loader = make_loader(train_set, batch_size=config.batch_size // world.size, train=True, config=config, device=device,
                               mean=mean, std=std, rank=world.rank, world_size=world.size)
    val_loader = make_loader(shard(val_set, world), batch_size=config.eval_batch_size, train=False, config=config, device=device,
                             mean=mean, std=std)
    steps_per_epoch = len(train_loader)
    schedule = from_config(config, steps_per_epoch)
    data_meta = {"dataset": config.data, "train_images": len(train_set), "val_images": len(val_set), "classes": len(train_set.classes),
                 "mean": mean.tolist(), "std": None if std is None else std.tolist()}

    state = State()
    if resume:
        state = restore(run_dir, raw, optimizer, data_meta, world, device)
        if config.max_steps is not None and state.step >= config.max_steps:
            return _nothing_to_do(run_dir, state, config, world)
    meta = {**extra_meta, "data_stats": data_meta, "config": config.to_dict()}
    compiled = hasattr(net, "_orig_mod")
    if world.main:
        # The choices as resolved on this machine, and under "requested" as given ("auto", None),
        # which is what --resume starts from: a run resumed elsewhere decides afresh.
        resolved = {"device": str(device), "compile": compiled, "amp": amp}
        write_json(run_dir / "config.json", {**config.to_dict(), **resolved, "requested": {k: getattr(config, k) for k in resolved},
                                             "world_size": world.size, "steps_per_epoch": steps_per_epoch, **meta})
        for name, text in (extra_files or {}).items():
            write_text(run_dir / name, text)
    reporter = Reporter(bar=config.progress, silent=not world.main, log_path=run_dir / "train.log" if world.main else None, stream=stream,
                        log_every=config.log_every)
    dashboard = Dashboard(run_dir if world.main else None, state.step, dashboard_texts)
    # CUDA graphs (reduce-overhead) replay into the same memory each step: each step, and each
    # validation call, is marked as a new one, so no output of the last is read after it is reused.
    step_begin = torch.compiler.cudagraph_mark_step_begin if compiled and vocab.uses_cudagraphs(config.compile_mode, kind) else (lambda: None)
    env = {"device": describe_device(device), "world_size": world.size, "amp": amp, "compile": compiled,
           "compile_mode": config.compile_mode if compiled else None,
           "channels_last": config.channels_last, "allocator": allocator.describe() if kind == "cpu" else None,
           "versions": versions(extra_meta)}
    trainer = _Trainer(trained=trained, net=net, raw=raw, optimizer=optimizer, schedule=schedule, config=config, state=state,
                       train_loader=train_loader, val_loader=val_loader, world=world, device=device, amp=amp, run_dir=run_dir,
                       meta=meta, reporter=reporter, dashboard=dashboard, on_step=on_step, env=env, step_begin=step_begin)
    if compiled and state.step == 0 and state.batch == 0:
        reporter.line("compiling the model (torch.compile): the first step takes longer", log=False)
    if resume:
        reporter.line(f"resumed {run_dir} at step {state.step} (epoch {state.epoch}, batch {state.batch}/{steps_per_epoch})")
    try:
        with StopOnSignal(say=world.main) as stop:
            trainer.stop = stop
            status = trainer.run()
    except (Interrupted, KeyboardInterrupt) as e:
        raise trainer.interrupted(e) from None
    except Diverged:
        trainer.mark("diverged")
        raise
    except torch.OutOfMemoryError:
        trainer.mark("out of memory")
        raise OutOfMemory(
            f"{describe_device(device)} ran out of memory at batch size {config.batch_size} "
            f"({config.batch_size // world.size} per process). Try a smaller batch, e.g. --batch-size {max(1, config.batch_size // 2)}"
            + ("" if amp == "bf16" else ", or --amp bf16") + ". The last checkpoint is unchanged.") from None
    except Exception as e:
        trainer.mark(f"failed: {type(e).__name__}")  # a full disk, a bug: not "running" for ever
        raise
    finally:
        reporter.close()
        dashboard.close()
    try:
        return trainer.finish(status)
    finally:
        release_run_dir(run_dir)


@dataclass(eq=False)
class _Trainer:
    """The loop itself and the state it runs with; fit() sets it up. Methods read top to bottom
    in the order they run."""

    trained: nn.Module  # what a training step calls: the model under DDP and/or torch.compile
    net: nn.Module  # the model without DDP (perhaps compiled): what validation calls
    raw: nn.Module  # the plain module: its state_dict is what checkpoints hold
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]  # the learning rate as a pure function of the step
    config: TrainConfig
    state: State  # what a checkpoint saves and --resume restores
    train_loader: object
    val_loader: object
    world: distributed.World
    device: torch.device
    amp: str  # resolved: "bf16" or "off"
    run_dir: Path
    meta: dict  # written into config.json, every checkpoint and the summary
    reporter: Reporter
    dashboard: Dashboard  # TensorBoard events (rank 0)
    on_step: Callable[[int], None] | None  # a hook for tests
    env: dict  # the device, versions and resolved choices, for summary.json
    step_begin: Callable[[], None]  # marks a new step for CUDA graphs (a no-op without them)
    stop: object = None  # the StopOnSignal of this session, set by fit()
    last_rows: list | None = None  # the metrics rows including a partial epoch's, once one ended
    session_start: float = field(default_factory=time.perf_counter)
    plotted_at: float = field(default_factory=time.perf_counter)  # the first epoch that ends a minute from now draws
    pending: list = field(default_factory=list)  # (step, loss tensor) not yet checked for NaN

    def __post_init__(self) -> None:
        self.wall_base = self.state.wall_time
        # CPU work is synchronous, so checking every step costs nothing; on a GPU each check
        # waits for the device, so losses are checked in windows of 25 steps.
        self.window = 1 if self.device.type == "cpu" else 25
        self.running = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, correct, images this session

    def run(self) -> str:
        c, s = self.config, self.state
        while s.epoch <= c.epochs:
            if c.max_steps is not None and s.step >= c.max_steps:
                return "max_steps"
            finished_epoch = self.train_epoch()
            self.end_epoch(partial=not finished_epoch)
            if not finished_epoch:
                return "max_steps"
        return "complete"

    def train_epoch(self) -> bool:
        """Steps until the epoch ends (True) or max_steps is reached (False)."""
        c, s = self.config, self.state
        total = len(self.train_loader)
        self.reporter.start_epoch(s.epoch, c.epochs, total, s.batch)
        self.trained.train()
        self.running.zero_()
        self.epoch_started = time.perf_counter() - s.totals[3]
        self.train_loader.set_epoch(s.epoch)
        for x, y in self.train_loader.iter_from(s.batch):  # (B, 3, H, W), (B,)
            if c.max_steps is not None and s.step >= c.max_steps:
                break
            if c.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            set_lr(self.optimizer, self.schedule(s.step))
            self.step_begin()
            with self.autocast():
                logits = self.trained(x)  # (B, classes)
                loss = F.cross_entropy(logits, y, label_smoothing=c.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            s.step += 1
            s.batch += 1
            with torch.no_grad():
                # torch.full, not torch.tensor: a tensor made from a Python number is copied from
                # the host, and on CUDA that copy waits for the device (a sync every step).
                self.running += torch.stack([loss.detach().double() * y.shape[0], (logits.argmax(1) == y).sum().double(),
                                             torch.full((), float(y.shape[0]), dtype=torch.float64, device=y.device)])
            self.pending.append((s.step, loss.detach()))
            if self.on_step is not None:
                try:
                    self.on_step(s.step)
                except KeyboardInterrupt:  # a test's stand-in for Ctrl-C, raised between steps
                    self.stop.requested = True
            # Every rank must flush at the same steps (it is a collective under DDP); a single
            # process may also flush early to honour Ctrl-C at once.
            due = len(self.pending) >= self.window or s.batch == total or (self.stop.requested and not self.world.distributed)
            if due and self.flush():
                self.interrupt()
            if c.checkpoint_every and s.step % c.checkpoint_every == 0 and s.batch < total:
                if self.flush():
                    self.interrupt()
                self.save(best=False)
        if self.flush():
            self.interrupt()
        return s.batch >= total

    def flush(self) -> bool:
        """Check the losses of the last window for NaN/inf, move the running totals into the
        state and refresh the bar: one device sync per window. Returns whether to stop now
        (Ctrl-C on any rank)."""
        if not self.pending:
            return False
        steps = [step for step, _ in self.pending]
        losses = torch.stack([loss for _, loss in self.pending]).float().tolist()
        self.pending.clear()
        bad = next(((step, v) for step, v in zip(steps, losses) if not math.isfinite(v)), None)
        any_bad, stop = distributed.any_rank(self.world, [bad is not None, self.stop.requested], self.device)
        if any_bad:
            last = checkpoint.read_link(self.run_dir, "last")
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
            where = f"became {bad[1]} at step {bad[0]}" if bad else f"became NaN or infinite on another process by step {steps[-1]}"
            raise Diverged(f"the training loss {where} (epoch {self.state.epoch}); stopped without saving, and {kept}. "
                           "Try a lower --lr" + (", or --amp off" if self.amp == "bf16" else ""))
        s, now = self.state, time.perf_counter()
        loss_sum, correct, count = self.running.tolist()
        self.running.zero_()
        s.totals = [s.totals[0] + loss_sum, s.totals[1] + correct, s.totals[2] + count, now - self.epoch_started]
        images = s.totals[2] * self.world.size
        stats = (s.totals[0] / max(1, s.totals[2]), s.totals[1] / max(1, s.totals[2]), self.schedule(max(0, s.step - 1)),
                 images / max(1e-9, s.totals[3]))  # loss and accuracy so far this epoch, lr, images/s
        self.reporter.update(s.batch, *stats, step=s.step)
        self.dashboard.step(s.step, *stats)
        return stop

    def end_epoch(self, partial: bool) -> None:
        """Validate, record the row, redraw the curves, checkpoint. A max_steps stop in the
        middle of an epoch gets a row too, marked partial, so a quick run reports something."""
        s = self.state
        loss_sum, correct, count, seconds = distributed.all_sum(self.world, s.totals, self.device)
        distributed.sync_buffers(self.world, self.raw)
        self.reporter.note("validating...")
        val = evaluate(self.net, self.val_loader, self.amp, self.world, self.device, step_begin=self.step_begin)
        row = {"epoch": s.epoch, "step": s.step, "lr": self.schedule(max(0, s.step - 1)),
               "train_loss": loss_sum / max(1, count), "train_acc": correct / max(1, count),
               "val_loss": val["loss"], "val_acc": val["top1"], "val_top5": val["top5"],
               "images_per_sec": count / max(1e-9, seconds / self.world.size),
               "epoch_seconds": time.perf_counter() - self.epoch_started}
        self.reporter.end_epoch()
        self.reporter.line(epoch_line(row, self.config.epochs, partial))
        self.dashboard.epoch(row)
        rows = [*s.rows, {**row, "partial": True} if partial else row]
        improved = row["val_acc"] > s.best_acc
        if improved:
            s.best_acc, s.best_epoch = row["val_acc"], s.epoch
        if not partial:
            s.rows, s.epoch, s.batch, s.totals = rows, s.epoch + 1, 0, [0.0, 0.0, 0.0, 0.0]
        self.save(best=improved)
        self.last_rows = rows
        if self.world.main:
            metrics.write(self.run_dir, rows)
            self.plot(force=False)
            write_json(self.run_dir / "summary.json", self.summary("running", rows))

    def plot(self, force: bool) -> None:
        """Redraw curves.png/svg. Drawing costs seconds, so between epochs it happens at most
        once a minute; the end of a run (or a Ctrl-C) always draws."""
        rows = self.rows()
        if not rows or not (force or time.perf_counter() - self.plotted_at >= 60):
            return
        self.plotted_at = time.perf_counter()
        name = self.meta.get("model", "run")
        curves.plot([(name, rows)], [self.run_dir / "curves.png", self.run_dir / "curves.svg"], title=f"{name}: {self.run_dir.name}")

    def interrupt(self) -> None:
        path = self.save(best=False)
        if self.world.main:
            self.plot(force=True)
        self.reporter.end_epoch()
        raise Interrupted(f"interrupted at step {self.state.step}; saved {path}", self.state.step, path)

    def interrupted(self, e: BaseException) -> Interrupted:
        """After Ctrl-C: summary.json says "interrupted" at the step of the last checkpoint, the
        one a resume starts from. A second Ctrl-C (KeyboardInterrupt, from StopOnSignal) may
        have cut the save or the plot short; the checkpoint on disk is what counts either way."""
        with IgnoreSignals():
            last, step = self._write_ended("interrupted", getattr(self, "last_rows", self.state.rows))
            last = last and self.run_dir / "checkpoints" / last.name  # as the first Ctrl-C's message names it
        if isinstance(e, Interrupted):
            return e
        self.reporter.end_epoch()
        kept = f"the last checkpoint is {last} (step {step})" if last else "no checkpoint had been written yet"
        return Interrupted(f"interrupted again at step {self.state.step}, quitting without saving; {kept}", step, last)

    def mark(self, status: str) -> None:
        """summary.json says how the run ended when it did not finish (else it would say what the
        last epoch wrote); best effort, since what stopped it may be a full disk."""
        try:
            self._write_ended(status, self.rows())
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass

    def _write_ended(self, status: str, rows) -> tuple[Path | None, int]:
        """summary.json of a run that stopped early, its steps those of the last checkpoint (where a
        resume starts); returns that checkpoint and its step."""
        last = checkpoint.read_link(self.run_dir, "last")
        step = checkpoint.step_of(last) if last else 0
        if self.world.main:
            write_json(self.run_dir / "summary.json", {**self.summary(status, rows), "steps": step})
        return last, step

    def save(self, best: bool) -> Path | None:
        s = self.state
        s.wall_time = self.wall_base + time.perf_counter() - self.session_start
        rng = distributed.gather(self.world, {"torch": torch.get_rng_state(),
                                              "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None})
        if not self.world.main:
            return None
        training = {**s.to_dict(), "optimizer": self.optimizer.state_dict(), "schedule": {"step": s.step}, "rng": rng,
                    "world_size": self.world.size, "config": self.config.to_dict(), "data_stats": self.meta["data_stats"]}
        meta = {**self.meta, "epochs_completed": len(s.rows), "position": {"epoch": s.epoch, "batch": s.batch},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tags = ("last", "best") if best else ("last",)
        return checkpoint.save(self.run_dir, s.step, self.raw.state_dict(), training, meta, tags)

    def finish(self, status: str) -> dict:
        rows = self.rows()
        in_sync = distributed.in_sync(self.world, self.raw) if self.world.distributed else None
        summary = self.summary(status, rows, in_sync)
        if self.world.main:
            self.plot(force=True)
            write_json(self.run_dir / "summary.json", summary)
        return summary

    def summary(self, status: str, rows: list, in_sync: bool | None = None) -> dict:
        s, last = self.state, (rows[-1] if rows else {})
        return {
            "model": self.meta.get("model"), "status": status, "run_dir": str(self.run_dir), "dataset": self.config.data,
            "params": sum(p.numel() for p in self.raw.parameters()), "flops": self.meta.get("flops"),
            "best_val_acc": s.best_acc if s.best_epoch is not None else None, "best_epoch": s.best_epoch,
            "final_val_acc": last.get("val_acc"), "final_val_loss": last.get("val_loss"), "final_train_acc": last.get("train_acc"),
            "epochs_completed": len(s.rows), "steps": s.step,
            "wall_time_s": self.wall_base + time.perf_counter() - self.session_start,
            "ranks_in_sync": in_sync, **self.env,
            "curves": [str(self.run_dir / "curves.png"), str(self.run_dir / "curves.svg")],
            "checkpoints": {t: str(p) for t in checkpoint.TAGS if (p := checkpoint.read_link(self.run_dir, t))},
        }

    def rows(self) -> list:
        return self.last_rows if self.last_rows is not None else self.state.rows

    def autocast(self):
        return vocab.autocast(self.device.type, self.amp)


def _nothing_to_do(run_dir: Path, state, config: TrainConfig, world) -> dict:
    """`--resume --max-steps N` on a run already at step N: report it, rewrite nothing."""
    from runtime.train.rundir import read_summary

    if world.main:
        print(f"{run_dir} is already at step {state.step}, --max-steps {config.max_steps}: nothing to train "
              "(give a larger --max-steps to go on)", file=sys.stderr)
    return read_summary(run_dir / "summary.json")


def epoch_line(row: dict, epochs: int, partial: bool = False) -> str:
    tag = " (partial, --max-steps)" if partial else ""
    return (f"epoch {row['epoch']:>3}/{epochs}{tag}  step {row['step']:>6}  lr {row['lr']:.2e}  "
            f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%  "
            f"val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:.2f}%  "
            f"{row['images_per_sec']:,.0f} img/s  {row['epoch_seconds']:.1f}s")
