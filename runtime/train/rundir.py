"""Reading a run directory's own JSON files back, defensively.

`compare` and `--resume` read files that archc wrote, but a user may have edited, truncated or
copied them from elsewhere. Each reader here checks the shape and types of what it reads and
raises a RuntimeUserError naming the file and what is wrong, so no caller formats a string as
a number or indexes a list as a dict.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from runtime.errors import RuntimeUserError

# summary.json fields that are numbers (or null, before the first epoch ends)
SUMMARY_NUMBERS = ("params", "flops", "best_val_acc", "best_epoch", "final_val_acc", "final_val_loss", "final_train_acc",
                   "epochs_completed", "steps", "wall_time_s", "world_size")
# metrics.jsonl columns that are numbers in every row
ROW_NUMBERS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "images_per_sec", "epoch_seconds", "val_top5")


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object in `path`; `what` says what the file should be, for the message."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuntimeUserError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RuntimeUserError(f"{path} is not readable JSON ({_why(e)}); it should be {what}") from None
    if not isinstance(data, dict):
        raise RuntimeUserError(f"{path} holds a JSON {type(data).__name__}, not an object; it should be {what}")
    return data


def read_summary(path: Path) -> dict:
    """A summary.json as `fit` writes it: an object whose numeric fields are numbers or null."""
    summary = read_json_object(path, "the summary archc train writes")
    check_numbers(summary, SUMMARY_NUMBERS, str(path))
    if not isinstance(summary.get("model", ""), (str, type(None))):
        raise RuntimeUserError(f"{path}: 'model' is {summary['model']!r}, not a name")
    return summary


def check_rows(path: Path, rows: list[dict]) -> list[dict]:
    """metrics.jsonl rows (already parsed as objects): numbers where numbers belong."""
    for number, row in enumerate(rows, 1):
        check_numbers(row, ROW_NUMBERS, f"{path}:{number}")
        if not isinstance(row.get("epoch"), int):
            raise RuntimeUserError(f"{path}:{number}: 'epoch' is {row.get('epoch')!r}, not a whole number")
    return rows


def check_numbers(data: dict, keys, where: str) -> None:
    for key in keys:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RuntimeUserError(f"{where}: '{key}' is {value!r}, not a number; was the file edited?")
        if isinstance(value, float) and not math.isfinite(value):
            raise RuntimeUserError(f"{where}: '{key}' is {value}, not a finite number")


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e).splitlines()[0]
