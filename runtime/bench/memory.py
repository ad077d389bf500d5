"""Peak memory of one step.

CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, the bytes of live
tensors at the step's high point (weights, optimizer state and the step's activations; not the
caching allocator's spare blocks).

CPU: the process's peak resident set size. `ru_maxrss` is a high-water mark over the whole
life of the process, so after one large row every later row would read the same number.
Linux lets a process reset its own mark: writing "5" to /proc/self/clear_refs sets VmHWM back
to the current RSS, and VmHWM in /proc/self/status then gives the peak during the step. Where
that file cannot be written (not Linux, or a locked-down container), ru_maxrss is reported and
the method says that it is a lifetime mark and so only an upper bound.

Both report `peak_bytes` (the absolute peak: on the CPU that includes the interpreter and
torch's libraries, some hundreds of MB) and `step_bytes`, the peak above what was held just
before the step, which is what the step itself needed. On the CPU, memory that malloc keeps
after a free (runtime.allocator) is handed back first, so the peak is the step's own.
"""
from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from runtime.allocator import release_freed_memory
from runtime.bench.device import synchronize


@dataclass
class MemoryPeak:
    peak_bytes: int
    step_bytes: int
    method: str


def measure_peak(step: Callable[[], object], device: torch.device) -> MemoryPeak:
    """Run `step` once and return the memory it peaked at."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return MemoryPeak(peak, peak - before, "torch.cuda.max_memory_allocated")
    release_freed_memory()  # what earlier rows freed but malloc kept must not count here
    if _reset_hwm():
        before = _status_kb("VmRSS")
        step()
        peak = _status_kb("VmHWM")
        return MemoryPeak(peak * 1024, (peak - before) * 1024, "peak RSS: VmHWM after resetting it through /proc/self/clear_refs")
    before = _maxrss_bytes()
    step()
    peak = _maxrss_bytes()
    return MemoryPeak(peak, max(peak - before, 0), "peak RSS: ru_maxrss, the process-lifetime high-water mark (an upper bound)")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


def _status_kb(field: str) -> int | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # macOS reports bytes, Linux KiB
