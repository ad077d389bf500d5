"""The device's achievable peak FLOP/s, measured once and cached: the denominator of MFU.

A data-sheet peak is often unknown (a virtual CPU) or unreachable (boost clocks, sparsity), so
the harness measures one: square matrix multiplies of a few sizes, and a 3x3 convolution in
both memory formats, each timed several times in the dtype the model will run in. The peak is
the best rate any of them reaches, so MFU says how close the model comes to what this device
demonstrably does on its best-case kernels. A busy machine can only make the probe slower, so
the best time of many is kept, and `refresh=True` measures again but keeps the cached peak
if that was higher (delete the cache file to forget it).

The result is cached in `$ARCHC_CACHE/peak.json` (default `~/.cache/archc/peak.json`), keyed
by device name, torch version, dtype and CPU thread count (and TF32 settings on CUDA), since
each of these changes the peak.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from runtime.bench.device import device_name, synchronize
from runtime.files import write_text

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Peak:
    flops_per_s: float  # the best of the probes: MFU's denominator
    matmul_flops_per_s: float
    conv_flops_per_s: float
    method: str  # what was timed, in words
    key: str  # the cache key: device, torch, dtype, threads
    measured: str  # when (ISO 8601, UTC)
    cached: bool = False  # read from the cache rather than measured in this process

    def describe(self) -> str:
        src = "cached" if self.cached else "measured now"
        return (f"peak {self.flops_per_s / 1e12:.3f} TFLOP/s ({src} {self.measured[:10]}; matmul "
                f"{self.matmul_flops_per_s / 1e12:.3f}, conv {self.conv_flops_per_s / 1e12:.3f}): {self.method}")


def cache_path() -> Path:
    root = os.environ.get("ARCHC_CACHE")
    return Path(root) / "peak.json" if root else Path.home() / ".cache" / "archc" / "peak.json"


def peak_key(device: torch.device, dtype: str) -> str:
    parts = [device_name(device), f"torch {torch.__version__}", dtype]
    if device.type == "cuda":
        parts.append(f"tf32 matmul={torch.backends.cuda.matmul.allow_tf32} cudnn={torch.backends.cudnn.allow_tf32}")
    else:
        parts.append(f"{torch.get_num_threads()} threads")
    return " | ".join(parts)


def cached_peak(device: torch.device, dtype: str = "fp32") -> Peak | None:
    """The cached peak, or None: for callers that must not spend seconds on the probe."""
    key = peak_key(device, dtype)
    entry = _read(cache_path()).get(key)
    return Peak(**{**entry, "key": key, "cached": True}) if entry else None


def device_peak(device: torch.device, dtype: str = "fp32", refresh: bool = False) -> Peak:
    """The cached peak for this device and dtype, measured first if there is none (or `refresh`)."""
    key = peak_key(device, dtype)
    path = cache_path()
    cache = _read(path)
    if not refresh and key in cache:
        return Peak(**{**cache[key], "key": key, "cached": True})
    peak = measure(device, dtype)
    if key in cache and cache[key].get("flops_per_s", 0) > peak.flops_per_s:
        return Peak(**{**cache[key], "key": key, "cached": True})  # the machine was busier this time
    cache[key] = {k: v for k, v in asdict(peak).items() if k not in ("key", "cached")}
    _write(path, cache)
    return peak


def measure(device: torch.device, dtype: str = "fp32") -> Peak:
    """Time the probes now (a few seconds on a CPU, well under one on a GPU)."""
    dt = DTYPES[dtype]
    cuda = device.type == "cuda"
    sizes = (4096, 8192) if cuda else (512, 1024)
    repeats = 20
    mm_best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=dt) for _ in range(2))
        mm_best = max(mm_best, 2 * n**3 / _best_time(torch.mm, (a, b), device, repeats))
    batch, c, hw = (64, 256, 56) if cuda else (8, 256, 32)
    conv_best = 0.0
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(device=device, dtype=dt)
    x = torch.randn(batch, c, hw, hw, device=device, dtype=dt)
    conv_flops = 2 * batch * c * c * 9 * hw * hw
    with torch.no_grad():
        for fmt in (torch.contiguous_format, torch.channels_last):
            conv, x = conv.to(memory_format=fmt), x.contiguous(memory_format=fmt)
            conv_best = max(conv_best, conv_flops / _best_time(conv, (x,), device, repeats))
    method = (f"best of {repeats} runs each: torch.mm of {'/'.join(map(str, sizes))}-square {dtype} matrices, and a 3x3 "
              f"conv {c}->{c} channels on {batch}x{c}x{hw}x{hw} {dtype} in NCHW and channels_last; "
              f"the peak is the fastest of them")
    return Peak(max(mm_best, conv_best), mm_best, conv_best, method, peak_key(device, dtype),
                datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _best_time(fn, args: tuple, device: torch.device, repeats: int) -> float:
    for _ in range(2):  # warm-up: allocator, kernel selection, library start-up
        fn(*args)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # no cache yet, or a corrupt one: measure again


def _write(path: Path, cache: dict) -> None:
    try:
        write_text(path, json.dumps(cache, indent=2, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only home: the peak is still used for this run, only not kept
