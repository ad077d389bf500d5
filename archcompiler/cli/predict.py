"""`archc predict SPEC --checkpoint PATH IMAGE...`: classify images with trained weights.

Images are files or folders (every JPEG or PNG under them, sorted). Each is preprocessed as
the run's validation images were: decoded to RGB (grayscale repeated), an image of the model's
input size (64x64 for the paper's specs) as is and any other size scaled to cover it and
centre-cropped (as `--resize` does in train and `archc data prepare`), then normalised with the training mean (and std) saved in the checkpoint.
Class ids and names come from the checkpoint (names from the dataset's words.txt).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from runtime import argtypes, vocab  # names only: imports no torch

SUFFIXES = (".jpeg", ".jpg", ".png")


def parser() -> argparse.ArgumentParser:
    p = argtypes.Parser(prog="archc predict", description="Classify images with a trained checkpoint of a spec.")
    p.add_argument("spec", metavar="SPEC", help="spec file (.yaml) the checkpoint was trained from")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG) or folders of them")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="run directory, checkpoints/best|last, or a step directory")
    p.add_argument("--top-k", type=argtypes.positive, default=5, metavar="K", help="classes to list per image (default 5)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="json prints one object per image, one per line")
    p.add_argument("--device", choices=vocab.DEVICES, default="auto", help="default auto: cuda when present")
    p.add_argument("--batch-size", type=argtypes.positive, default=256, help="images per forward pass (default 256)")
    p.add_argument("--skip-corrupt", action="store_true", help="report images that do not decode and classify the others")
    return p


def image_files(paths: list[str]) -> list[Path]:
    from runtime.errors import DataError

    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            if not found:
                raise DataError(f"{path}: no .jpeg, .jpg or .png files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise DataError(f"{path}: not an image file or a folder (a device, pipe or socket)")
        else:
            raise DataError(f"{path}: no such file or folder")
    return files


def predict(compiled, checkpoint_path, images: list[str], *, top_k: int = 5, device: str = "auto", batch_size: int = 256,
            skip_corrupt: bool = False) -> list[dict]:
    import torch

    from archcompiler.cli.classes import require_classifier, with_classes
    from archcompiler.cli.common import image_size, load_weights, spec_changed, trained_at
    from runtime.data.decode import decode_one
    from runtime.errors import CheckpointError, DataError, RuntimeUsageError
    from runtime.train import checkpoint

    if top_k < 1 or batch_size < 1:
        raise RuntimeUsageError("--top-k and --batch-size must be at least 1")
    require_classifier(compiled, "archc predict runs")
    files = image_files(images)  # a missing image is said before any weights are read
    size = image_size(compiled)
    ckpt = checkpoint.load(checkpoint_path, weights_only=True)
    meta = ckpt.meta
    stats = meta.get("data_stats") or {}
    if "mean" not in stats:
        raise CheckpointError(f"{ckpt.path} has no preprocessing statistics (a bare weights file?); give a checkpoint archc train wrote")
    classes = meta.get("classes") or []
    if meta.get("num_classes"):
        compiled = with_classes(compiled, meta["num_classes"])
    kind = vocab.device_kind(device)
    torch_device = torch.device(kind)
    model = compiled.module(seed=None, device=torch_device)
    load_weights(model, ckpt, compiled, torch_device)
    step = f" (step {meta['step']})" if isinstance(meta.get("step"), int) else ""
    print(f"archc predict: weights of {ckpt.path}{step}", file=sys.stderr)  # a run directory means its last checkpoint, not its best
    elsewhere = trained_at(meta, compiled)
    if elsewhere:
        print(f"archc: warning: {elsewhere}", file=sys.stderr)
    if spec_changed(meta, compiled, ckpt.path):  # as eval says it
        print("archc: warning: the spec has changed since this checkpoint was trained (the weights still fit it)", file=sys.stderr)
    model.eval()
    names = meta.get("class_names") or classes
    mean = torch.tensor(stats["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(stats["std"] if stats.get("std") is not None else [1.0, 1.0, 1.0]).view(1, 3, 1, 1)

    results = []
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        pixels, resized, read, entries = [], [], [], {}
        for f in chunk:
            try:
                with warnings.catch_warnings():  # torchvision's notice that its decoders will move to torchcodec
                    warnings.filterwarnings("ignore", category=DeprecationWarning)
                    image, _, was_resized = decode_one(f, resize=True, size=size)
            except DataError as e:
                if not skip_corrupt:
                    raise DataError(f"{f}: {e}; pass --skip-corrupt to classify the others") from None
                entries[f] = {"image": str(f), "error": str(e)}
                continue
            pixels.append(image)
            resized.append(was_resized)
            read.append(f)
        if pixels:
            x = (torch.stack(pixels).float() / 255 - mean) / std  # (B, 3, H, W), as the loader normalises
            with torch.no_grad(), vocab.autocast(kind, vocab.default_amp(kind)):
                probs = model(x.to(torch_device)).float().softmax(dim=1).cpu()  # (B, classes)
            top = probs.topk(min(top_k, probs.shape[1]), dim=1)
            for f, was_resized, p, i in zip(read, resized, top.values.tolist(), top.indices.tolist()):
                entries[f] = {"image": str(f), "resized": bool(was_resized), "top": [
                    {"class": classes[k] if k < len(classes) else str(k), "name": names[k] if k < len(names) else str(k),
                     "index": k, "probability": prob} for k, prob in zip(i, p)]}
        results += [entries[f] for f in chunk]  # in the order given, a skipped image where it was
    return results


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from archcompiler.cli.common import compile_or_report

    compiled = compile_or_report(args.spec)
    if compiled is None:
        return 1
    from archcompiler.cli.common import image_size
    from runtime.data.decode import size_text

    results = predict(compiled, args.checkpoint, args.images, top_k=args.top_k, device=args.device, batch_size=args.batch_size,
                      skip_corrupt=args.skip_corrupt)
    skipped = sum("error" in r for r in results)
    for r in results:
        if args.format == "json":
            print(json.dumps(r))
            continue
        if "error" in r:
            print(f"{r['image']}  (skipped: {r['error']})")
            continue
        print(r["image"] + (f"  (resized to {size_text(image_size(compiled))})" if r["resized"] else ""))
        for t in r["top"]:
            label = t["class"] if t["name"] == t["class"] else f"{t['class']} {t['name']}"
            print(f"  {100 * t['probability']:6.2f}%  {label}")
    classified = len(results) - skipped
    if args.format == "text" and len(results) > 1:
        print(f"{classified} image{'s' * (classified != 1)} classified" + (f", {skipped} skipped" if skipped else ""), file=sys.stderr)
    if not classified:  # --skip-corrupt, and nothing could be read: not a success
        from runtime.errors import DataError

        raise DataError(f"none of the {len(results)} images could be read (listed above)")
    return 0
