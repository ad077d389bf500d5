"""runtime.data on the real Tiny ImageNet sample (skips cleanly when it is absent).

PIL is the independent reference decoder here: the pipeline decodes with torchvision, so a test
that agrees with PIL pixel for pixel checks the bytes, not only the shapes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runtime.data import load_dataset
from runtime.data.cli import main as data_cli
from runtime.errors import DataError
from tests.conftest import sample_dir
from tests.runtime.data_helpers import make_tiny_imagenet

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def sample() -> Path:
    d = sample_dir()
    if d is None:
        pytest.skip("Tiny ImageNet sample not found: set ARCHC_TINY_IMAGENET or place it at ../shared/data/tiny-imagenet-sample")
    return d


@pytest.fixture(scope="module")
def loaded(sample, tmp_path_factory):
    """(train, val, cache_dir): the sample, decoded once for the whole module."""
    cache = tmp_path_factory.mktemp("cache")
    train, val = load_dataset(str(sample), cache_dir=cache, progress=False)
    return train, val, cache


def pil_rgb(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)  # (3, H, W)


def test_sample_has_ten_classes_5000_train_and_500_val_images(sample, loaded):
    train, val, _ = loaded
    wnids = (sample / "wnids.txt").read_text().split()
    assert train.classes == val.classes == wnids
    assert len(train) == 5000 and len(val) == 500
    assert train.images.shape == (5000, 3, 64, 64) and train.images.dtype == torch.uint8
    assert torch.bincount(train.labels, minlength=10).tolist() == [500] * 10
    assert train.names[wnids.index("n02124075")] == "Egyptian cat"  # from words.txt


def test_all_77_grayscale_images_arrive_as_three_equal_channels(sample, loaded):
    train, val, _ = loaded
    found = 0
    for split in (train, val):
        for i, rel in enumerate(split.files):
            with Image.open(sample / rel) as image:
                is_gray = image.mode == "L"
            assert bool(split.grayscale[i]) == is_gray, rel
            if is_gray:
                found += 1
                image = split.images[i]
                assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2]), rel
                assert torch.equal(image, pil_rgb(sample / rel)), rel
    assert found == 77


def test_every_validation_label_agrees_with_val_annotations(sample, loaded):
    _, val, _ = loaded
    expected = {}
    for line in (sample / "val" / "val_annotations.txt").read_text().splitlines():
        name, wnid = line.split("\t")[:2]
        expected[f"val/images/{name}"] = wnid
    assert sorted(val.files) == sorted(expected)
    assert all(val.classes[label] == expected[rel] for rel, label in zip(val.files, val.labels.tolist()))


def test_cache_round_trip_is_bit_exact_against_direct_decoding(sample, loaded):
    _, _, cache = loaded
    train, val = load_dataset(str(sample), cache_dir=cache, progress=False)  # from the cache this time
    for split in (train, val):
        direct = torch.stack([pil_rgb(sample / rel) for rel in split.files])
        assert torch.equal(split.images, direct)


def test_info_json_is_the_documented_contract(sample, capsys):
    assert data_cli(["info", str(sample), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "format": "tiny-imagenet", "classes": 10, "splits": {"train": 5000, "val": 500}, "grayscale": 77,
    }


@pytest.fixture
def copy_of_sample(sample, tmp_path) -> Path:
    """A small Tiny ImageNet tree whose JPEGs are real files from the sample."""
    return make_tiny_imagenet(tmp_path / "tiny", per_class=6, val_per_class=3, sample=sample)


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[: len(data) // 2], "corrupt or truncated JPEG (Image is incomplete or truncated)"),
    (lambda data: data[:-2], "corrupt or truncated JPEG (Image is incomplete or truncated)"),  # no end marker
    (lambda data: data[:200] + b"\xff" * 64 + data[264:], "corrupt or truncated JPEG"),
    (lambda data: b"<html>404 Not Found</html>", "not a JPEG or PNG file (it starts with b'<html>404 No')"),
    (lambda data: b"", "empty file"),
], ids=["half", "no-end-marker", "garbled", "html", "empty"])
def test_corrupt_or_truncated_jpeg_is_an_error_naming_the_file(copy_of_sample, tmp_path, damage, reason):
    bad = copy_of_sample / "train" / "n02" / "images" / "n02_3.JPEG"
    bad.write_bytes(damage(bad.read_bytes()))
    with pytest.raises(DataError) as error:
        load_dataset(str(copy_of_sample), cache_dir=tmp_path / "cache", progress=False)
    message = str(error.value)
    assert f"{bad}: {reason}" in message and "--skip-corrupt" in message


def test_skip_corrupt_leaves_bad_files_out_and_reports_them(copy_of_sample, tmp_path, capsys):
    bad = copy_of_sample / "val" / "images" / "val_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:300])
    args = ["prepare", str(copy_of_sample), "--cache-dir", str(tmp_path / "cache"), "--skip-corrupt", "--no-progress"]
    assert data_cli(args) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image" in err and "val/images/val_1.JPEG" in err and "truncated" in err
    train, val = load_dataset(str(copy_of_sample), cache_dir=tmp_path / "cache", skip_corrupt=True, progress=False)
    assert len(train) == 12 and len(val) == 5 and "val/images/val_1.JPEG" not in val.files
    assert val.skipped[0][0] == "val/images/val_1.JPEG"
    # The kept images keep their own labels after the gap.
    annotations = dict(line.split("\t")[:2] for line in (copy_of_sample / "val" / "val_annotations.txt").read_text().splitlines())
    assert all(val.classes[y] == annotations[f.rsplit("/", 1)[1]] for f, y in zip(val.files, val.labels.tolist()))
