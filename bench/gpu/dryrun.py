"""`make gpu-dry-run`: the whole GPU programme on the CPU with tiny sizes, so it cannot rot.

    python bench/gpu/dryrun.py [--data DIR] [--keep DIR] [--wheels]

Packs the Tiny ImageNet sample ($ARCHC_TINY_IMAGENET, else ../shared/data/tiny-imagenet-sample)
into small parts, then runs the phases in the order the GPU jobs run them, through
bench/gpu/run.sh, each in a fresh $OUT: `train` before any part (it must name what is
missing), `data N` for every part (and one part twice: safe to repeat), `train --dry-run`
(the cache, then a few steps of no_attention), `bench --dry-run` (the CUDA tests, which skip
here, the peak, a short archc train, the layout comparison and two archc bench runs). Each
phase's last line must be its JSON summary, and the files it leaves in $OUT must be ones the
device tool brings back (at most 8, named plainly, at most 2 folders deep). With --wheels,
run.sh installs gpu-pack/wheels into $ARCHC_GPU_HOME/site as it does on the machine (run it with
a Python that lacks them, as the machine's does: make gpu-image-dry-run).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import pack  # noqa: E402 - bench/gpu/pack.py, beside this file

PLAIN = re.compile(r"^[A-Za-z0-9._-]+$")


def out_problems(out: Path) -> list[str]:
    """What the device tool would not bring back from `out`: more than 8 files, odd names, too deep, over 16 MiB."""
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = [f"{len(files)} files (at most 8 come back)"] if len(files) > 8 else []
    for p in files:
        rel = p.relative_to(out)
        if len(rel.parts) > 3 or not all(PLAIN.match(part) for part in rel.parts):
            problems.append(f"{rel}: too deep or oddly named")
        if p.stat().st_size > 16 * 2**20:
            problems.append(f"{rel}: over 16 MiB")
    return problems


def phase(work: Path, name: str, *args: str, env: dict) -> dict:
    out = work / "out" / f"{name}{''.join(args).replace('-', '')}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["bash", str(HERE / "run.sh"), name, *args, "--out", str(out), "--pack", str(work / "pack")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"gpu-dry-run: {' '.join(cmd)}: the last line is not a JSON summary:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    summary["_exit"] = proc.returncode
    summary["_out_problems"] = out_problems(out)
    print(f"gpu-dry-run: {name} {' '.join(args)}: exit {proc.returncode}, {lines[-1][:300]}", file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/gpu/dryrun.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="Tiny ImageNet tree (default: the shared sample)")
    p.add_argument("--keep", type=Path, default=None, help="work here and keep it (default: a temporary folder)")
    p.add_argument("--part-mib", type=float, default=3.0, help="part size for the rehearsal (default 3: several parts from the sample)")
    p.add_argument("--phases", default="data,train,bench", help="which phases to rehearse (default all: data,train,bench)")
    p.add_argument("--wheels", action="store_true", help="let run.sh install gpu-pack/wheels, as on the machine (default: this Python has them)")
    args = p.parse_args(argv)
    if args.wheels and not list((ROOT / "gpu-pack" / "wheels").glob("*.whl")):
        print("gpu-dry-run: --wheels: gpu-pack/wheels holds no wheels; make them with python bench/gpu/pack.py --no-data", file=sys.stderr)
        return 1
    data = args.data or pack.default_data()
    if not (data / "wnids.txt").is_file():
        print(f"gpu-dry-run: no Tiny ImageNet at {data}; set ARCHC_TINY_IMAGENET or pass --data", file=sys.stderr)
        return 1
    holder = None if args.keep else tempfile.TemporaryDirectory(prefix="archc-gpu-dry-")
    work = args.keep or Path(holder.name)
    env = {**os.environ, "ARCHC_GPU_HOME": str(work / "home"), "PYTHON": sys.executable}
    if not args.wheels:
        env["ARCHC_GPU_NO_WHEELS"] = "1"
    phases = set(args.phases.split(","))
    failures = []
    if phases & {"data", "train"}:
        manifest = pack.pack_data(data.resolve(), work / "pack", args.part_mib, set())
        n = len(manifest["parts"])
        early = phase(work, "train", "--dry-run", env=env)
        if early["ok"] or early["_exit"] == 0 or "no part" not in early.get("error", ""):
            failures.append("train before any part did not say that every part is missing")
        for k in [1, *range(1, n + 1)]:  # part 1 twice: repeating a data job is harmless
            s = phase(work, "data", str(k), env=env)
            if not s["ok"] or s["present"] != list(range(1, k + 1)) or s["_out_problems"]:
                failures.append(f"data {k}: {s}")
        if "train" in phases:
            s = phase(work, "train", "--dry-run", env=env)
            if not s["ok"] or s["missing"] or s["_out_problems"] or not any(r.get("steps") for r in s["runs"]):
                failures.append(f"train: {s}")
    if "bench" in phases:
        s = phase(work, "bench", "--dry-run", env=env)
        if not s["ok"] or s["_out_problems"] or s["environment"].get("missing_modules"):
            failures.append(f"bench: {s}")
    for f in failures:
        print(f"gpu-dry-run: FAILED {f}", file=sys.stderr)
    print(json.dumps({"dry_run": "ok" if not failures else "failed", "work": str(work), "failures": len(failures)}))
    if holder:
        holder.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
