"""What a training run prints: a live rich bar per epoch on a terminal, and one summary line per
epoch that stays (on the terminal, in piped output, and in the run's train.log).

The bar is transient: when an epoch ends it is replaced by that epoch's summary line, so the
scrollback reads as a plain log. Without a terminal (CI, a pipe, `--no-progress`) no bar is
drawn at all and only the lines are printed. Ranks other than 0 print nothing.
"""
from __future__ import annotations

import sys
from pathlib import Path

from runtime.files import append_line


class Reporter:
    def __init__(self, *, bar: bool, silent: bool = False, log_path: Path | None = None, stream=None):
        self.silent = silent
        self.log_path = log_path
        self.stream = stream or sys.stdout
        self._progress = None
        self._task = None
        if bar and not silent and self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("<"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=Console(file=self.stream),
                transient=True,  # the epoch's summary line replaces the bar
            )
            self._progress.start()

    @property
    def live(self) -> bool:
        return self._progress is not None

    def start_epoch(self, epoch: int, epochs: int, batches: int, done: int = 0) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(f"epoch {epoch}/{epochs}", total=batches, completed=done, stats="")

    def update(self, done: int, loss: float, acc: float, lr: float, images_per_sec: float) -> None:
        if self._progress is not None and self._task is not None:
            stats = f"loss {loss:.4f}  acc {acc:.3f}  lr {lr:.2e}  {images_per_sec:,.0f} img/s"
            self._progress.update(self._task, completed=done, stats=stats)

    def note(self, text: str) -> None:
        """Replace the bar's statistics with a word on what happens now (validation can be long)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, stats=text)

    def end_epoch(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None

    def line(self, text: str, *, log: bool = True) -> None:
        """A line that stays: printed above the bar, and kept in train.log."""
        if self.silent:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)  # a log line, never re-wrapped
        else:
            print(text, file=self.stream, flush=True)
        if log and self.log_path is not None:
            append_line(self.log_path, text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
