"""Output paths, checked before any work starts: the one place every output flag goes through.

A command that computes for minutes and then cannot write its result has lost those minutes,
so each subcommand checks its outputs first: a file path must name a regular file (or nothing
yet) in an existing, writable folder; a folder path must be a folder, or one archc may create
where the docs say so (`train --out`, `bench --results-dir` with --save). The test is a real one: a
temporary file is created and removed in the folder, which is the only check that holds for
root, read-only mounts and /proc alike. Imports nothing heavy: `archc emit` uses it too.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from runtime.errors import RuntimeUsageError


def output_file(path, flag: str, reads=()) -> Path:
    """`path` as a file archc may write (atomically, beside itself); else a usage error naming `flag`.
    `reads` are what the command reads (files, or run directories and checkpoints): the output
    must not replace one of those files, nor a file a run keeps (RUN_FILES, its checkpoints)."""
    written = str(path)
    path = Path(path)
    if str(path) == "" or path.name in ("", ".", "..") or written.endswith(("/", os.sep)):  # `x.py/` names a folder; Path drops the slash
        raise RuntimeUsageError(f"{flag} {written}: give a file name, not a folder")
    parent = path.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise RuntimeUsageError(f"{flag} {path}: the folder {parent} {what}; create it first")
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise RuntimeUsageError(f"{flag} {path}: cannot be written ({e.strerror})") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise RuntimeUsageError(f"{flag} {path}: is a folder; give a file name inside it")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise RuntimeUsageError(f"{flag} {path}: is not a regular file (a device, pipe or socket); give a file name")
    if st is not None:
        _not_an_input(path, flag, reads)
    _probe(parent, flag, path)
    return path


# What a run directory holds that archc reads back (besides checkpoints/): an output may be
# written beside them (an exported model.onnx), not over them.
RUN_FILES = {"summary.json", "metrics.jsonl", "metrics.csv", "config.json", "spec.yaml", "train.log", "curves.png", "curves.svg", "curves.pdf",
             "model.safetensors", "state.pt", "meta.json"}


def _not_an_input(path: Path, flag: str, reads) -> None:
    """An existing `path` that is one of the command's inputs, or a file of an input run or
    checkpoint folder, would be destroyed by the result: refused."""
    target = path.resolve()
    for source in filter(None, reads):
        source = Path(source)
        if not source.exists():
            continue
        real = source.resolve()
        inside = source.is_dir() and real in target.parents
        kept = inside and ("checkpoints" in target.relative_to(real).parts or target.name in RUN_FILES
                           or target.name.startswith("events.out.tfevents"))
        if target == real or kept:
            what = "is a file" if target == real else f"is a file of {source}, which"
            raise RuntimeUsageError(f"{flag} {path}: {what} this command reads; writing there would destroy its input, so write elsewhere")
    # any other run's own files too (`compare A --plot B/curves.png`): nothing redraws them
    for run in target.parents:
        if (run / "config.json").is_file() and ((run / "metrics.jsonl").exists() or (run / "summary.json").exists()):
            rest = target.relative_to(run).parts
            if "checkpoints" in rest or (len(rest) == 1 and (target.name in RUN_FILES or target.name.startswith("events.out.tfevents"))):
                raise RuntimeUsageError(f"{flag} {path}: is a file of the training run {run}; writing there would replace it, so write elsewhere")
            break


def output_dir(path, flag: str, *, may_create: bool = False) -> Path:
    """`path` as a folder archc may write into. With `may_create` it may be missing (the command
    creates it later, with its parents); its nearest existing ancestor must then be writable.
    Nothing is created here, so a command refused later for another reason leaves no folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RuntimeUsageError(f"{flag} {path}: is a file, not a folder")
    if path.is_dir():
        _probe(path, flag, path)
        return path
    if not may_create:
        raise RuntimeUsageError(f"{flag} {path}: no such folder")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RuntimeUsageError(f"{flag} {path}: cannot be created, {ancestor} is a file")
    _probe(ancestor, flag, path)
    return path


def cache_dir(given, data: str | None = None) -> None:
    """The decoded-dataset cache's folder, --cache-dir or else $ARCHC_CACHE_DIR, checked before the
    minutes of decoding that precede its first write (the default under ~/.cache is not). The
    synthetic set is made in memory and needs none."""
    import os

    if given is not None:
        output_dir(given, "--cache-dir", may_create=True)
    elif os.environ.get("ARCHC_CACHE_DIR") and not (data or "").startswith("synthetic"):
        output_dir(os.environ["ARCHC_CACHE_DIR"], "$ARCHC_CACHE_DIR", may_create=True)


def _probe(folder: Path, flag: str, target: Path) -> None:
    """Create and remove a file in `folder`: what the atomic writers will do there later."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".archc-probe-")
    except OSError as e:
        raise RuntimeUsageError(f"{flag} {target}: cannot write in {folder} ({e.strerror})") from None
    os.close(fd)
    os.unlink(tmp)
