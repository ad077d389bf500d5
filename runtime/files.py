"""Atomic file writes, for everything archc writes: a temporary file beside the target, fsync,
then os.replace, so a reader (or a crash, or Ctrl-C) never sees half a file, and a failed write
leaves the old file as it was. Imports nothing heavy: `archc check` and `emit` use it too."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def replacing(path) -> Iterator[str]:
    """Yield a temporary path beside `path`; when the block ends without an error, the file
    written there is synced and renamed over `path`. For writers that want a path (torch.save)."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):
        # Renaming over /dev/null (as root) or a folder's entry would destroy it; runtime.paths
        # refuses these paths up front, this is the last guard for any writer that did not ask.
        raise OSError(f"{path} is not a regular file; not replacing it")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, path) from None  # a full disk while writing: name the file, not the temporary
        raise


def write_bytes(path, data: bytes) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, data) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def append_line(path, line: str) -> None:
    """For the human-readable log: appended and flushed, since a lost last line costs nothing."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")


def to_nothing(name: str) -> bool:
    """Point sys.stdout or sys.stderr (`name`) at nothing, after its reader went away (`| head`):
    later writes, and the interpreter's own flush at exit, then neither fail nor print
    'Exception ignored'. False when not even os.devnull opens."""
    import sys

    try:
        setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - for the rest of the process
    except OSError:
        return False
    return True
