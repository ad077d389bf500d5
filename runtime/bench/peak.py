"""The device's achievable peak FLOP/s, measured once and cached: the denominator of MFU.

A data-sheet peak is often unknown (a virtual CPU) or unreachable (boost clocks, sparsity), so
the harness measures one: square matrix multiplies of a few sizes, and a 3x3 convolution in
both memory formats, each timed several times in the dtype the model will run in. The peak is
the best rate any of them reaches, so MFU says how close the model comes to what this device
demonstrably does on its best-case kernels. A busy machine can only make the probe slower, so
the best time of many is kept, and `refresh=True` measures again but keeps the cached peak
if that was higher (delete the cache file to forget it).

The same probe measures the memory bandwidth (a large copy and add), the roof of memory-bound
layers for `archc bench --predict`; it is cached in `bandwidth.json` beside the peak.

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
    bytes_per_s: float = 0.0  # memory bandwidth: the best of a large copy and a large add (bytes read + written)

    def describe(self) -> str:
        src = "cached" if self.cached else "measured now"
        return (f"peak {self.flops_per_s / 1e12:.3f} TFLOP/s ({src} {self.measured[:10]}; matmul "
                f"{self.matmul_flops_per_s / 1e12:.3f}, conv {self.conv_flops_per_s / 1e12:.3f}; memory "
                f"{self.bytes_per_s / 1e9:.1f} GB/s): {self.method}")


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
    if not entry:
        return None
    return Peak(**{**_known(entry), "key": key, "cached": True, "bytes_per_s": _read(bandwidth_path()).get(key, 0.0)})


def device_peak(device: torch.device, dtype: str = "fp32", refresh: bool = False) -> Peak:
    """The cached peak for this device and dtype, measured first if there is none (or `refresh`)."""
    key = peak_key(device, dtype)
    path = cache_path()
    cache = _read(path)
    if not refresh and key in cache:
        return _with_bandwidth(Peak(**{**_known(cache[key]), "key": key, "cached": True}), device, refresh)
    peak = measure(device, dtype)
    if key in cache and cache[key].get("flops_per_s", 0) > peak.flops_per_s:  # the machine was busier this time
        return _with_bandwidth(Peak(**{**_known(cache[key]), "key": key, "cached": True, "bytes_per_s": peak.bytes_per_s}), device, refresh)
    cache[key] = {k: v for k, v in asdict(peak).items() if k not in ("key", "cached", "bytes_per_s")}
    _write(path, cache)
    return _with_bandwidth(peak, device, refresh)


def bandwidth_path() -> Path:
    """The bandwidth has a file of its own: archc versions from before it read peak.json's
    entries as they are, and must not meet a field they do not know."""
    return cache_path().with_name("bandwidth.json")


def _with_bandwidth(peak: Peak, device: torch.device, refresh: bool) -> Peak:
    """`peak` with the best bandwidth known: cached, measured in this process, or measured now."""
    path = bandwidth_path()
    cache = _read(path)
    old = cache.get(peak.key, 0.0)
    if not peak.bytes_per_s and (refresh or not old):
        peak.bytes_per_s = _bandwidth(device, 1024 if device.type == "cuda" else 256, 10)
    if peak.bytes_per_s > old:
        cache[peak.key] = peak.bytes_per_s
        _write(path, cache)
    peak.bytes_per_s = max(peak.bytes_per_s, old)
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
    mib = 1024 if cuda else 256
    bandwidth = _bandwidth(device, mib, repeats // 2)
    method = (f"best of {repeats} runs each: torch.mm of {'/'.join(map(str, sizes))}-square {dtype} matrices, and a 3x3 "
              f"conv {c}->{c} channels on {batch}x{c}x{hw}x{hw} {dtype} in NCHW and channels_last; "
              f"the peak is the fastest of them; bandwidth: best of {repeats // 2} copies and adds of {mib} MiB fp32 tensors")
    return Peak(max(mm_best, conv_best), mm_best, conv_best, method, peak_key(device, dtype),
                datetime.now(timezone.utc).isoformat(timespec="seconds"), bytes_per_s=bandwidth)


def _bandwidth(device: torch.device, mib: int, repeats: int) -> float:
    """Bytes read and written per second by a copy and by an add of tensors far larger than
    any cache: the rate a memory-bound layer can reach at best."""
    n = mib * 2**20 // 4
    a, b, out = (torch.empty(n, device=device).fill_(1.0) for _ in range(3))  # touched, so pages are mapped
    copy = 2 * n * 4 / _best_time(out.copy_, (a,), device, repeats)
    add = 3 * n * 4 / _best_time(lambda x, y: torch.add(x, y, out=out), (a, b), device, repeats)
    return max(copy, add)


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


def _known(entry: dict) -> dict:
    """The fields this version knows: a cache written by a newer archc may have more."""
    names = set(Peak.__dataclass_fields__)
    return {k: v for k, v in entry.items() if k in names}


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
