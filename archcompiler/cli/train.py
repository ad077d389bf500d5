"""`archc train SPEC`: compile a spec and train it with runtime.train (the paper's recipe by default).

This module is the glue between the compiler and the runtime: it turns the spec's `train:`
section and the flags into a TrainConfig, loads the data, hands runtime.train.fit a factory of
nn.Modules, and maps an error raised inside the generated model back to the spec's line.
Under torchrun (`--nproc N`, or torchrun itself) every rank runs this same code; only rank 0
prints and writes.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

# Flags that may differ from the run's saved config when resuming: they change where and how
# fast the run goes, not which numbers it computes.
RESUMABLE = ("epochs", "max_steps", "device", "compile", "amp", "progress", "checkpoint_every", "channels_last", "eval_batch_size")
DATA_HELP = "synthetic (default), synthetic:SEED, synthetic:train=N,val=N, tiny-imagenet:DIR, or a dataset folder"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="archc train", description="Train a spec. Defaults come from the spec's train: section "
                                "(the paper's recipe for the paper specs); a flag given here overrides it.")
    p.add_argument("spec", metavar="SPEC", help="spec file (.yaml)")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--recipe", choices=("paper", "modern"), help="use this recipe instead of the spec's (see docs/training.md)")
    p.add_argument("--epochs", type=int, help="passes over the training set")
    p.add_argument("--batch-size", type=_batch_size, metavar="N|auto",
                   help="images per step, over all processes; auto: the largest whose predicted peak fits free memory (docs/memory.md)")
    p.add_argument("--lr", type=float, help="initial (peak) learning rate")
    p.add_argument("--seed", type=int, help="seed of weights, order, dropout and augmentation (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto: cuda when present")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model (default: on for CUDA)")
    p.add_argument("--amp", choices=("bf16", "off"), help="mixed precision (default: bf16 on CUDA, off on CPU)")
    p.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory layout (faster convs on GPUs)")
    p.add_argument("--out", help="run directory (default runs/<model name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all (quick runs)")
    p.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps (default: at epoch ends)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no live bar; one line per epoch")
    p.add_argument("--nproc", type=int, help="train on N processes with DDP on this machine (runs torchrun for you)")
    p.add_argument("--cache-dir", help="decoded-dataset cache (default $ARCHC_CACHE_DIR or ~/.cache/archc/data)")
    p.add_argument("--skip-corrupt", action="store_true", help="leave out images that do not decode, and list them")
    return p


def _batch_size(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got '{text}'") from None


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.nproc is not None:
        return _relaunch(args, argv)
    from archcompiler.cli.common import compile_or_report

    compiled = compile_or_report(args.spec)
    if compiled is None:
        return 1
    run_dir = Path(args.out or Path("runs") / compiled.name)
    auto = args.batch_size == "auto"
    if auto:
        from runtime.errors import RuntimeUsageError

        if args.resume:
            raise RuntimeUsageError("--batch-size auto: a resumed run keeps the batch size it started with; leave it out")
        args.batch_size = None
    config = build_config(compiled, args, run_dir)
    return train(compiled, config, run_dir, args, auto)


def build_config(compiled, args, run_dir: Path):
    from runtime.errors import RuntimeUsageError
    from runtime.train.config import TrainConfig, resolve

    flags = {"data": args.data, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "device": args.device, "compile": args.compile, "amp": args.amp, "channels_last": args.channels_last,
             "max_steps": args.max_steps, "checkpoint_every": args.checkpoint_every, "progress": args.progress}
    flags = {k: v for k, v in flags.items() if v is not None}
    notes = {"spec": str(args.spec), "spec_sha256": compiled.spec_hash}
    if not args.resume:
        return resolve(compiled.train, {**flags, "notes": notes}, recipe=args.recipe)
    # Resuming: the run's own config is the base, so the run goes on exactly as it started.
    saved_path = run_dir / "config.json"
    try:
        saved = TrainConfig.from_dict(json.loads(saved_path.read_text()))
    except (OSError, ValueError) as e:
        raise RuntimeUsageError(f"--resume: cannot read {saved_path} ({e}); is {run_dir} a run directory?") from None
    copy = run_dir / "spec.yaml"
    if copy.exists() and copy.read_text() != compiled.spec_text:
        raise RuntimeUsageError(f"--resume: {args.spec} differs from the spec this run started with; resume with {copy} instead")
    changed = [k for k, v in flags.items() if k not in RESUMABLE and v != getattr(saved, k)]
    if args.recipe is not None and args.recipe != saved.recipe:
        changed.append("recipe")
    if changed:
        names = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise RuntimeUsageError(f"--resume: {names} cannot change in the middle of a run (it would no longer be the same run); "
                                "start a new run with another --out instead")
    values = saved.to_dict()
    values.update({k: v for k, v in flags.items() if k in RESUMABLE})
    return TrainConfig.from_dict(values)


def train(compiled, config, run_dir: Path, args, auto: bool = False) -> int:
    from archcompiler import __version__
    from runtime.errors import RuntimeUserError
    from runtime.train import distributed
    from runtime.train.loop import Interrupted, fit
    from runtime.train.setup import device_kind

    kind = device_kind(config.device)
    world = distributed.init(kind)
    try:
        if args.resume and world.main:
            from runtime.train import checkpoint

            checkpoint.load(run_dir)  # a corrupt checkpoint should fail now, not after minutes of decoding
        train_set, val_set = _load_data(config.data, args, world)
        check_fit(compiled, train_set, args.data or config.data)
        if auto:
            config = _auto_batch(compiled, config, kind, world, train_set.images.shape[0])
        compile_model = config.compile if config.compile is not None else kind == "cuda"

        def factory(device):
            return compiled.module(seed=config.seed, compile=compile_model, channels_last=config.channels_last, device=device)

        meta = {"model": compiled.name, "spec": str(args.spec), "spec_sha256": compiled.spec_hash, "flops": compiled.totals["flops"],
                "input_shape": list(compiled.input_shape), "classes": train_set.classes, "versions": {"archc": __version__}}
        try:
            summary = fit(factory, train_set, val_set, config, run_dir, resume=args.resume, extra_meta=meta,
                          extra_files={"spec.yaml": compiled.spec_text}, world=world)
        except Interrupted as e:
            hint = f"archc train {args.spec} --out {run_dir} --resume"
            raise Interrupted(f"{e}\nto continue: {hint}", e.step, e.checkpoint_path) from None
        except (RuntimeUserError, KeyboardInterrupt):
            raise
        except Exception as e:
            where = compiled.explain(e)
            if where is None:
                raise
            raise RuntimeUserError(f"the model failed while training: {where}") from e
        if world.main:
            _report(compiled, summary, run_dir)
    finally:
        distributed.shutdown(world)
    return 0


def _auto_batch(compiled, config, kind: str, world, images: int):
    """The config with the largest batch predicted to fit (at most the training set)."""
    import dataclasses

    import torch

    from archcompiler.cli.autobatch import auto_batch
    from runtime.errors import RuntimeUsageError

    if world.size > 1:
        raise RuntimeUsageError("--batch-size auto works on one process; give a batch size with --nproc or torchrun")
    amp = config.amp or ("bf16" if kind == "cuda" else "off")
    batch = auto_batch(compiled, "train", config.optimizer, amp, torch.device(kind), cap=images)
    return dataclasses.replace(config, batch_size=batch)


def check_fit(compiled, dataset, data: str) -> None:
    """The data must fit the model's input and output before any step is taken."""
    from runtime.errors import RuntimeUsageError

    shape = tuple(dataset.images.shape[1:])
    if tuple(compiled.input_shape) != shape:
        raise RuntimeUsageError(f"{data} has images of shape {list(shape)} but {compiled.name} takes input {list(compiled.input_shape)}")
    classes, outputs = len(dataset.classes), compiled.output_shape[0]
    if classes > outputs:
        raise RuntimeUsageError(f"{data} has {classes} classes but {compiled.name} has {outputs} outputs; "
                                f"set the last affine's `out` to {classes} or more")


def _load_data(data: str, args, world):
    from runtime.data import load_dataset
    from runtime.train import distributed

    # The first process of each node decodes (and caches) first; the others then read that
    # node's cache instead of racing to write it.
    def load():
        return load_dataset(data, cache_dir=args.cache_dir, skip_corrupt=args.skip_corrupt, progress=world.main and sys.stderr.isatty())

    if world.local_rank == 0:
        result = load()
        distributed.barrier(world)
        return result
    distributed.barrier(world)
    return load()


def _report(compiled, summary: dict, run_dir: Path) -> None:
    print()
    print(compiled.table())
    print()
    best = summary["best_val_acc"]
    status = {"complete": "finished", "max_steps": "stopped at --max-steps"}.get(summary["status"], summary["status"])
    print(f"{compiled.name}: {status} after {summary['steps']} steps ({summary['epochs_completed']} full epoch{'' if summary['epochs_completed'] == 1 else 's'}) "
          f"in {summary['wall_time_s']:.1f}s on {summary['device']}" + (f" x{summary['world_size']}" if summary['world_size'] > 1 else ""))
    if best is not None:
        print(f"  final val acc {summary['final_val_acc']:.4f}  loss {summary['final_val_loss']:.4f}   "
              f"best val acc {best:.4f} (epoch {summary['best_epoch']})")
    if summary.get("ranks_in_sync") is not None:
        print(f"  ranks in sync: {summary['ranks_in_sync']}")
    print(f"  curves: {run_dir / 'curves.png'}")
    print(f"  run:    {run_dir}  (metrics.csv, summary.json, checkpoints/best)")


def _relaunch(args, argv: list[str]) -> int:
    """`--nproc N`: run this same command under torchrun on N local processes."""
    from runtime.errors import RuntimeUsageError

    if args.nproc < 1:
        raise RuntimeUsageError("--nproc must be at least 1")
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    if "WORLD_SIZE" in os.environ:  # already under torchrun: --nproc means nothing more
        return main(rest)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}", "-m", "archcompiler", "train", *rest]
    print("archc: running " + " ".join(command[1:]), file=sys.stderr)
    # Ctrl-C reaches torchrun and the workers from the terminal; the workers save a checkpoint
    # and torchrun reports, so this process only waits for them.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.call(command)
    finally:
        signal.signal(signal.SIGINT, previous)
