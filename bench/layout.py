"""NCHW against channels_last, side by side in one process: which layout should training default to?

    .venv/bin/python bench/layout.py [--specs no_attention ...] [--device cpu|cuda] [--amp off|bf16]
                                     [--batch-size 32] [--mode train] [--iters 20] [--compile] [--out FILE]

For each spec, the emitted module is built twice with the same weights, once in each layout
(model and input), and training steps (or inference calls) of the two are timed in alternation,
one of each per round with the order rotated (runtime/bench/timing.py), so load from elsewhere
slows both alike. The ratio is the median of the per-round ratios with a 95% bootstrap interval.
runtime/train/setup.py's per-device layout default comes from these figures.

Writes bench/results/layout-<machine>.json (or --out) on the results envelope (bench/README.md).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch

import archcompiler
from runtime import allocator, vocab
from runtime.bench.device import resolve_device
from runtime.bench.envelope import envelope, write_results
from runtime.bench.runner import median_interval
from runtime.bench.steps import make_step
from runtime.bench.timing import time_interleaved
from runtime.files import write_text


def measure(name: str, device: torch.device, mode: str, batch: int, amp: str, warmup: int, iters: int, compiled: bool = False) -> dict:
    net = archcompiler.compile(str(ROOT / "specs" / f"{name}.yaml"))
    steps = {}
    for layout in ("nchw", "channels_last"):
        model = net.module(seed=0).to(device)
        cl = layout == "channels_last"
        if cl:
            model = model.to(memory_format=torch.channels_last)
        call = torch.compile(model, fullgraph=True) if compiled else model  # as archc train runs it on CUDA
        steps[layout] = make_step(call, model, mode, batch, tuple(net.input_shape), net.output_shape[0], device,
                                  amp=amp, channels_last=cl, optimizer="adam")
        for _ in range(warmup):
            steps[layout]()
    times = time_interleaved(steps, iters, device)
    ratios = [a / b for a, b in zip(times["nchw"].times, times["channels_last"].times)]
    return {"spec": name, "mode": mode, "batch": batch, "amp": amp, "compiled": compiled,
            "nchw_images_per_s": round(batch / times["nchw"].median, 2),
            "channels_last_images_per_s": round(batch / times["channels_last"].median, 2),
            "channels_last_speedup": round(statistics.median(ratios), 4), "ci95": median_interval(ratios), "rounds": iters}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/layout.py", description=__doc__.splitlines()[0])
    p.add_argument("--specs", nargs="+", default=["no_attention"], help="paper spec names (default no_attention)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=("off", "bf16"), default="off")
    p.add_argument("--mode", choices=("train", "infer"), default="train")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--compile", action="store_true", help="time compiled steps (torch.compile), as archc train runs on CUDA")
    p.add_argument("--out", type=Path, help="results file (default bench/results/layout-<machine>.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    device = resolve_device(args.device)
    used = allocator.for_device(device.type)  # as archc train does on the CPU
    vocab.fast_device_settings(device.type)  # as archc train does on CUDA
    rows = []
    for name in args.specs:
        row = measure(name, device, args.mode, args.batch_size, args.amp, args.warmup, args.iters, args.compile)
        print(f"{name} {args.mode} batch {args.batch_size} amp {args.amp}{' compiled' if args.compile else ''}: NCHW {row['nchw_images_per_s']:.1f} img/s, "
              f"channels_last {row['channels_last_images_per_s']:.1f} img/s, channels_last/NCHW {row['channels_last_speedup']:.3f} "
              f"{row['ci95']}", file=sys.stderr)
        rows.append(row)
    command = "python bench/layout.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data = envelope("layout", command.strip(), rows=rows, device=str(device),
                    figures={"threads": torch.get_num_threads(), "allocator": used, "optimizer": "adam (the paper's)",
                             "method": "two copies of the model, same weights; steps timed in alternation, order rotated per round"})
    if args.out:
        write_text(args.out, json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(f"wrote {write_results(data)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
