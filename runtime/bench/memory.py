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


def tensor_peak(step: Callable[[], object]) -> tuple[int, int]:
    """(peak, end): the most tensor memory `step` held above what was allocated before it, and
    what it still held at its end, on the CPU, exactly: the profiler's memory events record
    every allocation and free of torch's CPU allocator with its size, in order, so their
    running sum is the step's live tensor bytes (the CPU counterpart of max_memory_allocated,
    without the interpreter, malloc's slack or libraries that RSS counts). Frees of tensors
    allocated before the step are not reported, so `step` should free none (zero_grad first)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = []
    pending = list(prof.profiler.kineto_results.experimental_event_tree())
    while pending:
        e = pending.pop()
        pending.extend(e.children)
        if e.tag == torch._C._profiler._EventType.Allocation:
            events.append((e.start_time_ns, e.extra_fields.alloc_size))
    running = peak = 0
    for _, size in sorted(events):
        running += size
        peak = max(peak, running)
    return peak, running


def step_tensor_peak(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None, mode: str = "train",
                     optimizer: str = "sgd", amp: str = "off") -> MemoryPeak:
    """The peak of live tensor bytes during one step of `model` on (x, y), counting everything
    allocated: weights, buffers, optimizer state, the batch and the step's own tensors. A first
    training step runs untimed, so the optimizer's state exists, as in every later step; the
    gradients it left are dropped (zero_grad) before the measured one. CUDA reads
    max_memory_allocated; the CPU sums the profiler's memory events (`tensor_peak`)."""
    from runtime.bench.steps import loss_of
    from runtime.vocab import autocast, make_optimizer

    device = x.device
    cast = autocast(device.type, amp)
    if mode == "train":
        model.train()
        opt = make_optimizer(optimizer, model.parameters(), 1e-3, device_type=device.type)

        def step():
            with cast:
                loss = loss_of(model(x), y)
            loss.backward()
            opt.step()

        step()
        opt.zero_grad(set_to_none=True)
        state = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    else:
        model.eval()
        state = []

        def step():
            with torch.no_grad(), cast:
                model(x)

    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return MemoryPeak(torch.cuda.max_memory_allocated(device), 0, "torch.cuda.max_memory_allocated")
    held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers(), *state, x, y]
            if t is not None}
    peak, _ = tensor_peak(step)
    base = sum(held.values())
    return MemoryPeak(base + peak, peak, "profiler memory events: the running sum of torch's CPU allocations and frees")
