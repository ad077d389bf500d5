"""The decode-once cache: a dataset directory, decoded, in one file that loads in well under a second.

The file is a `torch.save` of plain tensors, lists and strings, loaded with `weights_only=True`
(no pickled code runs) and `mmap=True` (pages come in as they are used). It is keyed by a
fingerprint of every file the dataset reads (path, size, mtime) and of the decode options, so
an edited, added or removed image rebuilds it. It is written to a temporary file and renamed
into place, so an interrupted build never leaves a half-written cache behind.

Each image size a model asks for (64x64 unless its input says otherwise) has its own file, so
a dataset decoded at 64x64 and at 224x224 keeps both.

Where: `cache_dir` if given, else `$ARCHC_CACHE_DIR`, else `$XDG_CACHE_HOME/archc/data`
(`~/.cache/archc/data`). Never inside the dataset, which may be read-only.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import torch

from runtime.data.decode import DEFAULT, decode_files, size_text
from runtime.data.imageset import ImageSet, channel_stats, memory_shortfall
from runtime.data.layout import Layout
from runtime.errors import DataError
from runtime.files import replacing

FORMAT_VERSION = 3  # bump when the stored fields or the decoding policy change (3: palette PNGs in colour)


def default_cache_dir() -> Path:
    if os.environ.get("ARCHC_CACHE_DIR"):
        return Path(os.environ["ARCHC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archc" / "data"


def fingerprint(layout: Layout, *, skip_corrupt: bool, resize: bool, size: tuple[int, int] = DEFAULT) -> str:
    h = hashlib.sha256()
    h.update(f"v{FORMAT_VERSION} {layout.format} skip={skip_corrupt} resize={resize} size={size_text(size)}\n".encode())
    # One update over the joined text: the same digest as one update per file, in a third of the time.
    h.update("".join(f"{rel}\t{size}\t{mtime}\n" for rel, size, mtime in layout.stamps).encode())
    return h.hexdigest()


def cache_path(layout: Layout, cache_dir: str | Path | None = None, size: tuple[int, int] = DEFAULT) -> Path:
    # One file per dataset directory and size, so a rebuild replaces the stale file instead of piling up;
    # 64x64 keeps the name it had before sizes existed, so its old file is the one replaced.
    where = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = hashlib.sha256(str(layout.root).encode()).hexdigest()[:12]
    at = "" if tuple(size) == DEFAULT else f"-{size_text(size)}"
    return where / f"{layout.root.name or 'root'}-{tag}{at}.pt"


def load_or_build(
    layout: Layout,
    *,
    cache_dir: str | Path | None = None,
    skip_corrupt: bool = False,
    resize: bool = False,
    size: tuple[int, int] = DEFAULT,
    progress: bool = True,
) -> tuple[ImageSet, ImageSet, bool]:
    """(train, val, built): from the cache when it is fresh, else decoded and cached.
    Images come as (3, *size); `size` is (height, width)."""
    size = tuple(size)
    path = cache_path(layout, cache_dir, size)
    key = fingerprint(layout, skip_corrupt=skip_corrupt, resize=resize, size=size)
    stored = _read(path, key, size)
    built = stored is None
    if stored is None:
        short = memory_shortfall(len(layout.train.files) + len(layout.val.files), size)
        if short is not None:  # before a decode that would fail, or be killed, after minutes
            raise DataError(f"{layout.root}: {short}; use a smaller size (the spec's input, or --size)")
        stored = _build(layout, key, skip_corrupt=skip_corrupt, resize=resize, size=size, progress=progress)
        _write_atomically(stored, path)
    train, val = (_imageset(stored, split) for split in ("train", "val"))
    return train, val, built


def _read(path: Path, key: str, size: tuple[int, int]) -> dict | None:
    """The stored dict when the file exists and matches `key`; None means rebuild."""
    if not path.exists():
        return None
    try:
        stored = torch.load(path, weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - an unreadable cache is only a cache miss
        return _rebuilding(path, f"unreadable: {type(e).__name__}")
    if not isinstance(stored, dict) or stored.get("version") != FORMAT_VERSION or stored.get("fingerprint") != key:
        return None  # stale: the data or the decoding changed, the usual reason to rebuild
    problem = _check(stored, size)
    return _rebuilding(path, problem) if problem else stored


def _check(stored: dict, size: tuple[int, int]) -> str | None:
    """What is wrong with a cache whose key matches (a damaged or hand-edited file), or None."""
    classes = stored.get("classes")
    if not isinstance(classes, list) or not isinstance(stored.get("names"), list) or len(stored["names"]) != len(classes):
        return "bad class list"
    for split in ("train", "val"):
        part = stored.get(split)
        if not isinstance(part, dict) or not all(isinstance(part.get(k), t) for k, t in
                                                 (("images", torch.Tensor), ("labels", torch.Tensor), ("files", str), ("skipped", list))):
            return f"{split} split incomplete"
        images, labels = part["images"], part["labels"]
        if images.dim() != 4 or labels.dim() != 1 or len(labels) != len(images) or labels.dtype != torch.int64:
            return f"{split} images and labels do not match"
        if tuple(images.shape[1:]) != (3, *size) or images.dtype != torch.uint8:
            return f"{split} images are not uint8 3x{size_text(size)}"
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            return f"{split} labels outside 0..{len(classes) - 1}"
        if len(part["files"].split("\n") if part["files"] else []) != len(labels):
            return f"{split} file list does not match its images"
    if not isinstance(stored["train"].get("mean"), torch.Tensor):
        return "training statistics missing"
    return None


def _rebuilding(path: Path, why: str) -> None:
    print(f"archc: the dataset cache {path} is damaged ({why}); rebuilding it", file=sys.stderr)
    return None


def _build(layout: Layout, key: str, *, skip_corrupt: bool, resize: bool, size: tuple[int, int], progress: bool) -> dict:
    stored: dict = {
        "version": FORMAT_VERSION,
        "fingerprint": key,
        "format": layout.format,
        "classes": layout.classes,
        "names": layout.names,
    }
    for split_name in ("train", "val"):
        split = getattr(layout, split_name)
        decoded = decode_files(
            layout.root, split.files, skip_corrupt=skip_corrupt, resize=resize, size=size, progress=progress, label=f"decoding {split_name}"
        )
        if decoded.resized and progress:
            print(f"archc: resized {decoded.resized} {split_name} images to {size_text(size)}", file=sys.stderr)
        labels = torch.tensor(split.labels, dtype=torch.int64)[decoded.kept] if split.labels else torch.zeros(0, dtype=torch.int64)
        stored[split_name] = {
            "images": decoded.images,
            "labels": labels,
            # One string, not a list: weights_only loading unpickles in Python, 0.6 s for 110,000 names.
            "files": "\n".join(split.files[i] for i in decoded.kept),
            "grayscale": decoded.grayscale,
            "skipped": [list(item) for item in decoded.skipped],
        }
    if stored["train"]["images"].shape[0] == 0:
        raise DataError(f"{layout.root}: no training image could be decoded")
    # Preprocessing subtracts the training mean; storing it saves a pass over 1.2 GB per load.
    mean, std = channel_stats(stored["train"]["images"])
    stored["train"]["mean"], stored["train"]["std"] = mean, std
    return stored


def _write_atomically(stored: dict, path: Path) -> None:
    try:
        with replacing(path) as tmp:
            torch.save(stored, tmp)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[-1]
        raise DataError(f"{path}: cannot write the dataset cache: {why}; set --cache-dir or ARCHC_CACHE_DIR") from None


def _imageset(stored: dict, split: str) -> ImageSet:
    part = stored[split]
    return ImageSet(
        part["images"],
        part["labels"],
        list(stored["classes"]),
        list(stored["names"]),
        files=part["files"].split("\n") if part["files"] else [],
        grayscale=part["grayscale"],
        skipped=[(f, reason) for f, reason in part["skipped"]],
        stats=(part["mean"], part["std"]) if "mean" in part else None,
    )
