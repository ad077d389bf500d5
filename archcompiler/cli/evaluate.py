"""`archc eval SPEC --checkpoint PATH`: validation loss, top-1 and top-5 of trained weights.

The checkpoint may be a run directory (its last checkpoint), checkpoints/best, a step
directory, or a bare model.safetensors. Inputs are normalised with the training statistics
saved in the checkpoint, so the numbers match what training reported.
"""
from __future__ import annotations

import argparse
import json
import sys

from archcompiler.cli.train import DATA_HELP
from runtime import argtypes, vocab  # names only: imports no torch


def parser() -> argparse.ArgumentParser:
    p = argtypes.Parser(prog="archc eval", description="Evaluate a checkpoint of a spec on a validation set.")
    p.add_argument("spec", metavar="SPEC", help="spec file (.yaml) the checkpoint was trained from")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="run directory, checkpoints/best|last, a step directory, or a .safetensors file")
    p.add_argument("--data", help=DATA_HELP + " (default: the data the checkpoint was trained on)")
    p.add_argument("--batch-size", type=argtypes.positive, default=256, help="images per forward pass (default 256)")
    p.add_argument("--device", choices=vocab.DEVICES, default="auto", help="default auto: cuda when present")
    p.add_argument("--amp", choices=vocab.AMP, help="mixed precision (default: bf16 on CUDA, off on CPU)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="json prints one object")
    p.add_argument("--cache-dir", help="decoded-dataset cache (default $ARCHC_CACHE_DIR or ~/.cache/archc/data)")
    p.add_argument("--skip-corrupt", action="store_true", help="leave out images that do not decode, and list them")
    p.add_argument("--resize", action="store_true", help="resize images that are not of the model's input size (64x64 for the paper's "
                   "specs) instead of refusing them: scaled to cover it, centre crop")
    return p


def evaluate_checkpoint(compiled, checkpoint_path, *, data: str | None = None, batch_size: int = 256, device: str = "auto",
                        amp: str | None = None, cache_dir=None, skip_corrupt: bool = False, resize: bool = False) -> dict:
    import torch

    from archcompiler.cli.classes import require_classifier
    from archcompiler.cli.common import image_size, load_weights, spec_changed, trained_at
    from archcompiler.cli.train import check_fit
    from runtime.data import load_dataset
    from runtime.train import checkpoint
    from runtime.train.config import TrainConfig
    from runtime.train.data import make_loader
    from runtime.train.evaluate import evaluate
    from runtime.train.setup import device_kind

    require_classifier(compiled, "archc eval scores")
    size = image_size(compiled)
    ckpt = checkpoint.load(checkpoint_path, weights_only=True)
    if ckpt.meta.get("num_classes"):  # a head set to the data's classes when it was trained
        from archcompiler.cli.classes import with_classes

        compiled = with_classes(compiled, ckpt.meta["num_classes"])
    kind = device_kind(device)
    torch_device = torch.device(kind)
    model = compiled.module(seed=None, device=torch_device)
    load_weights(model, ckpt, compiled, torch_device)
    saved_data = ckpt.meta.get("data_stats", {})
    if data is None and saved_data.get("dataset"):  # the run's own data, read as the run read it (as --resume does)
        options = ckpt.meta.get("data_options") if isinstance(ckpt.meta.get("data_options"), dict) else {}
        resize = resize or options.get("resize") is True
        skip_corrupt = skip_corrupt or options.get("skip_corrupt") is True
        cache_dir = cache_dir or (options.get("cache_dir") if isinstance(options.get("cache_dir"), str) else None)
    data = data or saved_data.get("dataset") or "synthetic"
    _, val_set = load_dataset(data, cache_dir=cache_dir, skip_corrupt=skip_corrupt, resize=resize, size=size, progress=True)  # a bar, or lines without a terminal
    if "mean" not in saved_data:  # a bare .safetensors: normalise as the paper does, with this data's mean
        train_set, _ = load_dataset(data, cache_dir=cache_dir, skip_corrupt=skip_corrupt, resize=resize, size=size, progress=False)
        saved_data = {"mean": train_set.channel_mean().tolist(), "std": None}
    trained_on = ckpt.meta.get("classes")
    if isinstance(trained_on, list) and trained_on and list(val_set.classes) != trained_on:
        from runtime.errors import RuntimeUserError

        def some(names: list) -> str:
            return ", ".join(map(str, names[:4])) + (", ..." if len(names) > 4 else "")

        same = "the same classes in another order" if sorted(map(str, trained_on)) == sorted(map(str, val_set.classes)) else f"{len(val_set.classes)} ({some(list(val_set.classes))})"
        raise RuntimeUserError(f"{ckpt.path} was trained on {len(trained_on)} classes ({some(trained_on)}), and {data} has {same}: "
                               "its labels would not mean the model's outputs; evaluate on the data it was trained on")
    check_fit(compiled, val_set, data)
    std = None if saved_data.get("std") is None else torch.tensor(saved_data["std"])
    loader = make_loader(val_set, batch_size=batch_size, train=False, config=TrainConfig(), device=torch_device,
                         mean=torch.tensor(saved_data["mean"]), std=std)
    result = evaluate(model, loader, amp or vocab.default_amp(kind), device=torch_device)
    elsewhere = trained_at(ckpt.meta, compiled)
    warning = f"{elsewhere}: these figures are at the spec's size, not the training size" if elsewhere else None
    if spec_changed(ckpt.meta, compiled, ckpt.path):
        warning = "; ".join(filter(None, [warning, "the spec has changed since this checkpoint was trained (the weights still fit it)"]))
    return {"checkpoint": str(ckpt.path), "data": data, "val_loss": result["loss"], "top1": result["top1"], "top5": result["top5"],
            "images": result["images"], "step": ckpt.meta.get("step"), "epochs_completed": ckpt.meta.get("epochs_completed"), "warning": warning}


def check_args(args) -> None:
    from runtime.data.load import parse_spec
    from runtime.paths import cache_dir

    if args.data is not None:
        parse_spec(args.data)
    cache_dir(args.cache_dir, args.data)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    from archcompiler.cli.common import compile_or_report

    compiled = compile_or_report(args.spec)
    if compiled is None:
        return 1
    try:
        result = evaluate_checkpoint(compiled, args.checkpoint, data=args.data, batch_size=args.batch_size, device=args.device,
                                     amp=args.amp, cache_dir=args.cache_dir, skip_corrupt=args.skip_corrupt, resize=args.resize)
    except Exception as e:
        where = compiled.explain(e)
        if where is None:
            raise
        from runtime.errors import RuntimeUserError

        raise RuntimeUserError(f"the model failed while evaluating: {where}") from e
    if result["warning"]:
        print(f"archc: warning: {result['warning']}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(result))
    else:
        print(f"{compiled.name} at {result['checkpoint']} on {result['data']} ({result['images']:,} validation image{'' if result['images'] == 1 else 's'}):")
        print(f"  val loss {result['val_loss']:.4f}   top-1 {100 * result['top1']:.2f}%   top-5 {100 * result['top5']:.2f}%")
    return 0
