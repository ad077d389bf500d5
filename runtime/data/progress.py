"""One progress bar for long data steps (decoding, downloading), drawn on stderr with rich.

Stdout stays clean for `--format json`; with `enabled=False` nothing is drawn at all.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(label: str, total: int | None, *, enabled: bool = True, unit: str = "images") -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`; the bar shows `label`, done/total and the rate."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counter = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    rate = TransferSpeedColumn() if unit == "bytes" else TextColumn(f"{unit}")
    columns = [TextColumn("{task.description}"), BarColumn(), counter, rate, TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
