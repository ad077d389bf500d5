"""What a training run prints: a live rich bar per epoch on a terminal; without one, a step line
every `log_every` (30 seconds by default, or N steps); and one summary line per epoch that stays
(on the terminal, in piped output, and in the run's train.log).

The bar is transient: when an epoch ends it is replaced by that epoch's summary line, so the
scrollback reads as a plain log. It fits 80 columns: the learning rate and the elapsed time are
in the step and epoch lines, not the bar. Ranks other than 0 print nothing.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from runtime.errors import RuntimeUsageError
from runtime.files import append_line

DEFAULT_LOG_EVERY = "30s"  # a line every 30 s without a terminal: a 3,125-step epoch is no longer silent


def parse_log_every(text: str) -> tuple[str, float]:
    """'30s' -> ('seconds', 30.0); '50' -> ('steps', 50); '0' -> ('off', 0)."""
    try:
        if text.endswith("s"):
            value = float(text[:-1])
            kind = "seconds"
        else:
            value = int(text)
            kind = "steps"
    except ValueError:
        raise RuntimeUsageError(f"--log-every takes a number of steps (50) or seconds (30s), not '{text}'") from None
    if value < 0:
        raise RuntimeUsageError(f"--log-every must not be negative, got '{text}'")
    return ("off", 0) if value == 0 else (kind, value)


class Reporter:
    def __init__(self, *, bar: bool, silent: bool = False, log_path: Path | None = None, stream=None,
                 log_every: str = DEFAULT_LOG_EVERY):
        self.silent = silent
        self.log_path = log_path
        self.stream = stream or sys.stdout
        self.every = parse_log_every(log_every)
        self._progress = None
        self._task = None
        self._epoch = (1, 1, 1)  # epoch, epochs, batches per epoch
        self._last_line = (time.perf_counter(), 0)  # time and batch of the last step line
        if bar and not silent and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            # Sized for 80 columns: epoch 12/25, a short bar, 1270/3125, the epoch's time left, the stats.
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=10),
                MofNCompleteColumn(),
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
        self._epoch = (epoch, epochs, batches)
        self._last_line = (time.perf_counter(), done)
        if self._progress is not None:
            self._task = self._progress.add_task(f"epoch {epoch}/{epochs}", total=batches, completed=done, stats="")

    def update(self, done: int, loss: float, acc: float, lr: float, images_per_sec: float, step: int | None = None) -> None:
        if self._progress is not None and self._task is not None:
            stats = f"loss {loss:.3f} acc {100 * acc:.1f}% {images_per_sec:,.0f} img/s"
            try:
                self._progress.update(self._task, completed=done, stats=stats)
            except BrokenPipeError:
                self._lost_stdout()
        elif self._due(done, step):
            epoch, epochs, batches = self._epoch
            left = (batches - done) / max(1e-9, (done - self._last_line[1]) / max(1e-9, time.perf_counter() - self._last_line[0]))
            self._last_line = (time.perf_counter(), done)
            where = f"step {step:>6}  " if step is not None else ""
            self.line(f"{where}epoch {epoch}/{epochs} batch {done}/{batches}  loss {loss:.4f}  acc {100 * acc:.2f}%  "
                      f"lr {lr:.2e}  {images_per_sec:,.0f} img/s  epoch ends in {_duration(left)}")

    def _due(self, done: int, step: int | None) -> bool:
        kind, value = self.every
        if self.silent or kind == "off" or done == self._epoch[2]:  # the epoch's own line follows at once
            return False
        if kind == "steps":
            return (step if step is not None else done) % int(value) == 0
        return time.perf_counter() - self._last_line[0] >= value

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
        if self.stream is not None:
            try:
                if self._progress is not None:
                    self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)  # a log line, never re-wrapped
                else:
                    print(text, file=self.stream, flush=True)
            except BrokenPipeError:
                self._lost_stdout()
        if log and self.log_path is not None:
            append_line(self.log_path, text)

    def _lost_stdout(self) -> None:
        """The reader of stdout went away (`| head`): the run is worth more than its printout, so
        it goes on, logging to train.log only; stdout is pointed at nothing for what follows."""
        from runtime.files import to_nothing

        try:
            self.close()
        except OSError:
            self._progress = None
        self.stream = None
        to_nothing("stdout")
        where = f"; its lines go on in {self.log_path}" if self.log_path is not None else ""
        try:
            print(f"archc: standard output was closed; training goes on{where}", file=sys.stderr, flush=True)
        except OSError:  # stderr went with it (2>&1 | head): it is pointed at nothing too
            to_nothing("stderr")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
