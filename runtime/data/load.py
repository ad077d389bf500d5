"""`load_dataset(spec)`: the one entry point from a dataset name to (train, val) ImageSets.

A spec is one of:
- `synthetic`, `synthetic:SEED`, or `synthetic:seed=1,train=2000,val=1000,noise=12`: the
  built-in procedural set (runtime/data/synthetic.py), generated in memory, never cached;
- `tiny-imagenet:DIR` or `imagefolder:DIR`: that layout, insisted on;
- `DIR`: a directory, its layout detected (runtime/data/layout.py).
Directories are decoded once and cached (runtime/data/cache.py).

Images come at `size` (height, width), 64x64 by default: the synthetic set is drawn at that
size, and a directory's images must have it (or be resized to it, with `resize=True`).
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from runtime.data.decode import DEFAULT
from runtime.data.imageset import ImageSet
from runtime.data.synthetic import SyntheticConfig
from runtime.errors import RuntimeUsageError

LAYOUT_PREFIXES = ("tiny-imagenet", "imagefolder")


@dataclass(frozen=True)
class DatasetSpec:
    kind: str  # "synthetic" or "directory"
    synthetic: SyntheticConfig | None = None  # set when kind is "synthetic"
    path: Path | None = None  # set when kind is "directory"
    layout: str | None = None  # forced layout, or None to detect it


def parse_spec(spec: str, *, seed: int = 0) -> DatasetSpec:
    """Parse a dataset spec; `seed` is the synthetic seed when the spec gives none."""
    head, sep, rest = spec.partition(":")
    if head == "synthetic":
        return DatasetSpec("synthetic", synthetic=_synthetic_config(rest if sep else "", seed))
    if head in LAYOUT_PREFIXES and sep:
        if not rest:
            raise RuntimeUsageError(f"'{spec}' names no folder; write {head}:DIR")
        return DatasetSpec("directory", path=Path(rest), layout=head)
    if sep and head.isidentifier() and not Path(spec).exists():
        # `foo:bar` reads as a kind of dataset, not a folder: name the kinds there are
        raise RuntimeUsageError(f"unknown kind of dataset '{head}' in '{spec}'; use synthetic[:...], "
                                f"{', '.join(p + ':DIR' for p in LAYOUT_PREFIXES)}, or a dataset folder")
    return DatasetSpec("directory", path=Path(spec))


def absolute_spec(spec: str) -> str:
    """`spec` with its folder made absolute (`imagefolder:data/pets` -> `imagefolder:/home/me/data/pets`),
    so that a run's config names its data from any working directory; synthetic specs as given."""
    import os

    head, sep, rest = spec.partition(":")
    if head == "synthetic":
        return spec
    if head in LAYOUT_PREFIXES and sep and rest:
        return f"{head}:{os.path.abspath(rest)}"
    return os.path.abspath(spec)


def same_folder(a: str, b: str) -> bool:
    """Whether two dataset specs name one folder in one layout (a relative path, a link)."""
    pa, pb = parse_spec(a), parse_spec(b)
    if pa.kind != "directory" or pb.kind != "directory" or None not in (pa.layout, pb.layout) and pa.layout != pb.layout:
        return False
    return pa.path.resolve() == pb.path.resolve()


def load_dataset(
    spec: str,
    *,
    cache_dir: str | Path | None = None,
    skip_corrupt: bool = False,
    resize: bool = False,
    size: tuple[int, int] = DEFAULT,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ImageSet, ImageSet]:
    """(train, val) for a dataset spec. Raises DataError for unreadable data, RuntimeUsageError for a bad spec."""
    parsed = parse_spec(spec, seed=seed)
    if parsed.kind == "synthetic":
        from runtime.data.synthetic import generate

        _fits_in_memory(parsed.synthetic, size, spec)
        return generate(parsed.synthetic, size)
    from runtime.data.cache import load_or_build
    from runtime.data.layout import read_layout

    layout = read_layout(parsed.path, expect=parsed.layout)
    train, val, _ = load_or_build(layout, cache_dir=cache_dir, skip_corrupt=skip_corrupt, resize=resize, size=size, progress=progress)
    if progress:
        report_skipped(train, val)
    return train, val


def report_skipped(*splits: ImageSet) -> None:
    """Tell the user, on stderr, which files --skip-corrupt left out (also on cached loads)."""
    skipped = [item for split in splits for item in split.skipped]
    if skipped:
        print(f"archc: skipped {len(skipped)} unreadable image(s):", file=sys.stderr)
        for file, reason in skipped:
            print(f"  {file}: {reason}", file=sys.stderr)


def _synthetic_config(options: str, seed: int) -> SyntheticConfig:
    if options.strip().isdigit():
        return SyntheticConfig(seed=int(options))
    fields = {f.name: f.type for f in dataclasses.fields(SyntheticConfig)}
    values: dict[str, float | int] = {"seed": seed}
    for item in filter(None, (p.strip() for p in options.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in fields:
            raise RuntimeUsageError(
                f"bad synthetic option '{item}'; use synthetic:SEED or synthetic:{'=N,'.join(fields)}=N"
            )
        try:
            values[key] = float(value) if key == "noise" else int(value)
        except ValueError:
            raise RuntimeUsageError(f"synthetic option {key} wants a number, got '{value}'") from None
        if key == "noise" and not math.isfinite(values[key]):
            raise RuntimeUsageError(f"synthetic option noise wants a finite number, got '{value}'")
    try:
        return SyntheticConfig(**values)
    except ValueError as e:
        raise RuntimeUsageError(str(e)) from None


def _fits_in_memory(config: SyntheticConfig, size: tuple[int, int], spec: str) -> None:
    """The synthetic set lives in memory: one that cannot fit is refused before it is drawn,
    instead of the kernel killing the process, or an allocation failing, minutes later."""
    from runtime.data.imageset import memory_shortfall

    short = memory_shortfall(config.train + config.val, size)
    if short is not None:
        raise RuntimeUsageError(f"--data {spec}: {short}; ask for fewer images")
