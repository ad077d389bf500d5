"""The state a run carries from step to step, and what --resume does with it: the run
directory's checks, and restoring weights, optimizer, position and RNG from `checkpoints/last`."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from runtime.errors import CheckpointError, RuntimeUsageError, RuntimeUserError
from runtime.train import checkpoint, distributed


@dataclass
class State:
    """What changes as training goes: saved in state.pt, restored by --resume."""

    step: int = 0  # optimizer steps taken in all
    epoch: int = 1  # the epoch under way, from 1
    batch: int = 0  # batches of `epoch` already taken
    rows: list = field(default_factory=list)  # metrics rows of the finished epochs
    best_acc: float = -1.0  # best validation accuracy so far
    best_epoch: int | None = None  # the epoch that reached it
    wall_time: float = 0.0  # seconds spent in fit, summed over resumed sessions
    totals: list = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # this epoch so far: loss sum, correct, images, train seconds

    def to_dict(self) -> dict:
        return dict(self.__dict__)


LOCK = ".lock"  # in the run directory: held by the process that trains into it
_held: dict[Path, object] = {}  # run directory -> the open lock file this process holds


def _has_run(run_dir: Path) -> bool:
    return (run_dir / "checkpoints").is_dir() or (run_dir / "metrics.jsonl").exists()


def check_new_run_dir(run_dir: Path) -> None:
    """A new run's folder must be new or empty: refused (a usage error) when it holds a run or
    other files. The CLI asks before it decodes any data; fit() asks again when it starts."""
    if _has_run(run_dir):
        raise RuntimeUsageError(f"{run_dir} already holds a run; add --resume to continue it, or pick another --out")
    others = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK) if run_dir.is_dir() else []
    if others:  # `--out .` or `--out ~/work`: a run's files would mix with the folder's own
        listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise RuntimeUsageError(f"{run_dir} holds other files ({listed}); a new run needs a new or empty folder as --out")


def prepare_run_dir(run_dir: Path, resume: bool, world: distributed.World) -> None:
    def check() -> None:
        if resume and not (run_dir / "checkpoints" / "last").is_symlink():
            raise CheckpointError(f"--resume: {run_dir} has no checkpoint to resume from (checkpoints/last is missing)")
        if not resume:
            check_new_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for folder in (run_dir, run_dir / "checkpoints"):  # before the first step, not at the first checkpoint
            if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
                raise RuntimeUserError(f"{folder}: not writable by this user; the run could not save its checkpoints")
        lock_run_dir(run_dir)
        if not resume and _has_run(run_dir):  # another process started and finished a run here since the check above
            raise RuntimeUsageError(f"{run_dir} already holds a run; add --resume to continue it, or pick another --out")

    on_main(world, check)


# What a run writes in its directory before its first checkpoint (TensorBoard's event files
# are matched by their prefix): all that restart_unstarted removes.
RUN_FILES = ("config.json", "spec.yaml", "metrics.jsonl", "metrics.csv", "summary.json", "train.log", "curves.png", "curves.svg")


def restart_unstarted(run_dir: Path) -> None:
    """Empty a run that stopped before its first checkpoint, so that it starts again from step
    0 (`--resume` on it; its settings were read from config.json first). Only the files a run
    writes go, under the run's lock; anything else stays, and the new run then refuses it."""
    import shutil

    lock_run_dir(run_dir)
    checkpoints = run_dir / "checkpoints"
    if (checkpoints / "last").is_symlink():  # one appeared since the caller looked: not unstarted
        raise RuntimeUserError(f"{run_dir} has a checkpoint now; run --resume again to continue from it")
    ours = [p for p in run_dir.iterdir() if p.name in RUN_FILES or p.name.startswith("events.out.tfevents.")]
    others = sorted(p.name for p in run_dir.iterdir() if p not in ours and p.name not in (LOCK, "checkpoints"))
    if others:  # refused before anything is removed
        listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise RuntimeUserError(f"{run_dir} stopped before its first checkpoint, so --resume would start it again, but the folder also "
                               f"holds {listed}; move that out first, or train into another --out")
    for path in ours:
        path.unlink()
    if checkpoints.is_dir():  # only partial writes, none complete (no 'last' link)
        shutil.rmtree(checkpoints)


def lock_run_dir(run_dir: Path) -> None:
    """Hold an exclusive lock on `run_dir` until this process ends or release_run_dir: two
    trainings writing one run would leave a config of one and checkpoints of the other. The
    lock is the kernel's (flock), so a killed process never leaves a stale one behind."""
    import fcntl

    key = run_dir.resolve()
    if key in _held:  # this process holds it already (--seeds, a test's second fit)
        return
    # Opened for appending and never written: an empty file, whose content and time a resume
    # with nothing to do leaves as they were.
    handle = open(run_dir / LOCK, "a")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RuntimeUserError(f"{run_dir} is being trained by another process; wait for it to end, or pick another --out") from None
    _held[key] = handle


def release_run_dir(run_dir: Path) -> None:
    handle = _held.pop(Path(run_dir).resolve(), None)
    if handle is not None:
        handle.close()


def on_main(world: distributed.World, fn):
    """fn() on rank 0 only (the one that owns the run directory); its result, or its error,
    reaches every rank, so no rank is left waiting in a collective for one that failed."""
    result, error = None, None
    if world.main:
        try:
            result = fn()
        except RuntimeUserError as e:
            error = (type(e).__name__, str(e))
    result, error = distributed.broadcast(world, (result, error))
    if error is not None:
        cls = {"CheckpointError": CheckpointError, "RuntimeUsageError": RuntimeUsageError}.get(error[0], RuntimeUserError)
        raise cls(error[1])
    return result


def load_optimizer_state(optimizer, state: dict) -> None:
    """The saved state, keeping this machine's implementation (fused on CUDA, foreach or a
    loop elsewhere): the saved groups carry the choice of the machine that saved them."""
    chosen = [{k: g.get(k) for k in ("fused", "foreach")} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, implementation in zip(optimizer.param_groups, chosen):
        group.update(implementation)


def _rgb(values) -> str:
    return "(" + ", ".join(f"{v:.6f}" for v in values) + ")"


def restore(run_dir: Path, raw: nn.Module, optimizer, data_meta: dict, world, device) -> State:
    # Rank 0 reads and sends: in a multi-node job the other nodes need not see the run directory.
    ckpt = on_main(world, lambda: checkpoint.load(run_dir))
    saved = ckpt.state
    try:
        checkpoint.load_into(raw, ckpt.weights, ckpt.path)
        load_optimizer_state(optimizer, saved["optimizer"])
        for key in ("train_images", "val_images", "classes"):
            if saved["data_stats"][key] != data_meta[key]:
                raise RuntimeUserError(f"--resume: the data differs from the run's ({key}: {saved['data_stats'][key]} then, "
                                        f"{data_meta[key]} now); resume it on the data it started with")
        # The same counts with other pixels (an image replaced, edited, or another version of the
        # set): the training set's channel mean is exact (integer sums in float64), so it shows.
        then = saved["data_stats"].get("mean")
        if then is not None and then != data_meta["mean"]:
            raise RuntimeUserError(f"--resume: the training images differ from the run's (the same counts, but their channel mean "
                                   f"was {_rgb(then)}, now {_rgb(data_meta['mean'])}); resume it on the data it started with")
        state = State(**{k: saved[k] for k in State().to_dict()})
        rng = saved["rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}/state.pt does not hold a usable training state ({type(e).__name__}: {e})") from None
    if len(rng) == world.size:
        torch.set_rng_state(rng[world.rank]["torch"])
        if device.type == "cuda" and rng[world.rank]["cuda"] is not None:
            torch.cuda.set_rng_state(rng[world.rank]["cuda"], device)
    # else: a different number of processes; the weights and the schedule still resume
    # exactly, only dropout draws differ from an uninterrupted run.
    return state
