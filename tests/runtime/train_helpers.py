"""Small things the trainer tests share: a tiny model with batchnorm and dropout (so weights,
running statistics and the RNG all matter for an exact resume) and a small synthetic set."""
from __future__ import annotations

import functools

import torch
from torch import nn

from runtime.data.synthetic import SyntheticConfig, generate
from runtime.train.config import TrainConfig, resolve

TINY_SPEC = """\
archc: 1
name: tiny
input: [3, 64, 64]
nodes:
  stem: {type: conv_bn_relu, out: 8, kernel: 3, stride: 4}
  pool: {type: global_avgpool}
  drop: {type: dropout, p: 0.2}
  fc: {type: affine, out: 10}
train:
  epochs: 2
  batch_size: 16
"""


def tiny_model(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Dropout(0.3), nn.Linear(8, 10))


@functools.cache
def small_data(train: int = 96, val: int = 48):
    return generate(SyntheticConfig(seed=0, train=train, val=val))


def config(**overrides) -> TrainConfig:
    return resolve({}, {"epochs": 2, "batch_size": 16, "progress": False, "device": "cpu", **overrides})


def archc(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """Run `archc ARGS` in this process through the console-script entry point: (exit code, stdout, stderr)."""
    import sys

    import pytest

    from archcompiler.cli.main import entry

    monkeypatch.setattr(sys, "argv", ["archc", *args])
    with pytest.raises(SystemExit) as info:
        entry()
    out = capsys.readouterr()
    return info.value.code, out.out, out.err
