"""Latency of `archc render specs/attn_reduction.yaml --expand -o x.svg` (issue 4: well under
a second, apart from Python start-up).

    .venv/bin/python bench/render_latency.py [--repeat 20] [--spec specs/attn_reduction.yaml]

Prints three views of the same command:
- in-process: `archcompiler.cli.render.render(...)` called in this interpreter, first call
  (imports and the standard library of blocks loading) and then warm, split into the
  front-end check, building the DOT, graphviz's layout to SVG, and the atomic write;
- as a subprocess: the real `archc` entry point, wall clock, next to a bare `python -c pass`
  so the interpreter's own start-up can be subtracted.
Medians and minima over --repeat runs. `--save` also writes the figures to
bench/results/render-latency-<machine>.json (the envelope of bench/README.md).
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


ROWS: list[dict] = []  # every figure printed, for --save


def stats(times: list[float], what: str) -> str:
    """Median, and the minimum: on a shared machine the minimum is the least disturbed run."""
    med, low = statistics.median(times), min(times)
    ROWS.append({"what": what, "median_ms": round(med * 1000, 1), "min_ms": round(low * 1000, 1), "runs": len(times)})
    return f"{ms(med)} median, {ms(low)} min"


def in_process(spec: str, out: str, repeat: int) -> None:
    t0 = time.perf_counter()
    from archcompiler.cli.render import render

    render(spec, out, expand=True)
    first = time.perf_counter() - t0
    print(f"in-process, first call (imports included) {ms(first)}")
    ROWS.append({"what": "in-process render, first call (imports included)", "median_ms": round(first * 1000, 1), "min_ms": round(first * 1000, 1), "runs": 1})

    from archcompiler.backends.dot import to_digraph
    from archcompiler.driver import check_file
    from archcompiler.tools.atomic import write_bytes

    total, stages = [], {"check": [], "dot": [], "layout": [], "write": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        render(spec, out, expand=True)
        total.append(time.perf_counter() - t0)

        t = [time.perf_counter()]
        r = check_file(spec)
        t.append(time.perf_counter())
        g = to_digraph(r.graph, r.registry, expand=True)
        t.append(time.perf_counter())
        svg = g.pipe(format="svg")
        t.append(time.perf_counter())
        write_bytes(out, svg)
        t.append(time.perf_counter())
        for k, (a, b) in zip(stages, itertools.pairwise(t)):
            stages[k].append(b - a)
    print(f"in-process, warm, {repeat} runs         {stats(total, 'in-process render, warm')}")
    for k, v in stages.items():
        print(f"  {k:<7}                             {stats(v, f'in-process stage: {k}')}")
    print(f"  DOT nodes and edges: {g.source.count(' [label=')} labelled statements, SVG {len(svg) / 1024:.0f} KiB")


def subprocess_wall(spec: str, out: str, repeat: int) -> None:
    archc = os.path.join(os.path.dirname(sys.executable), "archc")
    cmd = [archc] if os.path.exists(archc) else [sys.executable, "-m", "archcompiler"]
    render = cmd + ["render", spec, "--expand", "-o", out]
    check = cmd + ["check", "-q", spec]
    shown = " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)
    print(f"subprocess: `{shown} render {spec} --expand -o x.svg`")

    envs = [("environment as is", dict(os.environ))]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # Without .pyc files every start compiles each imported module again. A user's
        # machine keeps them, so measure that case too.
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        envs = [("PYTHONDONTWRITEBYTECODE=1, as this machine sets it", dict(os.environ)), (".pyc files cached", cached)]
    for label, env in envs:
        subprocess.run(render, check=True, cwd=ROOT, capture_output=True, env=env)  # warm the caches

        def wall(argv, env=env):
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                subprocess.run(argv, check=True, cwd=ROOT, capture_output=True, env=env)
                times.append(time.perf_counter() - t0)
            return times

        bare, front, full = wall([sys.executable, "-c", "pass"]), wall(check), wall(render)
        print(f"  {label}, {repeat} runs:")
        print(f"    archc render, wall                {stats(full, f'subprocess archc render, wall ({label})')}")
        print(f"    bare `python -c pass`             {stats(bare, f'subprocess python -c pass ({label})')}")
        print(f"    render minus bare start-up        {ms(statistics.median(full) - statistics.median(bare))} median, {ms(min(full) - min(bare))} min")
        print(f"    archc check -q (front-end alone)  {stats(front, f'subprocess archc check -q ({label})')}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", default="specs/attn_reduction.yaml")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--save", action="store_true", help="also write bench/results/render-latency-<machine>.json")
    args = p.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    print(f"python {platform.python_version()}, {platform.machine()}, {_cpu()}")
    print(f"graphviz: {_dot_version()}")
    load_before = os.getloadavg()
    print("load average before: " + ", ".join(f"{x:.2f}" for x in load_before))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "x.svg")
        in_process(args.spec, out, args.repeat)
        subprocess_wall(args.spec, out, args.repeat)
    load_after = os.getloadavg()
    print("load average after: " + ", ".join(f"{x:.2f}" for x in load_after))
    if args.save:
        # imports torch, so only after the timing
        from runtime.bench.envelope import envelope, write_results

        command = " ".join([".venv/bin/python", "bench/render_latency.py", *sys.argv[1:]])
        figures = {"python": platform.python_version(), "graphviz": _dot_version(), "load_1min_before": round(load_before[0], 2),
                   "load_1min_after": round(load_after[0], 2), "spec": args.spec}
        print(f"wrote {write_results(envelope('render-latency', command, rows=ROWS, figures=figures))}")
    return 0


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip() + f", {os.cpu_count()} CPUs"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _dot_version() -> str:
    try:
        return subprocess.run(["dot", "-V"], check=False, capture_output=True, text=True).stderr.strip()
    except OSError:
        return "dot not found"


if __name__ == "__main__":
    sys.exit(main())
