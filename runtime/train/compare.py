"""`archc compare RUN_DIR...`: training runs side by side.

A table in the manner of the paper's Figure 12 (model, parameters, FLOPs, best validation
accuracy, the epoch of it, wall time), with each run's status and dataset, as text, markdown,
csv or json, and with `--plot` the four charts of Figures 8-11 with one line per run. Runs of
one model on one dataset (seeds: `archc train --seeds`) are also summarised as mean ± std with
n, and `--test` says whether two such groups differ (runtime/train/groups.py). Reads only each
run's summary.json, config.json and metrics.jsonl, so it works on runs still in progress and
on runs from other machines. Accuracies are printed in percent; json and csv keep fractions,
as summary.json and metrics.jsonl do.
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
from runtime.table import render_table
from runtime.train import curves, groups, metrics, rundir

COLUMNS = ("model", "dataset", "status", "params", "flops", "best_val_acc", "best_epoch", "epochs", "wall_time_s", "run")
HEADERS = {"model": "Model", "dataset": "Data", "status": "Status", "params": "Params", "flops": "FLOPs",
           "best_val_acc": "Best val acc", "best_epoch": "Epoch of best", "epochs": "Epochs", "wall_time_s": "Wall time", "run": "Run"}
RIGHT = {"params", "flops", "best_val_acc", "best_epoch", "epochs", "wall_time_s"}


@dataclass
class Run:
    path: Path
    summary: dict
    rows: list[dict]
    config: dict | None = None  # config.json, for the dataset and spec of runs whose summary predates them

    @property
    def model(self) -> str:
        """The model's name: from summary.json, else config.json (a run that has not yet written
        its summary), else the folder's name."""
        return self.summary.get("model") or (self.config or {}).get("model") or self.path.name

    def record(self) -> dict:
        s, rows, config = self.summary, self.rows, self.config or {}
        best = max(rows, key=lambda r: r["val_acc"] if r.get("val_acc") is not None else -1, default=None)
        full = [r for r in rows if not r.get("partial")]
        return {
            "model": self.model,
            "dataset": s.get("dataset") or (config.get("data_stats") or {}).get("dataset") or config.get("data"),
            "status": s.get("status") or ("running" if rows else "started"),
            "params": s.get("params"),
            "flops": s.get("flops", config.get("flops")),
            "best_val_acc": s.get("best_val_acc", best and best.get("val_acc")),
            "best_epoch": s.get("best_epoch", best and best.get("epoch")),
            "epochs": len(full),
            "partial_epoch": len(full) < len(rows),  # the last row is an epoch cut short (--max-steps, Ctrl-C)
            "wall_time_s": s.get("wall_time_s", sum(r.get("epoch_seconds") or 0 for r in rows) or None),
            "spec_sha256": config.get("spec_sha256"),
            "spec_data_sha256": config.get("spec_data_sha256"),  # what the spec says: a comment edit keeps a run in its group
            "seed": config.get("seed"),
            "settings": {k: config[k] for k in groups.RECIPE if k in config},
            "run": str(self.path),
        }


def read_run(path) -> Run:
    path = Path(path)
    summary_path = path / "summary.json"
    if not path.is_dir():
        raise RuntimeUserError(f"{path}: {'a file, not a run directory' if path.exists() else 'no such run directory'}")
    if not _is_run(path):
        raise RuntimeUserError(f"{path} is not a training run (no summary.json, metrics.jsonl or config.json); runs are what `archc train --out` writes")
    summary = rundir.read_summary(summary_path) if summary_path.exists() else {}
    return Run(path, summary, rundir.check_rows(path / "metrics.jsonl", metrics.read(path)), _read_config(path))


def _is_run(folder: Path) -> bool:
    """A run directory: what `archc train --out` writes has a summary.json or metrics.jsonl,
    or, in its first epoch, a config.json alone (written when it starts)."""
    return any((folder / name).exists() for name in ("summary.json", "metrics.jsonl", "config.json"))


def expand(paths: list[str]) -> list[str]:
    """Run directories, with a folder that holds runs but is none (what `archc train --seeds`
    writes: OUT/seed-0, OUT/seed-1, ...) replaced by the runs in it."""
    out = []
    for p in paths:
        folder = Path(p)
        if folder.is_dir() and not _is_run(folder):
            inner = sorted((c for c in folder.iterdir() if c.is_dir() and _is_run(c)), key=lambda c: (len(c.name), c.name))  # seed-2 before seed-10
            if inner:
                out += [str(c) for c in inner]
                continue
        out.append(p)
    return out


def _read_config(path: Path) -> dict | None:
    try:
        data = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None  # optional: the summary holds what the table needs
    return data if isinstance(data, dict) else None


def compare(paths: list) -> list[dict]:
    return [read_run(p).record() for p in paths]


def labels(runs: list[Run]) -> list[str]:
    """Model names, with the run directory added where two runs train the same model."""
    names = [r.model for r in runs]
    return [f"{n} ({r.path.name})" if names.count(n) > 1 else n for n, r in zip(names, runs)]


# ---- formats


def _human(column: str, value, record: dict | None = None) -> str:
    if value is None:
        return "-"
    if column in ("params", "flops"):
        for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
            if value >= max(1000, scale / 10):  # 0.712 M, as the paper writes it, rather than 712.392 K
                return f"{value / scale:.3f} {unit}"
        return str(value)
    if column == "best_val_acc":
        return f"{100 * value:.1f}%"
    if column == "epochs":
        return f"{value} + partial" if record and record.get("partial_epoch") else str(value)
    if column == "status":
        return {"complete": "complete", "max_steps": "stopped (--max-steps)", "running": "running or stopped"}.get(value, str(value))
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
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()
    cells = [[_human(c, r[c], r) for c in COLUMNS] for r in records]
    out = render_table([HEADERS[c] for c in COLUMNS], cells, right=[c in RIGHT for c in COLUMNS], fmt=fmt)
    mixed = sorted({r["dataset"] or "-" for r in records})
    if len(mixed) > 1:
        out += f"\nnote: these runs used different data ({', '.join(mixed)}); their accuracies are not comparable\n"
    return out


def render_groups(found: list[groups.Group], fmt: str) -> str:
    """Mean ± std over the runs of each group that has more than one."""
    many = [g for g in found if len(g.records) > 1]
    if not many or fmt in ("json", "csv"):
        return ""
    head = ["Model", "Data", "n", "Best val acc (mean ± std)", "Final val acc (mean ± std)", "Epochs"]
    body = [[g.model, g.dataset, str(g.n), g.describe("best_val_acc"), g.describe("final_val_acc"),
             ",".join(sorted({str(r["epochs"]) + ("+" if r["partial_epoch"] else "") for r in g.records}))] for g in many]
    gap = "\n" if fmt == "markdown" else ""  # markdown needs a blank line before a table
    return "\nOver seeds (std is the sample standard deviation, in accuracy points):\n" + gap + render_table(
        head, body, right=[False, False, True, True, True, True], fmt=fmt)


def parser() -> argparse.ArgumentParser:
    p = argtypes.Parser(prog="archc compare", description="Compare training runs: a Figure 12 style table and Figures 8-11 style overlays.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by `archc train --out`; a folder of runs "
                   "(`archc train --seeds` writes OUT/seed-K) stands for the runs in it")
    p.add_argument("--format", choices=("text", "markdown", "csv", "json"), default="text", help="table format")
    p.add_argument("--plot", action="append", default=[], metavar="OUT", help="also draw the four charts with one line per run (.png, .svg or .pdf; repeatable)")
    p.add_argument("--test", action="store_true",
                   help="Welch's t-test on the best val accuracy of each pair of seed groups: is the difference more than seeds explain?")
    return p


def check_args(args) -> None:
    args.runs = expand(args.runs)
    seen: dict[Path, str] = {}
    for run in args.runs:  # one run given twice would count twice in a seed group's mean and test
        key = Path(run).resolve()
        if key in seen:
            raise RuntimeUsageError(f"{run}: the same run as {seen[key]}, given twice; a run counts once")
        seen[key] = run
    for out in args.plot:
        if Path(out).suffix.lower() not in (".png", ".svg", ".pdf"):
            raise RuntimeUsageError(f"--plot {out}: the file must end in .png, .svg or .pdf")
        output_file(out, "--plot", reads=args.runs)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    runs = [read_run(p) for p in args.runs]
    records = [r.record() for r in runs]
    for record, run in zip(records, runs):
        record["final_val_acc"] = run.summary.get("final_val_acc")
    found = groups.group(records)
    for g in found:  # copies of one run would count as independent seeds in the mean, the std and the test
        if twins := groups.same_seed(g):
            first, second, seed = twins
            message = f"{first} and {second} are runs of {g.model} with the same seed ({seed}): copies of one run, or one run twice"
            if args.test:
                raise RuntimeUserError(f"--test: {message}; a test of seeds needs runs of distinct seeds")
            print(f"warning: {message}; the group's mean and std count it twice", file=sys.stderr)
    tests = []
    if args.test:
        if len(found) < 2:
            raise RuntimeUsageError("--test compares groups of runs (one model on one dataset, several seeds); these runs form one group")
        pairs = [(a, b) for i, a in enumerate(found) for b in found[i + 1:]]
        tests = [(groups.welch(a, b), a, b) for a, b in pairs]
    if args.format == "json":
        out = {"runs": records, "groups": [{"model": g.model, "dataset": g.dataset, "n": g.n, "runs": [r["run"] for r in g.records],
                                            "best_val_acc_mean": g.mean_std()[0], "best_val_acc_std": g.mean_std()[1]} for g in found]}
        if args.test:
            out["tests"] = [t for t, _, _ in tests]
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(render(records, args.format) + render_groups(found, args.format))
        if tests and args.format == "markdown":
            print()  # a line right under a markdown table would read as one of its rows
        for t, a, b in tests:
            print(groups.verdict_line(t, a, b))
    if args.plot:
        written = curves.plot(list(zip(labels(runs), [r.rows for r in runs])), args.plot)
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    return 0
