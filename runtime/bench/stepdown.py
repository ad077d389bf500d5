"""Batch step-down: when a batch does not fit in memory, try a smaller one, as timm's
benchmark.py does with `decay_batch_step`."""
from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch

T = TypeVar("T")


def decay_batch_step(batch_size: int, num_intra_steps: int = 2) -> int:
    """The next smaller batch to try (timm.utils.decay_batch_step): between two powers of two
    it takes `num_intra_steps` steps, so 256 -> 192 -> 128 -> 96 -> 64 -> 48 -> 32 ... -> 1 -> 0.
    The power of two below the batch comes from bit_length: timm's float logarithm gets it
    wrong for some batches (9 -> 4, 65 -> 32)."""
    if batch_size <= 1:
        return 0
    base = 1 << ((batch_size - 1).bit_length() - 1)
    step = max(base // num_intra_steps, 1)
    return base + ((batch_size - base - 1) // step) * step


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error on any device, also when a compiler wrapped it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, torch.OutOfMemoryError):
            return True
        if isinstance(exc, (RuntimeError, MemoryError)):
            text = str(exc)
            if isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text:
                return True
        exc = exc.__cause__ or exc.__context__
    return False


@dataclass
class Fitted:
    """What `fit_batch` ran: the result, the batch that fitted, and the batches that did not."""

    value: object
    batch_size: int
    failed: list[int] = field(default_factory=list)

    def note(self) -> str:
        if not self.failed:
            return ""
        tried = ", ".join(str(b) for b in self.failed)
        return f"stepped down to batch {self.batch_size}: out of memory at {tried}"


class NoBatchFits(RuntimeError):
    """Not even a batch of one fitted in memory."""


def fit_batch(run: Callable[[int], T], batch_size: int, device: torch.device | None = None) -> Fitted:
    """`run(batch)` at `batch_size`, stepping down after each out-of-memory error until it fits."""
    failed: list[int] = []
    while batch_size > 0:
        try:
            return Fitted(run(batch_size), batch_size, failed)
        except Exception as e:  # anything but an OOM is re-raised
            if not is_oom(e):
                raise
        failed.append(batch_size)
        free_memory(device)
        batch_size = decay_batch_step(batch_size)
    raise NoBatchFits(f"out of memory even at batch 1 (tried {', '.join(map(str, failed))})")


def free_memory(device: torch.device | None) -> None:
    """Drop what an out-of-memory step left behind, so the next try starts clean."""
    gc.collect()
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()
