"""A dataset cache whose key still matches but whose contents were damaged is rebuilt, with a
message, instead of ending in an IndexError halfway through training."""
from __future__ import annotations

import pytest
import torch

from runtime.data.cache import cache_path, load_or_build
from runtime.data.layout import read_layout
from tests.runtime.data_helpers import make_imagefolder


def _damage_labels(stored):
    stored["train"]["labels"] = stored["train"]["labels"] + 1000


def _drop_a_file(stored):
    stored["val"]["files"] = "\n".join(stored["val"]["files"].split("\n")[1:])


def _no_mean(stored):
    del stored["train"]["mean"]


@pytest.mark.parametrize("damage, why", [(_damage_labels, "train labels outside 0..1"), (_drop_a_file, "val file list does not match"),
                                         (_no_mean, "training statistics missing")])
def test_a_damaged_cache_is_rebuilt_with_a_message(tmp_path, capsys, damage, why):
    layout = read_layout(make_imagefolder(tmp_path / "ds", per_class=10))
    train, _, built = load_or_build(layout, cache_dir=tmp_path / "cache", progress=False)
    assert built
    path = cache_path(layout, tmp_path / "cache")
    stored = torch.load(path, weights_only=True)
    damage(stored)
    torch.save(stored, path)
    capsys.readouterr()
    again, _, rebuilt = load_or_build(layout, cache_dir=tmp_path / "cache", progress=False)
    assert rebuilt and f"the dataset cache {path} is damaged ({why}" in capsys.readouterr().err
    assert torch.equal(again.labels, train.labels) and torch.equal(again.images, train.images)
    _, _, built_again = load_or_build(layout, cache_dir=tmp_path / "cache", progress=False)
    assert not built_again  # the rebuilt file is sound
