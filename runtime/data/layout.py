"""Reading a dataset directory: which files make up each split, and their labels.

Two layouts are understood:

- **Tiny ImageNet** (the official archive's layout; detected by `wnids.txt` or by
  `val/val_annotations.txt`): class order from `wnids.txt`, names from `words.txt`, training
  images from `train/<wnid>/images/`, validation labels from `val/val_annotations.txt`.
  `test/` has no labels and is ignored. A training folder that `wnids.txt` does not list is
  ignored too, so `wnids.txt` alone decides the classes.
- **ImageFolder style**, for users' own data: `train/<class>/...` and `val/<class>/...`, with
  images anywhere below each class folder. Classes are the training folders, sorted by name.
  A directory of class folders with no `train/`, or a `train/` with no `val/`, has no
  validation split of its own: every 10th image of each class (in file-name order) is held out
  as validation. That rule is deterministic, keeps classes balanced, and needs no seed.

Nothing is decoded here; this only lists files, with their size and mtime for the cache key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import DataError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
HOLDOUT_EVERY = 10  # in an ImageFolder tree without val/, image k of a class is val when k % 10 == 9


@dataclass
class Split:
    files: list[str] = field(default_factory=list)  # relative to the dataset root, in load order
    labels: list[int] = field(default_factory=list)  # class index of each file


@dataclass
class Layout:
    root: Path  # the dataset directory, resolved
    format: str  # "tiny-imagenet" or "imagefolder"
    classes: list[str]  # class ids in label order
    names: list[str]  # readable names, same order
    train: Split
    val: Split
    val_held_out: bool  # True when val was carved out of the training images
    stamps: list[tuple[str, int, int]]  # (file, size, mtime_ns) of every file read: the cache key


def read_layout(root: str | Path, *, expect: str | None = None) -> Layout:
    """List the splits of the dataset at `root`. `expect` forces "tiny-imagenet" or "imagefolder"."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {'a file, not a dataset directory' if root.exists() else 'no such dataset directory'}")
    root = root.resolve()
    tiny = (root / "wnids.txt").exists() or (root / "val" / "val_annotations.txt").exists()
    if expect == "tiny-imagenet" or (expect is None and tiny):
        return _read_tiny_imagenet(root)
    return _read_imagefolder(root)


def _read_tiny_imagenet(root: Path) -> Layout:
    stamps: list[tuple[str, int, int]] = []
    wnids_path = root / "wnids.txt"
    if not wnids_path.exists():
        raise DataError(f"{wnids_path}: missing; a Tiny ImageNet directory lists its classes in wnids.txt")
    classes = [line.strip() for line in _read_text(wnids_path, root, stamps).splitlines() if line.strip()]
    if not classes:
        raise DataError(f"{wnids_path}: lists no classes")
    twice = sorted({c for c in classes if classes.count(c) > 1}) if len(set(classes)) < len(classes) else []
    if twice:
        raise DataError(f"{wnids_path}: lists {', '.join(twice)} more than once; each class must appear once")
    names = _read_names(root / "words.txt", classes, root, stamps)
    index = {wnid: i for i, wnid in enumerate(classes)}

    folders = [root / "train" / wnid / "images" for wnid in classes]
    for wnid, folder in zip(classes, folders):
        if not folder.is_dir():
            raise DataError(f"{folder}: missing; wnids.txt lists class {wnid} but it has no training images")
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.exists():
        raise DataError(f"{annotations}: missing; Tiny ImageNet labels its validation images there")

    train = Split()
    for label, folder in enumerate(folders):
        listing = _list_images(folder, root)
        train.files.extend(rel for rel, _, _ in listing)
        train.labels.extend([label] * len(listing))
        stamps.extend(listing)

    # One listing of val/images, then look-ups: cheaper than a stat per annotated name.
    val_folder = root / "val" / "images"
    on_disk = {rel: (size, mtime) for rel, size, mtime in _list_images(val_folder, root)} if val_folder.is_dir() else {}
    val, seen = Split(), {}  # file -> (line, wnid) of its first annotation
    for lineno, line in enumerate(_read_text(annotations, root, stamps).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DataError(f"{annotations}:{lineno}: expected 'file<TAB>wnid<TAB>box', got {line!r}")
        name, wnid = parts[0].strip(), parts[1].strip()
        if wnid not in index:
            raise DataError(f"{annotations}:{lineno}: {name} is labelled {wnid}, a class that wnids.txt does not list")
        if name in seen:
            first, label = seen[name]
            how = f"again (first at line {first})" if label == wnid else f"as {wnid}, but line {first} labels it {label}"
            raise DataError(f"{annotations}:{lineno}: {name} is annotated {how}; each validation image must appear once")
        seen[name] = (lineno, wnid)
        rel = f"val/images/{name}"
        if rel not in on_disk:
            raise DataError(f"{root / rel}: missing file ({annotations}:{lineno} names it)")
        stamps.append((rel, *on_disk[rel]))
        val.files.append(rel)
        val.labels.append(index[wnid])
    return Layout(root, "tiny-imagenet", classes, names, train, val, False, stamps)


def _read_imagefolder(root: Path) -> Layout:
    stamps: list[tuple[str, int, int]] = []
    train_dir = root / "train" if (root / "train").is_dir() else root
    classes = sorted(d.name for d in os.scandir(train_dir) if d.is_dir() and not d.name.startswith("."))
    if train_dir == root:
        # A bare tree of class folders: `val`/`test` are not classes, in case they are empty.
        classes = [c for c in classes if c not in ("val", "test")]
    if not classes:
        raise DataError(f"{root}: not a dataset: no wnids.txt (Tiny ImageNet) and no class folders (ImageFolder style)")
    index = {c: i for i, c in enumerate(classes)}
    val_dir = root / "val" if train_dir != root and (root / "val").is_dir() else None

    train, val = Split(), Split()
    for label, name in enumerate(classes):
        files = _list_images(train_dir / name, root, recursive=True)
        if not files:
            raise DataError(f"{train_dir / name}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for k, (rel, size, mtime) in enumerate(files):
            held_out = val_dir is None and k % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
            split = val if held_out else train
            split.files.append(rel)
            split.labels.append(label)
            stamps.append((rel, size, mtime))
    if val_dir is not None:
        for entry in sorted(os.scandir(val_dir), key=lambda e: e.name):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            if entry.name not in index:
                raise DataError(f"{entry.path}: validation class '{entry.name}' has no folder in {train_dir}")
            for rel, size, mtime in _list_images(Path(entry.path), root, recursive=True):
                val.files.append(rel)
                val.labels.append(index[entry.name])
                stamps.append((rel, size, mtime))
        if not val.files:
            raise DataError(f"{val_dir}: no images in class folders; remove it to hold out every {HOLDOUT_EVERY}th training image instead")
    if not val.files:  # every class has fewer images than the hold-out takes one from
        raise DataError(f"{root}: too few images to hold out a validation split (every {HOLDOUT_EVERY}th image of a class is held out, "
                        f"and no class has {HOLDOUT_EVERY}); add images, or give a val/ folder of class folders beside train/")
    return Layout(root, "imagefolder", classes, list(classes), train, val, val_dir is None, stamps)


def _list_images(folder: Path, root: Path, recursive: bool = False) -> list[tuple[str, int, int]]:
    """(path relative to root, size, mtime_ns) of the images in a folder, sorted by path.

    This runs on every load, cache hit or not, over 110,000 files for Tiny ImageNet: scandir
    and string joins, because os.walk and os.path.relpath per file cost seconds there.
    """
    found: list[tuple[str, int, int]] = []
    pending: list[tuple[str, str, frozenset]] = [(str(folder), folder.relative_to(root).as_posix(), frozenset())]
    while pending:
        path, rel, above = pending.pop()  # above: the folders it lies in, by device and inode
        try:
            st = os.stat(path)
            here = (st.st_dev, st.st_ino)
            if here in above:
                raise DataError(f"{path}: a link to a folder that holds it (a loop); remove it")
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir():
                        if recursive:
                            pending.append((entry.path, f"{rel}/{entry.name}", above | {here}))
                    elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                        _check_name(entry.path)
                        try:
                            st = entry.stat()
                        except FileNotFoundError:
                            raise DataError(f"{entry.path}: a link to a file that does not exist; remove it") from None
                        found.append((f"{rel}/{entry.name}", st.st_size, st.st_mtime_ns))
        except OSError as e:  # unreadable folders, a loop the kernel caught first (ELOOP), ...
            raise DataError(f"{e.filename or path}: cannot be read ({e.strerror})") from None
    found.sort()
    return found


def _check_name(path: str) -> None:
    """File names travel into the cache's fingerprint and the run's JSON files, which are UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{os.fsencode(path)!r}: the file name is not UTF-8 text; rename it") from None


def _read_names(words: Path, classes: list[str], root: Path, stamps: list) -> list[str]:
    """Readable names from words.txt (which covers all of ImageNet); the id where it has none."""
    if not words.exists():
        return list(classes)
    wanted = set(classes)
    found: dict[str, str] = {}
    for line in _read_text(words, root, stamps).splitlines():
        wnid, _, name = line.partition("\t")
        if wnid in wanted:
            found[wnid] = name.strip()
    return [found.get(c, c) for c in classes]


def _read_text(path: Path, root: Path, stamps: list) -> str:
    stamps.append((path.relative_to(root).as_posix(), *_stat(path)))
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: missing file") from None
    return st.st_size, st.st_mtime_ns
