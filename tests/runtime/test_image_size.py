"""Models train at their spec's input size: the synthetic set is drawn at it, dataset folders
are decoded (or resized) to it with one cache file per size, and train, eval and predict read
the size from the spec."""
from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from runtime.data import load_dataset
from runtime.data.cache import cache_path
from runtime.data.decode import decode_files, decode_one, resize_center
from runtime.data.layout import read_layout
from runtime.data.synthetic import SyntheticConfig, generate
from runtime.errors import DataError
from tests.runtime.data_helpers import jpeg_bytes, make_imagefolder
from tests.runtime.train_helpers import archc

WIDE_SPEC = """\
archc: 1
name: wide
input: [3, 32, 48]
nodes:
  c: {type: conv, out: 8, kernel: 3, stride: 2}
  act: {type: activation, fn: relu}
  pool: {type: global_avgpool}
  fc: {type: affine, out: 10}
output: fc
"""


@pytest.mark.parametrize("size", [(32, 32), (48, 96), (224, 224)])
def test_synthetic_set_is_drawn_at_the_requested_size(size):
    config = SyntheticConfig(seed=5, train=30, val=10)
    train, val = generate(config, size)
    assert train.images.shape == (30, 3, *size) and val.images.shape == (10, 3, *size)
    again, _ = generate(config, size)
    assert torch.equal(train.images, again.images)  # a pure function of seed and size
    assert sorted(train.labels.tolist()) == sorted(list(range(10)) * 3)  # still balanced
    # The shape is drawn, not a flat frame: every image has contrast at any size.
    assert (train.images.float().flatten(1).std(dim=1) > 10).all()


def test_synthetic_default_size_is_the_papers():
    train, _ = load_dataset("synthetic:train=10,val=10")
    assert train.images.shape[1:] == (3, 64, 64)
    sized, _ = load_dataset("synthetic:train=10,val=10", size=(64, 64))
    assert torch.equal(train.images, sized.images)


def png(path, width, height, seed=0):
    pixels = torch.randint(0, 256, (height, width, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return pixels.permute(2, 0, 1)


def test_an_image_of_another_size_is_refused_naming_the_size_asked_for(tmp_path):
    png(tmp_path / "a.png", 40, 30)
    with pytest.raises(DataError) as error:
        decode_files(tmp_path, ["a.png"], size=(32, 48), progress=False)
    assert "not 48x32" in str(error.value) and "a.png: is 40x30" in str(error.value)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchvision's notice about torchcodec
def test_resize_to_a_square_size_is_torchvisions_resize_then_center_crop(tmp_path):
    from torchvision.transforms import v2

    source = png(tmp_path / "a.png", 100, 70)
    image, _, resized = decode_one(tmp_path / "a.png", resize=True, size=(32, 32))
    want = v2.Compose([v2.Resize(32, antialias=True), v2.CenterCrop(32)])(source)
    assert resized and torch.equal(image, want)


@pytest.mark.parametrize(("source", "size", "scaled"), [
    ((100, 100), (20, 40), (40, 40)),  # (h, w) -> (H, W): the width needs the larger factor
    ((50, 200), (30, 30), (30, 120)),  # a square size from a wide image: the height sets it
    ((70, 100), (64, 32), (64, 91)),  # a tall size from a wide image
])
def test_resize_to_any_size_covers_it_with_one_factor_and_keeps_the_centre(source, size, scaled):
    from torchvision.transforms.v2.functional import center_crop, resize

    image = torch.randint(0, 256, (3, *source), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    out = resize_center(image, size)
    assert out.shape == (3, *size)
    assert torch.equal(out, center_crop(resize(image, list(scaled), antialias=True), list(size)))


def test_each_size_has_its_own_cache_file_and_both_stay_fresh(tmp_path):
    root = make_imagefolder(tmp_path / "pets", per_class=3, val=1)
    cache = tmp_path / "cache"
    small, _ = load_dataset(str(root), cache_dir=cache, resize=True, size=(32, 32), progress=False)
    default, _ = load_dataset(str(root), cache_dir=cache, progress=False)
    assert small.images.shape == (6, 3, 32, 32) and default.images.shape == (6, 3, 64, 64)
    layout = read_layout(root)
    paths = {cache_path(layout, cache), cache_path(layout, cache, (32, 32))}
    assert paths == set(cache.iterdir())
    # 64x64 keeps the name it had before sizes existed, so a rebuild replaces that old file
    assert cache_path(layout, cache).name.count("-") == 1 and cache_path(layout, cache, (32, 32)).name.endswith("-32x32.pt")
    stamp = {p: p.stat().st_mtime_ns for p in paths}
    again, _ = load_dataset(str(root), cache_dir=cache, resize=True, size=(32, 32), progress=False)
    assert torch.equal(again.images, small.images) and {p: p.stat().st_mtime_ns for p in paths} == stamp  # no rebuild


def test_a_cache_file_holding_another_size_is_rebuilt(tmp_path, capsys):
    root = make_imagefolder(tmp_path / "pets", per_class=2, val=1)
    cache = tmp_path / "cache"
    load_dataset(str(root), cache_dir=cache, resize=True, size=(32, 32), progress=False)
    layout = read_layout(root)
    # a file of the wrong size under the right name (edited by hand): its key matches, its images do not
    stored = torch.load(cache_path(layout, cache, (32, 32)), weights_only=True)
    stored["train"]["images"] = torch.zeros((len(stored["train"]["labels"]), 3, 16, 16), dtype=torch.uint8)
    torch.save(stored, cache_path(layout, cache, (32, 32)))
    train, _ = load_dataset(str(root), cache_dir=cache, resize=True, size=(32, 32), progress=False)
    assert train.images.shape[1:] == (3, 32, 32)
    assert "damaged (train images are not uint8 3x32x32)" in capsys.readouterr().err


def test_train_eval_and_predict_run_at_the_specs_input_size(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wide.yaml").write_text(WIDE_SPEC)
    code, out, err = archc(capsys, monkeypatch, "train", "wide.yaml", "--data", "synthetic:train=40,val=20", "--max-steps", "2",
                           "--batch-size", "20", "--out", "run", "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["input_shape"] == [3, 32, 48]
    code, out, err = archc(capsys, monkeypatch, "eval", "wide.yaml", "--checkpoint", "run", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["images"] == 20
    png(tmp_path / "photo.png", 90, 90)
    code, out, err = archc(capsys, monkeypatch, "predict", "wide.yaml", "--checkpoint", "run", "photo.png")
    assert code == 0, err
    assert "photo.png  (resized to 48x32)" in out


def test_a_dataset_folder_at_another_size_needs_resize(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wide.yaml").write_text(WIDE_SPEC)
    root = make_imagefolder(tmp_path / "pets", per_class=2, val=1)  # 64x64 JPEGs
    args = ["train", "wide.yaml", "--data", str(root), "--max-steps", "1", "--no-progress", "--cache-dir", "cache"]
    code, _, err = archc(capsys, monkeypatch, *args, "--out", "a")
    assert code == 1 and "not 48x32; pass --resize" in err and "is 64x64" in err and "Traceback" not in err
    code, _, err = archc(capsys, monkeypatch, *args, "--out", "b", "--resize")
    assert code == 0, err


def test_a_model_whose_input_is_not_rgb_is_refused_with_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gray.yaml").write_text(WIDE_SPEC.replace("[3, 32, 48]", "[1, 28, 28]"))
    code, _, err = archc(capsys, monkeypatch, "train", "gray.yaml", "--max-steps", "1", "--out", "run")
    assert code == 1 and "takes input [1, 28, 28], but archc's datasets are RGB images" in err
    assert not (tmp_path / "run").exists()


def test_image_size_flag_of_data_prepare(tmp_path, capsys, monkeypatch):
    root = make_imagefolder(tmp_path / "pets", per_class=2, val=1)
    (root / "train" / "cat" / "big.jpg").write_bytes(jpeg_bytes(9, size=(120, 90)))
    code, out, err = archc(capsys, monkeypatch, "data", "prepare", str(root), "--size", "40x24", "--resize", "--cache-dir", str(tmp_path / "c"),
                           "--no-progress")
    assert code == 0, err
    assert out.startswith("cache built: ") and "-40x24.pt" in out
    code, _, err = archc(capsys, monkeypatch, "data", "prepare", str(root), "--size", "0x5")
    assert code == 2 and "--size" in err


def test_eval_at_another_input_size_than_training_says_so(tmp_path, capsys, monkeypatch):
    """A checkpoint trained at 32x48 evaluated with the spec edited to 64x64: global pooling
    lets it run, and the warning says the figures are not at the training size; a head that
    flattens the map no longer fits, and the error says why."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wide.yaml").write_text(WIDE_SPEC)
    code, _, err = archc(capsys, monkeypatch, "train", "wide.yaml", "--data", "synthetic:train=40,val=20", "--max-steps", "1", "--out", "run",
                         "--no-progress")
    assert code == 0, err
    (tmp_path / "square.yaml").write_text(WIDE_SPEC.replace("[3, 32, 48]", "[3, 64, 64]"))
    code, _, err = archc(capsys, monkeypatch, "eval", "square.yaml", "--checkpoint", "run", "--data", "synthetic:train=40,val=20")
    assert code == 0, err
    assert "warning: it was trained at input [3, 32, 48], and the spec takes [3, 64, 64]" in err
    flat = WIDE_SPEC.replace("pool: {type: global_avgpool}", "pool: {type: flatten}")
    (tmp_path / "flat.yaml").write_text(flat)
    assert archc(capsys, monkeypatch, "train", "flat.yaml", "--data", "synthetic:train=40,val=20", "--max-steps", "1", "--out", "frun",
                 "--no-progress")[0] == 0
    (tmp_path / "flat64.yaml").write_text(flat.replace("[3, 32, 48]", "[3, 64, 64]"))
    code, _, err = archc(capsys, monkeypatch, "eval", "flat64.yaml", "--checkpoint", "frun", "--data", "synthetic:train=40,val=20")
    assert code == 1 and "fc.weight" in err and "it was trained at input [3, 32, 48]" in err


def test_a_folder_too_large_for_memory_at_the_size_asked_is_refused_before_decoding(tmp_path, monkeypatch):
    import os

    root = make_imagefolder(tmp_path / "pets", per_class=2, val=1)
    real = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda name: 1024 if name == "SC_PHYS_PAGES" else real(name))  # a 4 MiB machine
    with pytest.raises(DataError, match=r"6 images at 640x640 take .* more than half of this machine's"):
        load_dataset(str(root), cache_dir=tmp_path / "cache", resize=True, size=(640, 640), progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
