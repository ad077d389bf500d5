"""Keep freed memory in the process, so that CPU steps stop paying for page faults.

A training step on the CPU allocates its activations afresh every step: tens of megabytes per
tensor for the paper's models at batch 32. glibc's malloc serves blocks above its mmap
threshold (128 KiB, rising to at most 32 MiB as blocks are freed) with a fresh `mmap`, and
gives them back with `munmap` on free. Each new page is then zeroed by the kernel on first
touch, so every step faults in its whole working set again, and on a 2-core CPU that costs a
training step of `no_attention` a sixth or more of its time (see docs/benchmarks.md).

`keep_freed_memory()` tells glibc to serve every block from its heap (`M_MMAP_MAX = 0`) and to
give memory back to the system only when more than 1 GiB is free at the top of the heap
(`M_TRIM_THRESHOLD`). A step then reuses the warm pages the previous step freed. The process's
resident size stays near its high-water mark instead of falling between steps, which is what
a training process wants anyway. It is what PyTorch's CPU tuning guide gets by preloading
jemalloc or tcmalloc, without a preload.

`archc train` and `archc bench` call it when they run on the CPU, as does bench/data_pipeline.py.
Set `ARCHC_MALLOC=system` to leave malloc as it is (for example to compare, or when a
preloaded allocator is in use). Elsewhere than glibc (macOS, musl) it does nothing and says so.

`release_freed_memory()` (`malloc_trim(0)`) returns what is free to the system now: the
benchmark calls it before measuring a row's peak RSS, so that one row's kept memory does not
count towards the next row's peak.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30

_state: str | None = None


@lru_cache(maxsize=1)
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode()
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both must exist
    except (OSError, AttributeError):
        return None  # not glibc (musl has no gnu_get_libc_version)
    return libc, version


def keep_freed_memory() -> str:
    """Configure malloc as above, once per process; returns a description for reports."""
    global _state
    if _state is not None:
        return _state
    if os.environ.get("ARCHC_MALLOC", "").strip().lower() == "system":
        _state = "system malloc as configured (ARCHC_MALLOC=system)"
        return _state
    found = _glibc()
    if found is None:
        _state = "system malloc as configured (not glibc)"
        return _state
    libc, version = found
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _state = (f"glibc {version} malloc keeping freed memory (M_MMAP_MAX=0, M_TRIM_THRESHOLD=1 GiB)" if ok
              else f"glibc {version} malloc as configured (mallopt refused the settings)")
    return _state


def for_device(kind: str) -> str:
    """For a benchmark on a device of `kind` ("cpu" or "cuda"): keep freed memory on the CPU,
    and return what allocated the step's memory, for the results file."""
    return keep_freed_memory() if kind == "cpu" else "torch.cuda caching allocator"


def release_freed_memory() -> bool:
    """Give free heap memory back to the system now; False where that is not possible."""
    found = _glibc()
    if found is None:
        return False
    found[0].malloc_trim(0)
    return True


def describe() -> str:
    """What keep_freed_memory() did in this process, or the default when it was not called."""
    return _state or "system malloc as configured"
