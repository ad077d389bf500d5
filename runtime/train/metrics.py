"""Per-epoch metrics: `metrics.jsonl` and `metrics.csv`, one row per epoch, same columns.

Both files are rewritten whole, atomically, after each epoch: they are small, and a resumed
run that drops the row of a half-finished epoch must not leave it behind in either file.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from runtime.errors import RuntimeUserError
from runtime.files import write_text

COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "images_per_sec", "epoch_seconds", "val_top5")


def write(run_dir, rows: list[dict]) -> None:
    run_dir = Path(run_dir)
    # jsonl keeps any extra keys (a `partial` flag on an epoch cut short by --max-steps)
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps({**{k: row.get(k) for k in COLUMNS}, **row}) + "\n" for row in rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(run_dir / "metrics.csv", buffer.getvalue())


def read(run_dir) -> list[dict]:
    """The rows of `run_dir/metrics.jsonl`; [] when the run has not finished an epoch."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RuntimeUserError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise RuntimeUserError(f"{path}:{number}: not a JSON line") from None
        if not isinstance(row, dict) or "epoch" not in row:
            raise RuntimeUserError(f"{path}:{number}: not a metrics row (no 'epoch')")
        rows.append(row)
    return rows
