"""Latency of `archc check specs/*.yaml`, as a ratio to `python -c "import torch"` (issue 2:
0.2 or less). Both are timed in the same run, so the ratio holds on any machine.

    .venv/bin/python bench/check_latency.py [--repeat 15] [--save] [SPEC ...]

Each repetition runs the two commands back to back as subprocesses (the real `archc` entry
point of this interpreter's environment); the medians and their ratio are printed, with the
machine, Python and torch versions. One untimed run of each comes first, to warm the disk
cache. `--save` also writes bench/results/check-latency-<machine>.json (the envelope of
bench/README.md). Asserts nothing: timings are not tests.

When PYTHONDONTWRITEBYTECODE is set (as in some CI images), a module edited since its .pyc
was written is compiled again at every start, so both settings are measured.
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def measure(check: list[str], torch: list[str], env: dict, repeat: int) -> tuple[float, float]:
    wall(check, env), wall(torch, env)  # untimed: disk cache, and .pyc files where they may be written
    times = {"check": [], "torch": []}
    for _ in range(repeat):  # interleaved, so drift in the machine's load hits both alike
        times["check"].append(wall(check, env))
        times["torch"].append(wall(torch, env))
    return statistics.median(times["check"]), statistics.median(times["torch"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="*", help="spec files (default: specs/*.yaml)")
    p.add_argument("--repeat", type=int, default=15, help="timed runs of each command (median)")
    p.add_argument("--save", action="store_true", help="also write bench/results/check-latency-<machine>.json")
    args = p.parse_args()
    specs = args.specs or sorted(os.path.relpath(s, ROOT) for s in glob.glob(os.path.join(ROOT, "specs", "*.yaml")))
    archc = os.path.join(os.path.dirname(sys.executable), "archc")
    check = [archc, "check", *specs]
    torch = [sys.executable, "-c", "import torch"]
    version = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True).stdout.strip()

    print(f"machine: {machine()}")
    print(f"python {platform.python_version()}, torch {version or 'not installed'}")
    print(f"A: `{os.path.relpath(archc, ROOT)} check {' '.join(specs)}`")
    print(f"B: `{os.path.relpath(sys.executable, ROOT)} -c \"import torch\"`")
    envs = [("environment as is", dict(os.environ))]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        envs = [("PYTHONDONTWRITEBYTECODE=1 (as set here)", dict(os.environ)), (".pyc files written and reused", cached)]
    rows = []
    for label, env in envs:
        a, b = measure(check, torch, env, args.repeat)
        print(f"{label}, median of {args.repeat}: A {a * 1000:.0f} ms, B {b * 1000:.0f} ms, ratio A/B {a / b:.3f}")
        rows.append({"setting": label, "archc_check_ms": round(a * 1000, 1), "import_torch_ms": round(b * 1000, 1), "ratio": round(a / b, 3), "runs": args.repeat})
    if args.save:
        from runtime.bench.envelope import envelope, write_results

        command = " ".join([".venv/bin/python bench/check_latency.py", f"--repeat {args.repeat}", "--save", *args.specs])
        figures = {"ratio": rows[0]["ratio"], "target": 0.2, "check_command": f"archc check {' '.join(specs)}", "load_average": round(os.getloadavg()[0], 1)}
        print(f"wrote {write_results(envelope('check-latency', command, rows=rows, figures=figures))}")


if __name__ == "__main__":
    main()
