"""`archc compare RUN_DIR...`: training runs side by side.

A table in the manner of the paper's Figure 12 (model, parameters, FLOPs, best validation
accuracy, the epoch of it, wall time) as text, markdown, csv or json, and with `--plot` the
four charts of Figures 8-11 with one line per run. Reads only each run's summary.json and
metrics.jsonl, so it works on runs still in progress and on runs from other machines.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime import argtypes
from runtime.errors import RuntimeUsageError, RuntimeUserError
from runtime.paths import output_file
from runtime.train import curves, metrics, rundir

COLUMNS = ("model", "params", "flops", "best_val_acc", "best_epoch", "epochs", "wall_time_s", "run")
HEADERS = {"model": "Model", "params": "Params", "flops": "FLOPs", "best_val_acc": "Best val acc", "best_epoch": "Epoch of best",
           "epochs": "Epochs", "wall_time_s": "Wall time", "run": "Run"}


@dataclass
class Run:
    path: Path
    summary: dict
    rows: list[dict]

    @property
    def model(self) -> str:
        return self.summary.get("model") or self.path.name

    def record(self) -> dict:
        s, rows = self.summary, self.rows
        best = max(rows, key=lambda r: r["val_acc"] if r.get("val_acc") is not None else -1, default=None)
        return {
            "model": self.model,
            "params": s.get("params"),
            "flops": s.get("flops"),
            "best_val_acc": s.get("best_val_acc", best and best.get("val_acc")),
            "best_epoch": s.get("best_epoch", best and best.get("epoch")),
            "epochs": len(rows),
            "wall_time_s": s.get("wall_time_s", sum(r.get("epoch_seconds") or 0 for r in rows) or None),
            "run": str(self.path),
        }


def read_run(path) -> Run:
    path = Path(path)
    summary_path = path / "summary.json"
    if not path.is_dir():
        raise RuntimeUserError(f"{path}: no such run directory")
    if not summary_path.exists() and not (path / "metrics.jsonl").exists():
        raise RuntimeUserError(f"{path} is not a training run (no summary.json or metrics.jsonl); runs are what `archc train --out` writes")
    summary = rundir.read_summary(summary_path) if summary_path.exists() else {}
    return Run(path, summary, rundir.check_rows(path / "metrics.jsonl", metrics.read(path)))


def compare(paths: list) -> list[dict]:
    return [read_run(p).record() for p in paths]


def labels(runs: list[Run]) -> list[str]:
    """Model names, with the run directory added where two runs train the same model."""
    names = [r.model for r in runs]
    return [f"{n} ({r.path.name})" if names.count(n) > 1 else n for n, r in zip(names, runs)]


# ---- formats


def _human(column: str, value) -> str:
    if value is None:
        return "-"
    if column in ("params", "flops"):
        for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
            if value >= max(1000, scale / 10):  # 0.712 M, as the paper writes it, rather than 712.392 K
                return f"{value / scale:.3f} {unit}"
        return str(value)
    if column == "best_val_acc":
        return f"{100 * value:.1f}%"
    if column == "wall_time_s":
        value = float(value)
        if value < 120:
            return f"{value:.1f} s"
        hours, rest = divmod(round(value), 3600)
        return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"
    return str(value)


def render(records: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()
    cells = [[HEADERS[c] for c in COLUMNS]] + [[_human(c, r[c]) for c in COLUMNS] for r in records]
    right = {"params", "flops", "best_val_acc", "best_epoch", "epochs", "wall_time_s"}
    if fmt == "markdown":
        rule = ["---:" if c in right else "---" for c in COLUMNS]
        return "".join("| " + " | ".join(row) + " |\n" for row in [cells[0], rule, *cells[1:]])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(v.rjust(w) if c in right else v.ljust(w) for v, w, c in zip(row, widths, COLUMNS)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argtypes.Parser(prog="archc compare", description="Compare training runs: a Figure 12 style table and Figures 8-11 style overlays.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by `archc train --out`")
    p.add_argument("--format", choices=("text", "markdown", "csv", "json"), default="text", help="table format")
    p.add_argument("--plot", action="append", default=[], metavar="OUT", help="also draw the four charts with one line per run (.png, .svg or .pdf; repeatable)")
    return p


def check_args(args) -> None:
    for out in args.plot:
        if Path(out).suffix.lower() not in (".png", ".svg", ".pdf"):
            raise RuntimeUsageError(f"--plot {out}: the file must end in .png, .svg or .pdf")
        output_file(out, "--plot")


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    runs = [read_run(p) for p in args.runs]
    sys.stdout.write(render([r.record() for r in runs], args.format))
    if args.plot:
        written = curves.plot(list(zip(labels(runs), [r.rows for r in runs])), args.plot)
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    return 0
