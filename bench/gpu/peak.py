"""The device's measured peak in fp32 and bf16 (runtime/bench/peak.py), as a results envelope.

    python bench/gpu/peak.py --out FILE [--device cuda|cpu]

MFU in every `archc bench` row is measured against these probes; this file keeps both dtypes'
numbers side by side for docs/benchmarks.md. It always measures afresh (the cache keeps the
higher of the old and new peak, as `archc bench --peak-refresh` does).
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from runtime.bench.device import device_name, resolve_device
from runtime.bench.peak import device_peak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/gpu/peak.py")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    rows = []
    for dtype in ("fp32", "bf16") if device.type == "cuda" else ("fp32",):  # bf16 on a CPU is emulated: not a peak
        peak = device_peak(device, dtype, refresh=True)
        rows.append({"dtype": dtype, "peak_tflops": round(peak.flops_per_s / 1e12, 3), "matmul_tflops": round(peak.matmul_flops_per_s / 1e12, 3),
                     "conv_tflops": round(peak.conv_flops_per_s / 1e12, 3), "measured": peak.measured, "method": peak.method})
        print(peak.describe(), file=sys.stderr)
    envelope = {"kind": "peak", "machine": device_name(device), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "torch": torch.__version__, "device": device.type, "command": "python bench/gpu/peak.py", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(envelope, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
