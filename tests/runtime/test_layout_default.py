"""The training layout: a per-device default taken from measurements (bench/layout.py), which
a flag or the config overrides, and batches handed out in the layout the model uses."""
from __future__ import annotations

import json

import torch

from runtime.data import BatchLoader
from runtime.train.loop import fit
from runtime.train.setup import CHANNELS_LAST_BY_DEFAULT, channels_last_for
from tests.runtime.train_helpers import config, small_data, tiny_model


def test_an_open_layout_takes_the_devices_measured_default():
    assert config().channels_last is None
    for kind in ("cpu", "cuda"):
        assert channels_last_for(config(), kind) is CHANNELS_LAST_BY_DEFAULT[kind]
        assert channels_last_for(config(channels_last=False), kind) is False
        assert channels_last_for(config(channels_last=True), kind) is True


def test_loader_hands_out_channels_last_batches_with_the_same_values():
    train, _ = small_data()
    kw = dict(batch_size=8, seed=1, mean=train.channel_mean(), rank=0, world_size=1)
    plain = BatchLoader(train.images, train.labels, **kw)
    nhwc = BatchLoader(train.images, train.labels, channels_last=True, **kw)
    for (a, _), (b, _) in zip(plain.batches(1), nhwc.batches(1)):
        assert b.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a, b)


def test_fit_records_the_layout_it_used(tmp_path):
    train, val = small_data()
    fit(lambda device: tiny_model(), train, val, config(max_steps=1), tmp_path / "open")
    fit(lambda device: tiny_model(), train, val, config(max_steps=1, channels_last=False), tmp_path / "nchw")
    used = lambda d: json.loads((tmp_path / d / "config.json").read_text())["channels_last"]  # noqa: E731
    assert used("open") is CHANNELS_LAST_BY_DEFAULT["cpu"] and used("nchw") is False
