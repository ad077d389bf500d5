"""One progress display for long steps (decoding, downloading), drawn on stderr.

On a terminal it is a rich bar. Without one (CI, a pipe, a log file) it is a plain line when
the step starts, one every LINE_EVERY_S seconds, and one when it ends, so a long silent wait
never looks like a hang. Stdout stays clean for `--format json`; with `enabled=False` nothing
is shown at all.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LINE_EVERY_S = 30.0  # without a terminal: often enough to show life, rare enough to read


@contextmanager
def progress_bar(label: str, total: int | None, *, enabled: bool = True, unit: str = "images", stream=None) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`; the bar shows `label`, done/total and the rate."""
    stream = stream or sys.stderr
    if not enabled:
        yield lambda n: None
        return
    if not stream.isatty():
        with _lines(label, total, unit, stream) as advance:
            yield advance
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
    columns = [TextColumn("{task.description}"), BarColumn(bar_width=20), counter, rate, TimeRemainingColumn()]
    with Progress(*columns, console=Console(file=stream), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def _lines(label: str, total: int | None, unit: str, stream) -> Iterator[Callable[[int], None]]:
    start = last = time.perf_counter()
    done = 0

    def amount(n: int) -> str:
        if unit == "bytes":
            return f"{n / 2**20:,.1f}" + (f"/{total / 2**20:,.1f}" if total else "") + " MiB"
        return f"{n:,}" + (f"/{total:,}" if total else "") + f" {unit}"

    def say(text: str) -> None:
        print(f"{label}: {text}", file=stream, flush=True)

    def advance(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.perf_counter()
        if now - last >= LINE_EVERY_S:
            last = now
            share = f" ({100 * done / total:.0f}%)" if total else ""
            say(f"{amount(done)}{share}, {now - start:.0f}s")

    say(f"started ({amount(0)})" if total else "started")
    yield advance
    say(f"done, {amount(done)} in {time.perf_counter() - start:.1f}s")
