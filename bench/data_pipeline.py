"""Data pipeline throughput, side by side in one process (a script, not a test):

1. building the decode-once cache of the Tiny ImageNet sample, and loading it again;
2. runtime.data's BatchLoader: batches of 256 from the in-memory uint8 tensor, with flip and
   crop (padding 4), normalised to float32;
3. torchvision's ImageFolder + DataLoader (2 workers, PIL decoding per sample) on the same
   training images with the same augmentation and normalisation;
4. with --full-size, the cache build and reload at Tiny ImageNet's full size: a tree of
   100,000 training and 10,000 validation files in 200 classes, hard links to the sample's
   images, made in a temporary directory (only file names and counts differ from the real set).

    .venv/bin/python bench/data_pipeline.py [--data DIR] [--device cpu|cuda] [--rounds N] [--threads N] [--full-size]

Prints a table and writes bench/results/data-pipeline-<machine>[-threadsN].json on the results
envelope (bench/README.md). The targets of issue 5: the in-memory pipeline at least 10x the
ImageFolder path, and at least 50,000 augmented images/s on a 2-core CPU.

Like archc train on the CPU, it first calls runtime.allocator.keep_freed_memory(), so that each
float32 batch (12.6 MB at batch 256) reuses the pages of the one before instead of faulting in
fresh ones; ARCHC_MALLOC=system measures without it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch

from runtime import allocator
from runtime.bench.envelope import envelope, write_results
from runtime.data import Augment, BatchLoader, load_dataset

BATCH = 256
PADDING = 4
PIPELINES = {"memory_augmented": "in-memory, flip+crop", "memory_plain": "in-memory, no augmentation",
             "imagefolder": "ImageFolder+DataLoader(2)"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = os.environ.get("ARCHC_TINY_IMAGENET") or str(ROOT.parent / "shared" / "data" / "tiny-imagenet-sample")
    parser.add_argument("--data", default=default_data, help="a Tiny ImageNet directory (default: the shared sample)")
    parser.add_argument("--device", default="cpu", help="where BatchLoader batches live")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each times one epoch of every pipeline, interleaved")
    parser.add_argument("--threads", type=int, help="torch intra-op threads in this process (default: torch's choice, one per core)")
    parser.add_argument("--full-size", action="store_true", help="also build and reload the cache of a full-size (110,000-file) tree")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (Path(args.data) / "wnids.txt").exists():
        print(f"bench: no Tiny ImageNet at {args.data}; pass --data or set ARCHC_TINY_IMAGENET", file=sys.stderr)
        return 2
    alloc = allocator.for_device(torch.device(args.device).type)
    load_before = os.getloadavg()[0]

    figures: dict = {}
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        train, _ = load_dataset(args.data, cache_dir=cache, progress=False)
        figures["cache_build_s"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        train, _ = load_dataset(args.data, cache_dir=cache, progress=False)
        figures["cache_load_s"] = round(time.perf_counter() - start, 3)
    figures["train_images"] = len(train)

    mean = train.channel_mean()
    pipelines = {
        "memory_augmented": memory_epoch(train, args.device, Augment(flip=True, crop_padding=PADDING), mean),
        "memory_plain": memory_epoch(train, args.device, None, mean),
        "imagefolder": imagefolder_epoch(Path(args.data), mean.tolist()),
    }
    # Interleaved rounds: a burst of load from other jobs on a shared machine hits every
    # pipeline alike, and the median and best rounds bound what the pipeline can do.
    # Each round also gives images per CPU-second of this process: on a machine shared with
    # other jobs that is the steadier measure of what the pipeline costs.
    rates: dict[str, list[tuple]] = {name: [] for name in pipelines}
    for name, epoch in pipelines.items():
        epoch()  # warm-up: allocator, page first-touch, worker start
    for _ in range(args.rounds):
        for name, epoch in pipelines.items():
            rates[name].append(epoch())
    rows = [{"pipeline": PIPELINES[name], **summary(values)} for name, values in rates.items()]
    figures["speedup_median"] = round(rows[0]["images_per_s_median"] / rows[2]["images_per_s_median"], 2)
    if args.full_size:
        figures.update(full_size(Path(args.data)))
    figures.update(batch=BATCH, crop_padding=PADDING, rounds=args.rounds, threads=torch.get_num_threads(), allocator=alloc,
                   load_average=[round(load_before, 2), round(os.getloadavg()[0], 2)])

    suffix = f"-threads{args.threads}" if args.threads else ""
    command = " ".join([".venv/bin/python", "bench/data_pipeline.py", *sys.argv[1:]])
    data = envelope("data-pipeline" + suffix, command, rows=rows, figures=figures, device=args.device)
    report(data)
    out = write_results(data, ROOT / "bench" / "results")
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


def full_size(sample: Path) -> dict:
    """Cache build and reload times for a 110,000-file tree of hard links to the sample's images."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tiny-imagenet-full-size"
        make_full_size_tree(sample, tree)
        cache = Path(tmp) / "cache"
        start = time.perf_counter()
        load_dataset(str(tree), cache_dir=cache, progress=False)
        build = time.perf_counter() - start
        reloads = []
        for _ in range(3):
            start = time.perf_counter()
            train, val = load_dataset(str(tree), cache_dir=cache, progress=False)
            reloads.append(time.perf_counter() - start)
            del train, val
        return {"full_size_files": 110_000, "full_size_cache_build_s": round(build, 2),
                "full_size_cache_reload_s_median": round(sorted(reloads)[1], 3), "full_size_cache_reload_s": [round(r, 3) for r in reloads]}


def make_full_size_tree(sample: Path, tree: Path, classes: int = 200, per_class: int = 500, val: int = 10_000) -> None:
    """Tiny ImageNet's layout at full size, from hard links (copies across file systems)."""
    link = os.link if os.stat(sample).st_dev == os.stat(tree.parent).st_dev else shutil.copyfile
    wnids = [f"n9{i:07d}" for i in range(classes)]
    source = (sample / "wnids.txt").read_text().split()
    (tree / "val" / "images").mkdir(parents=True)
    (tree / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (tree / "words.txt").write_text("".join(f"{w}\tclass {i}\n" for i, w in enumerate(wnids)))
    for i, wnid in enumerate(wnids):
        src = sample / "train" / source[i % len(source)] / "images"
        files = sorted(os.listdir(src))
        (tree / "train" / wnid / "images").mkdir(parents=True)
        for j in range(per_class):
            link(src / files[j % len(files)], tree / "train" / wnid / "images" / f"{wnid}_{j}.JPEG")
    src = sample / "val" / "images"
    files = sorted(os.listdir(src))
    lines = []
    for k in range(val):
        link(src / files[k % len(files)], tree / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnids[k % classes]}\t0\t0\t63\t63\n")
    (tree / "val" / "val_annotations.txt").write_text("".join(lines))


def memory_epoch(train, device: str, augment: Augment | None, mean: torch.Tensor):
    """A function that runs one epoch of BatchLoader and returns images per second."""
    loader = BatchLoader(train.images, train.labels, batch_size=BATCH, seed=0, device=device, augment=augment, mean=mean)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    epochs = iter(range(10**9))

    def epoch() -> tuple[float, float]:
        images = 0
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        for x, _ in loader.batches(next(epochs)):
            images += x.shape[0]
        sync()
        return images / (time.perf_counter() - start), images / (time.process_time() - cpu)

    return epoch


def imagefolder_epoch(data: Path, mean: list[float]):
    """The same for torchvision's reference path: PIL decoding and per-sample transforms in 2 workers."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.RandomHorizontalFlip(),
        transforms.RandomCrop(64, padding=PADDING),
        transforms.ToTensor(),
        transforms.Normalize(mean, [1.0, 1.0, 1.0]),
    ])
    folder = datasets.ImageFolder(str(data / "train"), transform=transform)  # train/<wnid>/images/*.JPEG
    loader = DataLoader(folder, batch_size=BATCH, shuffle=True, num_workers=2, persistent_workers=True)

    def epoch() -> tuple[float, None]:
        images = 0
        start = time.perf_counter()
        for x, _ in loader:
            images += x.shape[0]
        return images / (time.perf_counter() - start), None  # its CPU time is in the workers

    return epoch


def summary(values: list[tuple[float, float | None]]) -> dict:
    rates = sorted(wall for wall, _ in values)
    median = rates[len(rates) // 2]
    cpu = sorted(c for _, c in values if c is not None)
    return {
        "images_per_s_median": round(median),
        "images_per_s_best": round(rates[-1]),
        "batches_per_s_median": round(median / BATCH, 1),
        "images_per_cpu_s_median": round(cpu[len(cpu) // 2]) if cpu else None,  # ImageFolder's CPU time is in its workers
        "rounds": " ".join(str(round(wall)) for wall, _ in values),
    }


def report(data: dict) -> None:
    f = data["figures"]
    print(f"{data['machine']}, torch {data['torch']} on {f['threads']} threads, {f['train_images']} training images, batch {BATCH}, "
          f"load average {f['load_average'][0]:.1f} -> {f['load_average'][1]:.1f}; {f['allocator']}")
    print(f"  cache build (decode {f['train_images']} train + val)  {f['cache_build_s']:8.2f} s")
    print(f"  cache load (second time)                {f['cache_load_s']:8.3f} s")
    if "full_size_cache_reload_s_median" in f:
        print(f"  full size (110,000 files): build        {f['full_size_cache_build_s']:8.2f} s")
        print(f"  full size: reload (median of 3)         {f['full_size_cache_reload_s_median']:8.3f} s")
    print(f"  {'':<30} {'batches/s':>10} {'images/s':>10} {'best':>10} {'per CPU-s':>10}   (medians of rounds)")
    for row in data["rows"]:
        cpu = f"{row['images_per_cpu_s_median']:10d}" if row["images_per_cpu_s_median"] is not None else f"{'-':>10}"
        print(f"  {row['pipeline']:<30} {row['batches_per_s_median']:10.1f} {row['images_per_s_median']:10d} {row['images_per_s_best']:10d} {cpu}")
    print(f"  speed-up over ImageFolder (medians)     {f['speedup_median']:8.1f} x")


if __name__ == "__main__":
    sys.exit(main())
