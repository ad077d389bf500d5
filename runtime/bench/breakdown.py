"""Where a step's time goes: a few steps under torch.profiler, with the ops sorted into families.

`archc bench --breakdown` runs this after a row is timed (the profiled steps are not timed). It
answers the question a ratio alone cannot: how much could anything but faster kernels gain?
If convolutions take 84% of an eager step, no fusion of the rest makes the step more than
1 / 0.84 = 1.19x faster, which bounds what torch.compile can do where it calls the same
convolution kernels as eager mode (inductor does, on CPU and GPU alike).

Families, by op name: `conv` (every convolution op, forward and backward: mkldnn, cudnn, or
the slow fallbacks), `matmul` (mm, addmm, bmm and their kin), `norm` (batch norm, forward and
backward), `optimizer` (whatever runs inside Optimizer.step and zero_grad), and `other`:
pooling, activations, adds, copies, the loss, and the fused kernels of compiled graphs, which
the profiler sees as one call per graph.

Time is each op's self time: CPU time of the calling thread on the CPU (it waits for the op's
worker threads, so this is wall time), kernel time on CUDA.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

FAMILIES = ("conv", "matmul", "norm", "optimizer", "other")
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear", "aten::_addmm_activation")


@dataclass
class Breakdown:
    shares: dict[str, float]  # family -> fraction of the step's profiled time
    total_ms: float  # profiled time per step (the profiler adds some overhead)

    def bound(self, family: str = "conv") -> float | None:
        return bound(self.shares, family)


def describe(shares: dict[str, float]) -> str:
    """'conv 84.5%, norm 3.4%, ...': the families with a visible share (conv always)."""
    return ", ".join(f"{name} {share:.1%}" for name, share in shares.items() if share >= 0.0005 or name == "conv")


def bound(shares: dict[str, float], family: str = "conv") -> float | None:
    """How much faster the step could get if everything but `family` took no time."""
    share = shares.get(family, 0.0)
    return 1 / share if share > 0 else None


def family(name: str, in_optimizer: bool) -> str:
    if in_optimizer:
        return "optimizer"
    lowered = name.lower()
    if "convolution" in lowered or lowered.startswith(("aten::conv", "aten::cudnn_conv", "aten::mkldnn_conv")):
        return "conv"
    if name in MATMUL or "gemm" in lowered:
        return "matmul"
    if "batch_norm" in lowered:
        return "norm"
    return "other"


def profile_step(step: Callable[[], object], device, steps: int = 2) -> Breakdown:
    """Run `step` `steps` times (on torch.device `device`) under the profiler and share out its time by family."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with _native_stderr_silenced(), profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return share_out(prof.events(), cuda=device.type == "cuda", steps=steps)


def share_out(events, *, cuda: bool, steps: int) -> Breakdown:
    """Self times of profiler `events` (FunctionEvents with .cpu_parent), summed by family."""
    from torch.autograd import DeviceType

    totals = dict.fromkeys(FAMILIES, 0.0)
    for event in events:
        if getattr(event, "device_type", DeviceType.CPU) != DeviceType.CPU:
            continue  # a kernel's own record: its time is counted on the op that launched it
        us = _self_device_us(event) if cuda else event.self_cpu_time_total
        if not us:
            continue
        totals[family(event.name, _under_optimizer(event))] += us
    whole = sum(totals.values())
    shares = {k: (v / whole if whole else 0.0) for k, v in totals.items()}
    return Breakdown(shares, whole / 1e3 / steps)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Kineto writes lines such as 'USDT: ... profiler_start' straight to file descriptor 2 on
    every start and stop; they would bury the harness's own output. The steps profiled here have
    already run many times, so nothing else is expected there."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2: nothing to protect
        yield
        return
    sys.stderr.flush()
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _under_optimizer(event) -> bool:
    while event is not None:
        if event.name.startswith(("Optimizer.step", "Optimizer.zero_grad")):
            return True
        event = event.cpu_parent
    return False


def _self_device_us(event) -> float:
    # Kernels are attributed to the op that launched them; "self" excludes its children's.
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, attr):
            return getattr(event, attr)
    return 0.0
