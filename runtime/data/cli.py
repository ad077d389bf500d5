"""`archc data info|prepare|download`: a thin layer over info.py, cache.py and download.py.

Errors are raised (DataError exits 1, RuntimeUsageError 2) and printed by the top-level CLI.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from runtime import argtypes

DESCRIPTION = "Inspect, prepare and download datasets."
DATASET_HELP = "a dataset directory (Tiny ImageNet or ImageFolder layout), 'tiny-imagenet:DIR', 'imagefolder:DIR', or 'synthetic[:SEED]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argtypes.Parser(prog="archc data", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{info,prepare,download}")

    info = commands.add_parser("info", help="classes, split sizes and grayscale count, without decoding")
    info.add_argument("dataset", metavar="DIR", help=DATASET_HELP)
    info.add_argument("--format", choices=("text", "json"), default="text", help="json prints the stable machine-readable form")
    info.add_argument("--skip-corrupt", action="store_true", help="count around images that do not open, and list them")

    prepare = commands.add_parser("prepare", help="decode every image once into the cache")
    prepare.add_argument("dataset", metavar="DIR", help=DATASET_HELP)
    prepare.add_argument("--cache-dir", help="where the cache lives (default: $ARCHC_CACHE_DIR or ~/.cache/archc/data)")
    prepare.add_argument("--skip-corrupt", action="store_true", help="leave out images that do not decode, and list them")
    prepare.add_argument("--resize", action="store_true", help="resize images that are not of --size (scaled to cover it, centre crop) instead of refusing them")
    prepare.add_argument("--size", type=argtypes.image_size, default=(64, 64), metavar="WxH|N",
                         help="decode to this size, the input size of the model that will train on it (default 64x64)")
    prepare.add_argument("--no-progress", action="store_true", help="no progress bar")

    download = commands.add_parser("download", help="fetch, verify and unpack a dataset archive (resumes)")
    download.add_argument("name", choices=("tiny-imagenet",), help="the dataset to fetch")
    download.add_argument("--to", required=True, metavar="DIR", help="unpacks into DIR/tiny-imagenet-200")
    download.add_argument("--url", help="fetch from this http(s):// or file:// URL instead of the official one")
    download.add_argument("--sha256", help="also require this SHA-256 of the archive")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return {"info": _info, "prepare": _prepare, "download": _download}[args.command](args)


def _info(args: argparse.Namespace) -> int:
    from runtime.data.info import dataset_info

    info = dataset_info(args.dataset, skip_corrupt=args.skip_corrupt)
    if args.format == "json":
        print(json.dumps(info))
        return 0
    splits = info["splits"]
    print(f"{args.dataset}: {info['format']}, {info['classes']} classes")
    print(f"  train      {splits['train']:>7} images")
    held_out = " (held out: every 10th training image of each class)" if info.get("val_held_out") else ""
    print(f"  val        {splits['val']:>7} images{held_out}")
    print(f"  grayscale  {info['grayscale']:>7} images (loaded as 3 equal channels)")
    if info.get("skipped"):
        print(f"  skipped    {len(info['skipped']):>7} unreadable images (--skip-corrupt):")
        for file, reason in info["skipped"]:
            print(f"    {file}: {reason}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from runtime.data.cache import cache_path, load_or_build
    from runtime.data.layout import read_layout
    from runtime.data.load import parse_spec, report_skipped

    from runtime.paths import cache_dir

    parsed = parse_spec(args.dataset)
    if parsed.kind == "synthetic":
        print("the synthetic set is generated in memory and needs no cache")
        return 0
    cache_dir(args.cache_dir)
    start = time.perf_counter()
    layout = read_layout(parsed.path, expect=parsed.layout)
    train, val, built = load_or_build(
        layout, cache_dir=args.cache_dir, skip_corrupt=args.skip_corrupt, resize=args.resize, size=args.size, progress=not args.no_progress
    )
    report_skipped(train, val)
    what = "built" if built else "already up to date"
    print(
        f"cache {what}: {cache_path(layout, args.cache_dir, args.size)} "
        f"({len(train)} train + {len(val)} val images, {time.perf_counter() - start:.1f} s)"
    )
    return 0


def _download(args: argparse.Namespace) -> int:
    from runtime.data.download import OFFICIAL_URL, download_tiny_imagenet
    from runtime.paths import output_dir

    output_dir(args.to, "--to", may_create=True)  # before a download of 237 MB, not after

    target = download_tiny_imagenet(args.to, url=args.url or OFFICIAL_URL, sha256=args.sha256, progress=not args.no_progress)
    print(f"{target}: ready; 'archc data prepare {target}' builds its cache")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
