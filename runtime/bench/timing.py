"""Step timing: one clock per device, and interleaved timed rounds over several steps.

On CUDA each step is bracketed by CUDA events and the end event is waited for, so a step's
time is the device's time, not the time to queue kernels. On the CPU, work is synchronous and
the wall clock is read around each step.

Several steps that are to be compared (emitted against reference, eager against compiled) are
timed in alternation, one step of each per round with the order rotated every round, so a
burst of load from elsewhere on the machine slows all of them alike instead of one of them.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    """Step times of one timed candidate, in seconds."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


def clock(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """A function that runs a step and returns the seconds it took on `device`."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def timed_cuda(step):
            start.record()
            step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

        return timed_cuda

    def timed_cpu(step):
        t0 = time.perf_counter()
        step()
        return time.perf_counter() - t0

    return timed_cpu


def time_interleaved(steps: dict[str, Callable[[], object]], iters: int, device: torch.device) -> dict[str, Timing]:
    """Time `iters` calls of every step, one of each per round, rotating the order each round."""
    timed = clock(device)
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(iters):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(timed(steps[name]))
    return {n: Timing(t) for n, t in times.items()}
