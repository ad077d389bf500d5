"""Reading dataset directories: both layouts, and a clear error naming the path for each bad one."""
from __future__ import annotations

import os

import pytest
import torch

from runtime.data import load_dataset
from runtime.data.cache import load_or_build
from runtime.data.layout import read_layout
from runtime.errors import DataError
from tests.runtime.data_helpers import jpeg_bytes, make_imagefolder, make_tiny_imagenet


def load(path, tmp_path, **kw):
    return load_dataset(str(path), cache_dir=tmp_path / "cache", progress=False, **kw)


def test_tiny_imagenet_layout_classes_from_wnids_and_val_labels_from_annotations(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny", wnids=("n02", "n01"), per_class=3, val_per_class=2)
    train, val = load(root, tmp_path)
    assert train.classes == ["n02", "n01"] and train.names == ["name of n02", "name of n01"]
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert val.files == [f"val/images/val_{i}.JPEG" for i in range(4)] and val.labels.tolist() == [0, 0, 1, 1]
    assert not any("test" in f for f in train.files + val.files)


def test_a_training_folder_not_in_wnids_is_ignored(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")
    extra = root / "train" / "n99" / "images" / "n99_0.JPEG"
    extra.parent.mkdir(parents=True)
    extra.write_bytes(jpeg_bytes(7))
    train, _ = load(root, tmp_path)
    assert train.classes == ["n01", "n02"] and len(train) == 8


def test_missing_wnids_txt_is_an_error_naming_it(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")
    (root / "wnids.txt").unlink()
    with pytest.raises(DataError, match=f"{root / 'wnids.txt'}: missing"):
        load(root, tmp_path)
    with pytest.raises(DataError, match="wnids.txt: missing"):
        load(f"tiny-imagenet:{root}", tmp_path)


def test_annotation_naming_an_unknown_class_is_an_error_naming_file_and_line(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")
    annotations = root / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    lines[2] = lines[2].replace("n02", "n07")
    annotations.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        load(root, tmp_path)
    assert str(error.value) == f"{annotations}:3: val_2.JPEG is labelled n07, a class that wnids.txt does not list"


def test_missing_validation_file_is_an_error_naming_it(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")
    (root / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(DataError) as error:
        load(root, tmp_path)
    assert str(error.value).startswith(f"{root / 'val' / 'images' / 'val_1.JPEG'}: missing file")
    assert "val_annotations.txt:2" in str(error.value)


def test_missing_training_folder_of_a_listed_class_is_an_error(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")
    for f in (root / "train" / "n02" / "images").iterdir():
        f.unlink()
    (root / "train" / "n02" / "images").rmdir()
    with pytest.raises(DataError, match="n02/images: missing; wnids.txt lists class n02"):
        load(root, tmp_path)


def test_image_that_is_not_64x64_is_refused_by_default_and_resized_on_request(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")
    odd = root / "train" / "n01" / "images" / "n01_2.JPEG"
    odd.write_bytes(jpeg_bytes(3, size=(96, 80)))
    with pytest.raises(DataError) as error:
        load(root, tmp_path)
    assert f"{odd}: is 96x80" in str(error.value) and "--resize" in str(error.value)
    train, _ = load(root, tmp_path, resize=True)
    assert train.images.shape == (8, 3, 64, 64)


def test_grayscale_source_becomes_three_equal_channels(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")  # every fifth generated JPEG is grayscale
    train, val = load(root, tmp_path)
    gray = torch.cat([train.grayscale, val.grayscale])
    images = torch.cat([train.images, val.images])[gray]
    assert gray.sum() == 2 and torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])


def test_imagefolder_with_train_and_val(tmp_path):
    root = make_imagefolder(tmp_path / "pets", classes=("dog", "cat"), per_class=5, val=2)
    train, val = load(root, tmp_path)
    assert train.classes == ["cat", "dog"]  # sorted, as torchvision's ImageFolder does
    assert len(train) == 10 and len(val) == 4 and val.labels.tolist() == [0, 0, 1, 1]
    assert read_layout(root).val_held_out is False


def test_imagefolder_without_val_holds_out_every_tenth_image_of_each_class(tmp_path):
    root = make_imagefolder(tmp_path / "pets", per_class=25, bare=True)
    layout = read_layout(root)
    assert layout.format == "imagefolder" and layout.val_held_out
    assert layout.val.files == ["cat/009.jpg", "cat/019.jpg", "dog/009.jpg", "dog/019.jpg"]
    assert len(layout.train.files) == 46


def test_imagefolder_val_class_missing_from_train_is_an_error(tmp_path):
    root = make_imagefolder(tmp_path / "pets", per_class=2, val=1)
    (root / "val" / "cow").mkdir()
    with pytest.raises(DataError, match="validation class 'cow' has no folder"):
        load(root, tmp_path)


def test_imagefolder_val_without_class_folders_is_an_error(tmp_path):
    root = make_imagefolder(tmp_path / "pets", per_class=2)
    (root / "val").mkdir()
    (root / "val" / "000.jpg").write_bytes(jpeg_bytes(1))
    with pytest.raises(DataError, match="val: no images in class folders; remove it"):
        load(root, tmp_path)


def test_directory_that_is_no_dataset_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a dataset"):
        load(tmp_path / "empty", tmp_path)
    with pytest.raises(DataError, match="no such dataset directory"):
        load(tmp_path / "nowhere", tmp_path)


def test_second_load_reads_the_cache_and_a_changed_file_rebuilds_it(tmp_path, monkeypatch):
    root = make_tiny_imagenet(tmp_path / "tiny")
    cache = tmp_path / "cache"
    _, _, built = load_or_build(read_layout(root), cache_dir=cache, progress=False)
    assert built
    _, _, built = load_or_build(read_layout(root), cache_dir=cache, progress=False)
    assert not built
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no temp file left behind

    changed = root / "train" / "n01" / "images" / "n01_0.JPEG"
    changed.write_bytes(jpeg_bytes(99))
    os.utime(changed, ns=(1, 1))  # even if the new file had the old mtime, its size differs
    train, _, built = load_or_build(read_layout(root), cache_dir=cache, progress=False)
    assert built and len(list(cache.iterdir())) == 1  # replaced, not piled up
    (root / "train" / "n01" / "images" / "n01_1.JPEG").unlink()
    train, _, built = load_or_build(read_layout(root), cache_dir=cache, progress=False)
    assert built and len(train) == 7


def test_unreadable_cache_file_is_rebuilt_not_an_error(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")
    cache = tmp_path / "cache"
    load_or_build(read_layout(root), cache_dir=cache, progress=False)
    (path,) = cache.iterdir()
    path.write_bytes(b"half a file")
    train, _, built = load_or_build(read_layout(root), cache_dir=cache, progress=False)
    assert built and len(train) == 8


def test_cache_stores_the_training_mean(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")
    train, _ = load(root, tmp_path)
    train_again, _ = load(root, tmp_path)
    expected = train.images.double().mean(dim=(0, 2, 3)) / 255
    assert train_again.stats is not None  # loaded, not recomputed
    assert torch.allclose(train_again.channel_mean().double(), expected, atol=1e-6)


# ---- odd trees and odd files (from a hostile-input hunt): each a DataError naming the file


def test_too_few_images_to_hold_out_a_validation_split_is_an_error_saying_so(tmp_path):
    root = make_imagefolder(tmp_path / "few", per_class=9)  # the hold-out takes every 10th image of a class
    with pytest.raises(DataError, match="too few images to hold out a validation split"):
        read_layout(root)


def test_a_link_to_nothing_and_a_link_loop_are_errors_naming_them(tmp_path):
    dangling = make_imagefolder(tmp_path / "dangling", per_class=10)
    (dangling / "train" / "cat" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(DataError, match=r"gone\.jpg: a link to a file that does not exist"):
        read_layout(dangling)
    loop = make_imagefolder(tmp_path / "loop", per_class=10)
    (loop / "train" / "cat" / "up").symlink_to("..")
    with pytest.raises(DataError, match="loop|cannot be read"):
        read_layout(loop)


def test_a_file_name_that_is_not_utf8_is_an_error_naming_it(tmp_path):
    root = make_imagefolder(tmp_path / "names", per_class=10)
    os.rename(root / "train" / "cat" / "000.jpg", os.fsencode(root / "train" / "cat") + b"/\xff.jpg")
    with pytest.raises(DataError, match="not UTF-8 text; rename it"):
        read_layout(root)


def test_a_png_whose_header_claims_a_huge_image_is_refused_before_decoding(tmp_path):
    import zlib

    from runtime.data.decode import decode_one

    ihdr = (100_000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    png = b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
    (tmp_path / "big.png").write_bytes(png + b"\x00" * 64)
    with pytest.raises(DataError, match="header says 100000x100000 pixels"):
        decode_one(tmp_path / "big.png")


def png(pixels, interlace: bool = False, keep: float = 1.0) -> bytes:
    """An 8-bit RGB PNG of `pixels` (H, W, 3), written by hand (PIL writes no interlaced
    ones): rows with filter 0, Adam7's seven passes when `interlace`, and only the first
    `keep` of the image data, as a file cut short inside IDAT but ended properly."""
    import zlib

    import numpy as np

    h, w, _ = pixels.shape
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)) if interlace else ((0, 0, 1, 1),)
    raw = b"".join(b"\0" + row.tobytes() for x0, y0, dx, dy in passes for row in np.asarray(pixels)[y0::dy, x0::dx] if row.size)
    raw = raw[:int(len(raw) * keep)]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, int(interlace)])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("interlace", [False, True])
def test_a_png_short_of_image_data_is_an_error_not_a_crash(tmp_path, interlace):
    """torchvision's decoder kills the process on a PNG that ends properly but holds too few
    rows: it is refused first, by counting the inflated bytes; whole ones still decode."""
    import numpy as np

    from runtime.data.decode import decode_one

    pixels = np.random.default_rng(0).integers(0, 256, (13, 11, 3), dtype=np.uint8)  # sizes that leave Adam7 passes ragged
    (tmp_path / "whole.png").write_bytes(png(pixels, interlace))
    image, _, _ = decode_one(tmp_path / "whole.png", size=(13, 11))
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))
    (tmp_path / "short.png").write_bytes(png(pixels, interlace, keep=0.99))
    with pytest.raises(DataError, match=r"corrupt or truncated PNG \(not enough image data: \d+ of the \d+ bytes its 11x13 header needs\)"):
        decode_one(tmp_path / "short.png", size=(13, 11))


def test_a_16_bit_png_is_scaled_to_8_bits_not_wrapped(tmp_path):
    import numpy as np
    from PIL import Image

    from runtime.data.decode import decode_one

    values = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image, gray, _ = decode_one(tmp_path / "deep.png")
    want = torch.from_numpy(((values.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8))
    assert image.dtype == torch.uint8 and gray and torch.equal(image[0], want) and image.max() == 255


def test_every_problem_of_a_folder_is_listed_in_one_go(tmp_path):
    """Two unreadable files and one of another size: info names both unreadable ones, and
    decoding names all three, so a user fixes the folder in one round."""
    from runtime.data.info import dataset_info

    root = make_imagefolder(tmp_path / "pets", per_class=3, val=1)
    (root / "train" / "cat" / "empty.jpg").write_bytes(b"")
    (root / "train" / "cat" / "fake.png").write_bytes(b"hello")
    (root / "train" / "dog" / "big.jpg").write_bytes(jpeg_bytes(3, size=(80, 90)))
    with pytest.raises(DataError) as error:
        dataset_info(str(root))
    assert str(error.value).startswith("2 images cannot be read") and "empty.jpg" in str(error.value) and "fake.png" in str(error.value)
    with pytest.raises(DataError) as error:
        load(root, tmp_path)
    message = str(error.value)
    assert "1 image not 64x64" in message and "big.jpg: is 80x90" in message
    assert "2 images cannot be decoded" in message and "empty.jpg: empty file" in message


def test_a_palette_png_is_read_in_its_colours(tmp_path):
    """An indexed-colour PNG holds palette numbers in its one channel: it is read as the RGB
    that PIL's convert("RGB") gives, and is not grayscale (with transparency too)."""
    from PIL import Image

    from runtime.data.decode import decode_one

    pixels = torch.randint(0, 256, (12, 10, 3), generator=torch.Generator().manual_seed(3), dtype=torch.uint8).numpy()
    for name, image, extra in (("p.png", Image.fromarray(pixels).convert("P"), {}),
                               ("t.png", Image.fromarray(pixels).convert("P"), {"transparency": 0})):
        image.save(tmp_path / name, **extra)
        got, gray, _ = decode_one(tmp_path / name, resize=True, size=(12, 10))
        want = torch.from_numpy(__import__("numpy").asarray(Image.open(tmp_path / name).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(got, want) and not gray
