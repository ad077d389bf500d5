"""Checkpoints that survive a crash at any moment.

Layout, inside a run directory:

    checkpoints/step-0001500/model.safetensors   the weights (safetensors: no code, loads anywhere)
    checkpoints/step-0001500/state.pt            optimizer, schedule step, loader position, RNG states
    checkpoints/step-0001500/meta.json           step, epoch, versions, and what the caller adds
    checkpoints/last -> step-0001500             symlinks, repointed atomically
    checkpoints/best -> step-0001000

A save writes a complete new directory under a temporary name, fsyncs every file, renames the
directory into place, and only then repoints `last` (and `best`) by renaming a fresh symlink
over the old one. A kill at any point leaves the old links pointing at a complete directory.
Loading uses safetensors and `torch.load(weights_only=True)`, so a checkpoint cannot run code,
and every failure is a CheckpointError that names the path and what is wrong with it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from runtime.errors import CheckpointError

FORMAT = "archc-checkpoint"
VERSION = 1
FILES = ("model.safetensors", "state.pt", "meta.json")
TAGS = ("last", "best")


@dataclass
class Checkpoint:
    path: Path  # the step directory that was read
    weights: dict  # parameter and buffer name -> tensor, on CPU
    state: dict | None  # training state (None when only weights were asked for)
    meta: dict


def step_name(step: int) -> str:
    return f"step-{step:07d}"


def save(run_dir, step: int, weights: dict, state: dict, meta: dict, tags: tuple[str, ...] = ("last",)) -> Path:
    """Write checkpoint `step` and point each of `tags` at it; returns its directory.

    The state at one step is the same whoever saves it, so a directory that already exists
    for this step (an epoch-end save, then Ctrl-C before the next step) is reused as it is."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / step_name(step)
    if not (final / "meta.json").is_file():
        _clear_stale(folder)
        tmp = folder / f".tmp-{step_name(step)}-{os.getpid()}"
        tmp.mkdir()
        from safetensors.torch import save as to_safetensors

        # clone: safetensors refuses tensors that share storage (tied weights, views)
        blob = to_safetensors({k: v.detach().cpu().contiguous().clone() for k, v in weights.items()})
        state_bytes = _torch_bytes(state)
        _write_file(tmp / "model.safetensors", blob)
        _write_file(tmp / "state.pt", state_bytes)
        # meta.json last: its presence marks a directory as complete. Its digests catch damage
        # that still parses (flipped bytes in a tensor), which no format check can see.
        digests = {"model.safetensors": hashlib.sha256(blob).hexdigest(), "state.pt": hashlib.sha256(state_bytes).hexdigest()}
        full_meta = {"format": FORMAT, "version": VERSION, "step": step, **meta, "sha256": digests}
        _write_file(tmp / "meta.json", (json.dumps(full_meta, indent=2, default=str) + "\n").encode())
        _fsync_dir(tmp)
        if final.exists():  # a directory a crash left without meta.json
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(folder)
    for tag in tags:
        _point(folder, tag, final.name)
    _prune(folder)
    return final


def _others(folder: Path) -> str:
    """A hint naming the complete step directories left in `folder`, to point 'last' at."""
    complete = sorted((d for d in folder.glob("step-*") if d.is_dir() and all((d / f).is_file() for f in FILES)), key=lambda d: d.name)
    if not complete:
        return ""
    newest = complete[-1]
    return (f"; {newest.name} is complete: give it as --checkpoint, or for --resume point the link at it "
            f"(ln -sfn {newest.name} {folder / 'last'})")


def step_of(folder: Path) -> int:
    """The step of a step directory, from its name (step_name's inverse)."""
    return int(Path(folder).name.removeprefix("step-"))


def resolve(path) -> Path:
    """The step directory meant by `path`: a run directory, its checkpoints/ folder, a link
    such as checkpoints/last or checkpoints/best, or a step directory itself."""
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise CheckpointError(f"{p} points to {os.readlink(p)}, which does not exist")
        raise CheckpointError(f"{p}: no such checkpoint")
    if p.is_file():
        raise CheckpointError(f"{p} is a file; give the checkpoint directory (e.g. runs/NAME or runs/NAME/checkpoints/best)")
    seeds = sorted((q.name for q in p.glob("seed-*") if (q / "checkpoints").is_dir()), key=lambda n: (len(n), n))
    if seeds and not (p / "checkpoints").is_dir():  # what `archc train --seeds` writes: one run per seed
        raise CheckpointError(f"{p} is a group of runs, one per seed ({', '.join(seeds)}); give one of them, e.g. {p / seeds[0]}")
    if (p / "checkpoints").is_dir():
        p = p / "checkpoints"
        if not (p / "last").is_symlink():
            raise CheckpointError(f"{p} holds no checkpoint yet (no 'last' link)")
    if (p / "last").is_symlink() or (p / "last").exists():
        link = p / "last"
        if not link.exists():
            raise CheckpointError(f"{link} points to {os.readlink(link)}, which does not exist{_others(p)}")
        p = link
    p = p.resolve()
    missing = [f for f in FILES if not (p / f).is_file()]
    if missing:
        raise CheckpointError(f"{p} is not a complete checkpoint: {', '.join(missing)} missing")
    return p


def load(path, *, weights_only: bool = False) -> Checkpoint:
    """Read a checkpoint (see `resolve` for what `path` may be). `weights_only=True` skips the
    training state, for evaluation, and also accepts a bare .safetensors file."""
    if weights_only and str(path).endswith(".safetensors") and Path(path).is_file():
        folder = Path(path).parent
        if Path(path).name == "model.safetensors" and all((folder / f).is_file() for f in FILES):
            return load(folder, weights_only=True)  # a checkpoint's own weights: with its meta.json (classes, preprocessing)
        return Checkpoint(Path(path), load_safetensors(path), None, {})
    folder = resolve(path)
    for attempt in range(3):
        try:
            return _load_folder(folder, weights_only)
        except (CheckpointError, FileNotFoundError) as e:
            # A run that is training rotates its checkpoints: the one 'last' named may be deleted
            # (file by file) while being read. If the link has moved on, read the new one; a
            # checkpoint that is damaged and still current stays an error.
            try:
                again = resolve(path)
            except CheckpointError:
                again = folder
            if attempt < 2 and again != folder:
                folder = again
                continue
            if isinstance(e, FileNotFoundError):
                raise CheckpointError(f"{e.filename}: vanished while it was read (is a run rotating its checkpoints?)") from None
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _load_folder(folder: Path, weights_only: bool) -> Checkpoint:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder / 'meta.json'} is unreadable or not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{folder / 'meta.json'} does not describe an archc checkpoint")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{folder} was written by a newer archc (checkpoint format {meta.get('version')}); upgrade archc")
    weights = load_safetensors(folder / "model.safetensors")
    _verify(folder, "model.safetensors", meta)  # after parsing, likewise
    state = None
    if not weights_only:
        try:
            with warnings.catch_warnings():  # torch's notes on a foreign pickle: the error below says it all
                warnings.simplefilter("ignore")
                state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickle, zip and unpickler errors all mean "corrupt"
            raise CheckpointError(f"{folder / 'state.pt'} is corrupt or not a training state ({_torch_reason(e)})") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{folder / 'state.pt'} does not hold a training state")
        _verify(folder, "state.pt", meta)  # after parsing: a file that does not parse gets the more precise message
    return Checkpoint(folder, weights, state, meta)


def _verify(folder: Path, name: str, meta: dict) -> None:
    """The file's SHA-256 against the one meta.json recorded (checkpoints from before have none)."""
    digests = meta.get("sha256")
    if not isinstance(digests, dict) or name not in digests:
        return
    if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digests[name]:
        raise CheckpointError(f"{folder / name} is corrupt: its bytes differ from those saved (SHA-256 mismatch with meta.json)")


def load_safetensors(path) -> dict:
    from safetensors.torch import load as from_safetensors

    try:
        weights = from_safetensors(Path(path).read_bytes())
    except Exception as e:  # noqa: BLE001 - the library raises several types for a bad file
        raise CheckpointError(f"{path} is not a valid safetensors file, perhaps truncated ({_first_line(e)})") from None
    # Training stops before a NaN step is saved, so NaN or inf here means damaged bytes: left
    # unchecked they evaluate to "loss nan, top-1 0%" with exit 0.
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path} is corrupt: {name} holds NaN or infinite values")
    return weights


def load_into(model: torch.nn.Module, weights: dict, source) -> None:
    """Copy `weights` into `model`, or say clearly why they do not fit it."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_some(missing)}")
        if unexpected:
            parts.append(f"unexpected {_some(unexpected)}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape of {k} is {tuple(weights[k].shape)} in the checkpoint, {tuple(own[k].shape)} in the model")
        raise CheckpointError(f"{source} does not fit this model: {'; '.join(parts)}")
    model.load_state_dict(weights)


def load_matching(model: torch.nn.Module, weights: dict, source) -> dict:
    """Fine-tuning: copy the tensors of `weights` whose name and shape match `model`'s; leave
    the rest freshly initialised. Returns the names loaded, those skipped (with why) and the
    model's tensors the checkpoint did not provide. Nothing matching is an error."""
    own = model.state_dict()
    loaded, skipped = [], {}
    for name, tensor in weights.items():
        if name not in own:
            skipped[name] = "not in this model"
        elif own[name].shape != tensor.shape:
            skipped[name] = f"shape {tuple(tensor.shape)} there, {tuple(own[name].shape)} here"
        else:
            loaded.append(name)
    if not loaded:
        raise CheckpointError(f"{source}: no tensor matches this model by name and shape; is it a checkpoint of another architecture?")
    model.load_state_dict({k: weights[k] for k in loaded}, strict=False)
    missing = sorted(set(own) - set(loaded))
    return {"loaded": loaded, "skipped": skipped, "missing": missing}


def read_link(run_dir, tag: str) -> Path | None:
    link = Path(run_dir) / "checkpoints" / tag
    return link.resolve() if link.exists() else None


# ---- the atomic steps


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _torch_bytes(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _point(folder: Path, tag: str, target: str) -> None:
    tmp = folder / f".{tag}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)  # relative: the run directory stays movable
    os.replace(tmp, folder / tag)  # rename(2) over the old link: atomic
    _fsync_dir(folder)


def _prune(folder: Path) -> None:
    """Delete step directories that no tag points to; one run keeps at most two."""
    keep = {os.readlink(folder / t) for t in TAGS if (folder / t).is_symlink()}
    for d in folder.glob("step-*"):
        if d.name not in keep and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


def _clear_stale(folder: Path) -> None:
    # Left by a writer that was killed mid-save; only rank 0 of one run ever writes here.
    for d in folder.glob(".tmp-*"):
        shutil.rmtree(d, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _torch_reason(e: BaseException) -> str:
    """Why torch.load refused a file, without torch's advice to retry with weights_only=False:
    that runs any code the file holds, which is the wrong advice for a file of unknown origin."""
    text = str(e)
    for line in text.splitlines():
        if "WeightsUnpickler error:" in line:
            return "it holds objects other than tensors and plain data: " + line.split("WeightsUnpickler error:", 1)[1].strip()
    if "weights_only" in text:
        return "it holds objects other than tensors and plain data"
    # miniz's message goes on to guess at causes; the first sentence is the finding
    return f"{type(e).__name__}: {_first_line(e).split(' This is an internal miniz error')[0]}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
