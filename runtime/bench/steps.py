"""The steps that are timed: one training step or one inference call on synthetic inputs.

Inputs are random tensors made once per row on the device, as in timm's benchmark.py, so no
data loading, decoding or host-to-device copy is timed. A training step is the real one:
zero_grad, forward, loss, backward and the optimizer's step.

The loss is cross-entropy against random labels for a classifier. A model that returns a map
or several tensors (a U-Net, a detection backbone) has no labels to score; it trains on a
stand-in, the sum of each output's mean, whose backward sends a gradient into every output
element as a real dense loss would, at no cost of its own.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from runtime import vocab
from runtime.errors import RuntimeUsageError


def loss_of(out, y: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of class scores against labels `y`; with `y` None, the stand-in loss of a
    model without class scores: the sum of the means of its output (or outputs), in float32."""
    if y is not None:
        return F.cross_entropy(out, y)
    return sum(o.float().mean() for o in (out if isinstance(out, (tuple, list)) else (out,)))


def make_step(net: Callable, model: torch.nn.Module, mode: str, batch: int, input_shape: tuple, num_classes: int | None,
              device: torch.device, *, amp: str = "off", channels_last: bool = False, optimizer: str = "sgd",
              lr: float = 1e-3, cudagraphs: bool = False) -> Callable[[], None]:
    """A no-argument step over a fixed synthetic batch. `net` is what is called (the module or
    its torch.compile wrapper); `model` owns the parameters. `cudagraphs` marks a step
    boundary for torch.compile(mode="reduce-overhead"), whose CUDA graphs need one."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, *input_shape, generator=gen).to(device)  # (B, C, H, W)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    # (B,) labels; none for a model without class scores (num_classes None): a stand-in loss
    y = torch.randint(0, num_classes, (batch,), generator=gen).to(device) if num_classes is not None else None
    mark = torch.compiler.cudagraph_mark_step_begin if cudagraphs else (lambda: None)
    cast = vocab.autocast(device.type, amp)

    if mode == "infer":
        model.eval()

        def infer_step():
            mark()
            with torch.no_grad(), cast:
                net(x)

        return infer_step

    if mode != "train":
        raise RuntimeUsageError(f"mode must be train or infer, not '{mode}'")
    model.train()
    if not any(p.requires_grad for p in model.parameters()):
        raise RuntimeUsageError("a training step needs weights, and this model has none to train")
    opt = vocab.make_optimizer(optimizer, model.parameters(), lr, device_type=device.type)

    def train_step():
        mark()
        opt.zero_grad(set_to_none=True)
        with cast:
            loss = loss_of(net(x), y)
        if not loss.requires_grad:
            raise RuntimeUsageError("no output of this model depends on a weight, so a training step has nothing to train")
        loss.backward()
        opt.step()

    return train_step
