"""Atomic file writes for the run directory: a temporary file beside the target, fsync, then
os.replace, so a reader (or a crash) never sees half a file. The runtime keeps its own copy of
this small helper rather than importing the compiler's: runtime/ does not depend on archcompiler."""
from __future__ import annotations

import json
import os
import tempfile


def write_bytes(path, data: bytes) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            mask = os.umask(0)
            os.umask(mask)
            os.fchmod(f.fileno(), 0o666 & ~mask)  # mkstemp makes 0600; give what open() would
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def append_line(path, line: str) -> None:
    """For the human-readable log: appended and flushed, since a lost last line costs nothing."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
