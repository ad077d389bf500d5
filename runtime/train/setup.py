"""What fit() needs before the first step: the device, the model in place, the optimizer, this
rank's share of the validation set, and a Ctrl-C handler that stops at a step boundary."""
from __future__ import annotations

import dataclasses
import platform
import signal
import sys
import threading

import torch
from torch import nn

from runtime import vocab
from runtime.vocab import device_kind  # noqa: F401 (the trainer's callers import it from here)
from runtime.train import distributed
from runtime.train.config import TrainConfig


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def versions(extra_meta: dict) -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, **extra_meta.get("versions", {})}


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers: its state_dict has clean names."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


# The layout training defaults to, per device kind: the faster one as measured by bench/layout.py
# (figures in docs/benchmarks.md), never assumed. CPU: channels_last trained no_attention 1.21x
# faster than NCHW at batch 32 (95% interval 1.07-1.34) and attn_simple 1.14x (1.04-1.27), on a
# 2-CPU Intel Xeon with torch 2.14.1. CUDA:
# channels_last, what cuDNN's tensor-core convolutions read without a transpose; the GPU
# programme (bench/gpu/run.sh bench) measures it there too (layout-<card>.json).
CHANNELS_LAST_BY_DEFAULT = {"cpu": True, "cuda": True}


def channels_last_for(config: TrainConfig, kind: str) -> bool:
    """The config's layout, or the device's measured default when it leaves it open (None)."""
    return CHANNELS_LAST_BY_DEFAULT[kind] if config.channels_last is None else bool(config.channels_last)


def safe_layout(model: nn.Module, config: TrainConfig, kind: str) -> tuple[TrainConfig, str | None]:
    """`config` with its layout resolved for `model` on this device: channels_last where the
    device's default or the config asks for it, except where oneDNN would crash in it
    (vocab.channels_last_hazard): the default then gives way to NCHW, and the layer is returned
    to be named; asked for explicitly, it is refused."""
    layout = channels_last_for(config, kind)
    hazard = vocab.channels_last_hazard(model, kind) if layout else None
    if hazard and config.channels_last:
        from runtime.errors import RuntimeUsageError

        raise RuntimeUsageError(vocab.channels_last_refusal(hazard))
    return dataclasses.replace(config, channels_last=layout and not hazard), hazard


def make_optimizer(params, config: TrainConfig, kind: str = "cpu") -> torch.optim.Optimizer:
    return vocab.make_optimizer(config.optimizer, params, config.lr, config.weight_decay, config.momentum, device_type=kind)


def resolved_compile(config: TrainConfig, kind: str) -> bool:
    return config.compile if config.compile is not None else vocab.default_compile(kind)


def resolved_amp(config: TrainConfig, kind: str) -> str:
    return config.amp or vocab.default_amp(kind)


def place(model: nn.Module, device, config: TrainConfig, kind: str) -> nn.Module:
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if resolved_compile(config, kind):
        model = vocab.compile_module(model, config.compile_mode)
    return model


def shard(dataset, world: distributed.World):
    """This rank's slice of the validation set: disjoint slices that cover it exactly, so
    the summed totals count every image once (a padded sampler would count some twice)."""
    if not world.distributed:
        return dataset
    part = slice(world.rank, None, world.size)
    return dataclasses.replace(dataset, images=dataset.images[part], labels=dataset.labels[part], files=[], grayscale=None, skipped=[])


class StopOnSignal:
    """Ctrl-C (or SIGTERM from a scheduler) asks the loop to stop after the current step and
    checkpoint; a second Ctrl-C quits at once, leaving the previous checkpoint in place."""

    def __init__(self, say: bool = True):
        self.requested = False
        self._old = {}
        self.say = say  # under DDP rank 0 alone says it, once

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.say:
            print("\nstopping after this step to save a checkpoint; press Ctrl-C again to quit without saving", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class IgnoreSignals:
    """Ctrl-C and SIGTERM ignored for a moment: while the stop itself is being recorded, so a
    third press cannot cut the report of what the first two left on disk."""

    def __enter__(self):
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, signal.SIG_IGN)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
