"""`dataset_info(spec)`: what a dataset holds, without decoding it.

Grayscale images are counted from their headers (PIL opens files lazily), so this is quick even
for a dataset that has no cache yet.
"""
from __future__ import annotations

from pathlib import Path

from runtime.data.load import parse_spec
from runtime.errors import DataError


def dataset_info(spec: str, skip_corrupt: bool = False) -> dict:
    """{"format", "classes", "splits": {"train", "val"}, "grayscale"}: the JSON contract of `archc data info`.

    An ImageFolder tree without a val/ folder adds "val_held_out": true (see layout.py).
    With `skip_corrupt`, unreadable images are left out of the counts and listed under
    "skipped" ([file, reason] pairs) instead of failing the whole set.
    """
    parsed = parse_spec(spec)
    if parsed.kind == "synthetic":
        from runtime.data.synthetic import CLASSES

        config = parsed.synthetic
        return {"format": "synthetic", "classes": len(CLASSES), "splits": {"train": config.train, "val": config.val}, "grayscale": 0}
    from runtime.data.layout import read_layout

    layout = read_layout(parsed.path, expect=parsed.layout)
    skipped: list[list[str]] | None = [] if skip_corrupt else None
    grayscale = count_grayscale(layout.root, layout.train.files + layout.val.files, skipped)
    bad = {f for f, _ in skipped or []}
    info = {
        "format": layout.format,
        "classes": len(layout.classes),
        "splits": {name: sum(f not in bad for f in getattr(layout, name).files) for name in ("train", "val")},
        "grayscale": grayscale,
    }
    if skipped is not None:
        info["skipped"] = skipped
    if layout.val_held_out:  # only ImageFolder trees without val/ carry this key
        info["val_held_out"] = True
    return info


def count_grayscale(root: Path, files: list[str], skipped: list | None = None) -> int:
    """Grayscale images among `files`; the unreadable ones are one error listing them all, or
    appended to `skipped`."""
    from PIL import Image, UnidentifiedImageError

    from runtime.data.decode import summary

    count, bad = 0, {}
    for i, rel in enumerate(files):
        try:
            with Image.open(root / rel) as image:
                count += image.mode in ("1", "L", "LA", "I", "I;16", "F")
        except (UnidentifiedImageError, OSError) as e:
            if skipped is not None:
                skipped.append([rel, str(e) or type(e).__name__])
                continue
            bad[i] = f"not a readable image ({e})"
    if len(bad) == 1:
        (i, reason), = bad.items()
        raise DataError(f"{root / files[i]}: {reason}")
    if bad:
        raise DataError(summary(bad, root, files, "cannot be read", "pass --skip-corrupt to count around them"))
    return count
