"""Time of `emit` and `.module()` against the nesting depth of composites.

    .venv/bin/python bench/emit_depth.py [--depths 5,10,20,30,40,50] [--repeat 5] [--save]

A chain of D composites, each wrapping the one below, around a single 1x1 conv. For each
depth: the front-end (check), code generation (emit) and building the module (exec of the
source plus construction), each the median of --repeat runs in this process. The emitter of
archc 0.1 rendered each body twice per level (2^D); the IR-based one renders each instance
once, so every column should grow linearly. `--save` writes bench/results/emit-depth-<machine>.json.
Asserts nothing: timings are not tests.
"""
from __future__ import annotations

import argparse
import statistics
import time

import archcompiler
from archcompiler.api import Compiled
from archcompiler.driver import check_text


def chain(depth: int) -> str:
    blocks = ["  l0: {nodes: {c: {type: conv, out: 4, kernel: 1}}}"]
    blocks += [f"  l{i}: {{nodes: {{inner: {{type: l{i - 1}}}}}}}" for i in range(1, depth)]
    return "archc: 1\nname: deep\ninput: [4, 4, 4]\nblocks:\n" + "\n".join(blocks) + f"\nnodes:\n  top: {{type: l{depth - 1}}}\n"


def measure(depth: int, repeat: int) -> dict:
    text = chain(depth)
    times = {"check_ms": [], "emit_ms": [], "module_ms": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = check_text(text, f"<chain {depth}>")
        t1 = time.perf_counter()
        net = Compiled(result)
        net.source  # noqa: B018 - code generation, cached on the object
        t2 = time.perf_counter()
        net.module(seed=0)
        t3 = time.perf_counter()
        times["check_ms"].append((t1 - t0) * 1000)
        times["emit_ms"].append((t2 - t1) * 1000)
        times["module_ms"].append((t3 - t2) * 1000)
    return {"depth": depth, **{k: round(statistics.median(v), 2) for k, v in times.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default="5,10,20,30,40,50", help="comma-separated nesting depths")
    p.add_argument("--repeat", type=int, default=5, help="runs per depth (median)")
    p.add_argument("--save", action="store_true", help="write bench/results/emit-depth-<machine>.json")
    args = p.parse_args()
    archcompiler.compile(chain(2)).module()  # warm: imports, torch's first module construction
    rows = [measure(int(d), args.repeat) for d in args.depths.split(",")]
    print(f"{'depth':>5} {'check ms':>9} {'emit ms':>8} {'module ms':>9} {'emit ms/level':>13}")
    for r in rows:
        print(f"{r['depth']:>5} {r['check_ms']:>9.1f} {r['emit_ms']:>8.1f} {r['module_ms']:>9.1f} {r['emit_ms'] / r['depth']:>13.2f}")
    if args.save:
        from runtime.bench.envelope import envelope, write_results

        command = f".venv/bin/python bench/emit_depth.py --depths {args.depths} --repeat {args.repeat} --save"
        last, first = rows[-1], rows[0]
        figures = {"emit_ms_at_max_depth": last["emit_ms"], "emit_growth_per_level_ms": round((last["emit_ms"] - first["emit_ms"]) / (last["depth"] - first["depth"]), 3)}
        print(f"wrote {write_results(envelope('emit-depth', command, rows=rows, figures=figures))}")


if __name__ == "__main__":
    main()
