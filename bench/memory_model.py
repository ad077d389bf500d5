"""The memory model against the machine: predicted peak of a step (passes/memory.py, what
`archc check --batch-size N` prints) over the measured peak of live tensor bytes, per spec,
batch size, optimizer and autocast setting.

    .venv/bin/python bench/memory_model.py [--batch-size 1,32] [--optimizer sgd,adam] [--amp off,bf16] [--save] [SPEC ...]

Measured with runtime.bench.memory.step_tensor_peak: on CUDA torch.cuda.max_memory_allocated,
on the CPU the running sum of the profiler's memory events (every allocation and free of
torch's CPU allocator, with its size, in order). Both count tensors only, which is what the
model predicts; RSS would add the interpreter, libraries and malloc's slack. `--save` writes
bench/results/memory-model-<machine>.json (memory-model-infer-<machine>.json for --mode infer). Asserts nothing: tests/test_memory.py does.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import torch

import archcompiler
from archcompiler.passes.memory import predict
from runtime.bench.memory import step_tensor_peak

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="*", help="spec files (default: specs/*.yaml and specs/examples/*.yaml)")
    p.add_argument("--batch-size", default="1,32", help="comma-separated (default 1,32)")
    p.add_argument("--optimizer", default="sgd,adam", help="comma-separated (default sgd,adam)")
    p.add_argument("--amp", default="off,bf16", help="comma-separated (default off,bf16)")
    p.add_argument("--mode", default="train", choices=("train", "infer"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--save", action="store_true", help="also write bench/results/memory-model-<machine>.json (memory-model-infer-... with --mode infer)")
    args = p.parse_args()
    specs = args.specs or sorted(os.path.relpath(s, ROOT) for pat in ("specs/*.yaml", "specs/examples/*.yaml") for s in glob.glob(os.path.join(ROOT, pat)))
    device = torch.device(args.device)
    rows = []
    for path in specs:
        net = archcompiler.compile(path)
        for batch in map(int, args.batch_size.split(",")):
            for optimizer in args.optimizer.split(",") if args.mode == "train" else ["sgd"]:
                for amp in args.amp.split(","):
                    gen = torch.Generator().manual_seed(0)
                    x = torch.randn(batch, *net.input_shape, generator=gen).to(device)
                    y = torch.randint(0, net.output_shape[0], (batch,), generator=gen).to(device)
                    got = step_tensor_peak(net.module(seed=0, device=device), x, y, args.mode, optimizer, amp)
                    want = predict(net.graph, net.result.registry, batch, args.mode, optimizer, amp, device.type)
                    row = {"spec": net.name, "batch": batch, "mode": args.mode, "optimizer": optimizer if args.mode == "train" else "",
                           "amp": amp, "predicted_MiB": round(want.peak_bytes / 2**20, 1), "measured_MiB": round(got.peak_bytes / 2**20, 1),
                           "ratio": round(want.peak_bytes / got.peak_bytes, 3)}
                    rows.append(row)
                    print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    worst = max(rows, key=lambda r: abs(r["ratio"] - 1))
    print(f"worst ratio {worst['ratio']} ({worst['spec']}, batch {worst['batch']}, {worst['optimizer']}, amp {worst['amp']}); target 0.9 to 1.1")
    if args.save:
        from runtime.bench.envelope import envelope, write_results

        command = " ".join([".venv/bin/python bench/memory_model.py", f"--batch-size {args.batch_size}", f"--optimizer {args.optimizer}",
                            f"--amp {args.amp}", f"--mode {args.mode}", "--save", *args.specs])
        method = got.method
        figures = {"worst_ratio": worst["ratio"], "target": "0.9 to 1.1", "measured_by": method}
        print(f"wrote {write_results(envelope('memory-model' if args.mode == 'train' else 'memory-model-infer', command, rows=rows, figures=figures, device=device.type))}")
    sys.exit(0)


if __name__ == "__main__":
    main()
