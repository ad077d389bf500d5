"""Small datasets built in a temporary folder, for the runtime.data tests.

`make_tiny_imagenet` writes the official layout with generated JPEGs (or with files copied
from the real sample), so error cases can be made by editing a copy, never the sample itself.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int, size: tuple[int, int] = (64, 64), gray: bool = False) -> bytes:
    """A JPEG of random pixels, encoded by PIL (an encoder independent of the decoder under test)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0]) if gray else (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def make_tiny_imagenet(
    root: Path, wnids: tuple[str, ...] = ("n01", "n02"), per_class: int = 4, val_per_class: int = 2, sample: Path | None = None
) -> Path:
    """A Tiny ImageNet tree at `root`; images come from `sample` (the real one) when given."""
    donors = sorted((sample / "val" / "images").glob("*.JPEG")) if sample else []
    k = 0

    def write(path: Path) -> None:
        nonlocal k
        path.parent.mkdir(parents=True, exist_ok=True)
        if donors:
            shutil.copyfile(donors[k % len(donors)], path)
        else:
            path.write_bytes(jpeg_bytes(k, gray=k % 5 == 4))
        k += 1

    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (root / "words.txt").write_text("".join(f"{w}\tname of {w}\n" for w in wnids) + "n99\tunused\n")
    lines = []
    for w in wnids:
        for i in range(per_class):
            write(root / "train" / w / "images" / f"{w}_{i}.JPEG")
        for i in range(val_per_class):
            name = f"val_{len(lines)}.JPEG"
            write(root / "val" / "images" / name)
            lines.append(f"{name}\t{w}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    write(root / "test" / "images" / "test_0.JPEG")  # unlabelled: must be ignored
    return root


def make_imagefolder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 20, val: int = 0, bare: bool = False) -> Path:
    """ImageFolder tree: `root/train/<class>/` (and `root/val/<class>/` when val > 0), or `root/<class>/` when bare."""
    for c, name in enumerate(classes):
        for split, count in (("train", per_class), ("val", val)):
            for i in range(count):
                folder = root / name if bare else root / split / name
                path = folder / f"{i:03d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(jpeg_bytes(1000 * c + i + (500 if split == "val" else 0)))
    return root
