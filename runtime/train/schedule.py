"""Learning-rate schedules as pure functions of the step: lr = schedule(step).

A pure function needs no state beyond the step, so a checkpoint stores only the step and a
resumed run gets exactly the same rate, and the tests can ask for the rate at any iteration
without training. `step` counts optimizer steps (iterations) from 0 across epochs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    kind: str  # "step" (staircase), "cosine" or "constant"
    lr: float  # the peak rate: at step 0 without warm-up, after warm-up with it
    total_steps: int  # cosine decays to min_lr at this step; the other kinds ignore it
    decay: float = 0.96  # step: factor applied once per period
    decay_every: int = 1000  # step: period in iterations
    warmup_steps: int = 0  # linear ramp from lr/warmup_steps up to lr
    min_lr: float = 0.0  # cosine: floor reached at total_steps

    def __post_init__(self) -> None:
        if self.kind not in ("step", "cosine", "constant"):
            raise ValueError(f"unknown learning-rate schedule '{self.kind}'")
        if self.decay_every < 1:
            raise ValueError("decay_every must be at least 1")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            # (step + 1) so that the very first step already moves the weights.
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            # The paper's staircase: the whole period uses one rate (integer division, not a
            # smooth exponential), counted from step 0 so warm-up does not shift the stairs.
            return self.lr * self.decay ** (step // self.decay_every)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


WARMUP_SHARE = 5  # warm-up in epochs takes at most 1/5 of the run


def from_config(config, steps_per_epoch: int) -> Schedule:
    """The schedule a TrainConfig asks for, over all its epochs (a --max-steps stop does not
    shorten it: a quick run shows the start of the real one, and a resumed run the same rates)."""
    total = config.epochs * steps_per_epoch
    warmup = config.warmup_for(steps_per_epoch)
    if not config.warmup_steps and warmup > total // WARMUP_SHARE:
        # Warm-up given in epochs (the modern recipe's 2) on a short run: a fifth of the run at
        # most, so a 2-epoch run still decays instead of ending at its peak rate.
        warmup = total // WARMUP_SHARE
    return Schedule(config.lr_schedule, config.lr, total, config.lr_decay, config.lr_decay_every, warmup)
