"""Record a finished `archc train` run in bench/results/, so docs/benchmarks.md can quote it.

    .venv/bin/python bench/training_run.py RUN_DIR --name realdata-sample \
        --command "archc train specs/no_attention.yaml --data tiny-imagenet:DIR --epochs 3"

The rows are the run's metrics.csv (one per epoch); the figures come from its summary.json.
The date is when the run finished (summary.json's mtime), not when this script ran.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from runtime.bench.envelope import envelope, write_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--name", required=True, help="what this run shows; the file is training-NAME-<machine>.json")
    p.add_argument("--command", required=True, help="the command that produced the run")
    p.add_argument("--note", default="", help="conditions worth knowing (load, shared machine)")
    args = p.parse_args()
    summary = json.loads((args.run_dir / "summary.json").read_text())
    with open(args.run_dir / "metrics.csv", newline="") as f:
        rows = [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]
    keep = ("model", "status", "params", "flops", "best_val_acc", "best_epoch", "final_val_acc", "epochs_completed",
            "steps", "wall_time_s", "device", "world_size", "amp", "compile", "channels_last")
    figures = {k: summary[k] for k in keep if k in summary}
    if args.note:
        figures["note"] = args.note
    data = envelope(f"training-{args.name}", args.command, rows=rows, figures=figures)
    finished = os.path.getmtime(args.run_dir / "summary.json")
    data["date"] = datetime.fromtimestamp(finished, timezone.utc).isoformat(timespec="seconds")
    print(f"wrote {write_results(data)}")


def _num(v: str):
    try:
        return int(v)
    except ValueError:
        try:
            return round(float(v), 4)
        except ValueError:
            return v


if __name__ == "__main__":
    main()
