"""`archc train SPEC`: compile a spec and train it with runtime.train (the paper's recipe by default).

This module is the glue between the compiler and the runtime: it turns the spec's `train:`
section and the flags into a TrainConfig, loads the data, hands runtime.train.fit a factory of
nn.Modules, and maps an error raised inside the generated model back to the spec's line.
Under torchrun (`--nproc N`, or torchrun itself) every rank runs this same code; only rank 0
prints and writes.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from archcompiler.cli.common import image_size
from archcompiler.errors import UsageError
from runtime import argtypes, vocab  # names only: imports no torch
from runtime.files import to_nothing

# Flags that may differ from the run's saved config when resuming: they change where and how
# fast the run goes, not which numbers it computes.
RESUMABLE = ("epochs", "max_steps", "device", "compile", "compile_mode", "amp", "progress", "log_every", "checkpoint_every", "channels_last",
             "eval_batch_size")
# torchrun's and torch.distributed's own logging lines ("W1130 18:02:11.123000 4242 torch/...") and
# its banner about OMP_NUM_THREADS ("*****" framed).
EXITCODE = re.compile(r"exitcode\s*:\s*(-?\d+)")  # torchrun's report of how a process ended
TORCHRUN_LOG = re.compile(r"^([WEI]\d{4} \d\d:\d\d:\d\d|\*{5,}|Setting OMP_NUM_THREADS)")
DATA_HELP = "synthetic (default), synthetic:SEED, synthetic:train=N,val=N, tiny-imagenet:DIR, or a dataset folder"


def parser() -> argparse.ArgumentParser:
    p = argtypes.Parser(prog="archc train", description="Train a spec. Defaults come from the spec's train: section "
                                "(the paper's recipe for the paper specs); a flag given here overrides it.")
    p.add_argument("spec", metavar="SPEC", help="spec file (.yaml)")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--recipe", choices=("paper", "modern"), help="use this recipe instead of the spec's (see docs/training.md)")
    p.add_argument("--epochs", type=argtypes.positive, help="passes over the training set")
    p.add_argument("--eval-batch-size", type=argtypes.positive, metavar="N",
                   help="validation's batch (default 256, lowered to what the free memory holds: validation needs no gradients)")
    p.add_argument("--batch-size", type=_batch_size, metavar="N|auto",
                   help="images per step, over all processes; auto: the largest whose predicted peak fits free memory (docs/memory.md)")
    p.add_argument("--lr", type=argtypes.positive_float, help="initial (peak) learning rate")
    p.add_argument("--seed", type=argtypes.seed, help=f"seed of weights, order, dropout and augmentation, 0 to {argtypes.SEED_MAX} (default 0)")
    p.add_argument("--seeds", metavar="K,K,...", help="train once per seed, one after another, into OUT/seed-K (for archc compare's groups)")
    p.add_argument("--num-classes", type=argtypes.positive, metavar="N", help="outputs of the model's head (default: the spec's train: num_classes, else the data's)")
    p.add_argument("--init-from", metavar="CHECKPOINT", help="start from these weights where names and shapes match (fine-tuning); reports what was skipped")
    p.add_argument("--device", choices=vocab.DEVICES, help="default auto: cuda when present")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model (default: on for CUDA)")
    p.add_argument("--compile-mode", choices=vocab.COMPILE_MODES,
                   help="torch.compile's mode (default: default); reduce-overhead replays each step as a CUDA graph, against launch overhead at small batches")
    p.add_argument("--amp", choices=vocab.AMP, help="mixed precision (default: bf16 on CUDA, off on CPU)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout (default: on; it trained faster on this project's CPU, docs/benchmarks.md, and is what tensor cores read)")
    p.add_argument("--out", help="run directory (default runs/<model name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--max-steps", type=argtypes.positive, help="stop after this many steps in all (quick runs)")
    p.add_argument("--checkpoint-every", type=argtypes.non_negative, help="also checkpoint every N steps (default: at epoch ends)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no live bar; plain lines instead")
    p.add_argument("--log-every", metavar="N|Ns", help="without a live bar, a step line every N steps or N seconds (default 30s; 0: none)")
    p.add_argument("--nproc", type=argtypes.positive, help="train on N processes with DDP on this machine (runs torchrun for you)")
    p.add_argument("--cache-dir", help="decoded-dataset cache (default $ARCHC_CACHE_DIR or ~/.cache/archc/data)")
    p.add_argument("--skip-corrupt", action="store_true", help="leave out images that do not decode, and list them")
    p.add_argument("--resize", action="store_true", help="resize images that are not of the model's input size (64x64 for the paper's "
                   "specs) instead of refusing them: scaled to cover it, centre crop")
    return p


def check_args(args) -> None:
    """What can be checked before compiling: --out (also once the default is known) and --data."""
    from runtime.data.load import parse_spec
    from runtime.paths import cache_dir, output_dir

    if args.out is not None:
        output_dir(args.out, "--out", may_create=not args.resume)
    if args.data is not None:
        parse_spec(args.data)
    cache_dir(args.cache_dir, args.data)  # the cache is written after minutes of decoding: check first
    if not args.resume and args.cache_dir is None and os.environ.get("ARCHC_CACHE_DIR") and not (args.data or "synthetic").startswith("synthetic"):
        args.cache_dir = os.environ["ARCHC_CACHE_DIR"]  # recorded as if given, so a resume without the variable reads the same cache


def _batch_size(text: str):
    if text == "auto":
        return text
    try:
        return argtypes.positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1 or 'auto', got '{text}'") from None


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    if args.nproc is not None:
        return _relaunch(args, argv)
    try:
        return _train_main(args)
    except Exception as e:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not _peer_gone(e):
            raise
        from runtime.errors import RuntimeUserError

        # One process stopped (its own message says why); the others then fail in a collective.
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise RuntimeUserError(f"process {os.environ.get('RANK', '?')} stopped: another process stopped first ({first})") from None


def _peer_gone(e: Exception) -> bool:
    """A collective failed because another process exited (gloo or NCCL says so in its own words)."""
    return any(m in str(e) for m in ("Connection closed by peer", "Connection reset by peer", "NCCL communicator was aborted"))


def _train_main(args) -> int:
    from archcompiler.cli.common import compile_or_report
    from runtime.paths import output_dir

    compiled = compile_or_report(args.spec)
    if compiled is None:
        return 1
    run_dir = Path(args.out or Path("runs") / compiled.name)
    if args.init_from and args.resume:
        raise UsageError("--init-from starts a new run; --resume continues one from its own checkpoint. Give one of them")
    if args.seeds is not None and args.seed is not None:
        raise UsageError("give --seed or --seeds, not both")
    auto = args.batch_size == "auto"
    if auto:
        if args.resume:
            raise UsageError("--batch-size auto: a resumed run keeps the batch size it started with; leave it out")
        args.batch_size = None
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    output_dir(run_dir, "--out", may_create=not args.resume)
    if args.resume and seeds is not None and (run_dir / "config.json").exists():
        raise UsageError(f"--resume --seeds: {run_dir} is one run, not a group of seeds (OUT/seed-K); resume it without --seeds")
    if args.resume and seeds is None and not (run_dir / "config.json").exists() and any(run_dir.glob("seed-*/config.json")):
        found = ",".join(sorted((p.name[5:] for p in run_dir.glob("seed-*") if p.name[5:].isdigit()), key=int))
        raise UsageError(f"--resume: {run_dir} holds a group of seeds; resume them with --seeds {found}")
    if not args.resume:  # before any data is decoded (a minute and a cache file on the full set)
        from runtime.train.resume import check_new_run_dir

        for folder in [run_dir] if seeds is None else [run_dir / f"seed-{k}" for k in seeds]:
            check_new_run_dir(folder)
    if seeds is None:
        return train_one(compiled, args, run_dir, auto)
    failed = []
    for k in seeds:
        one = copy.copy(args)  # a seed's data options (restored on resume) stay its own
        one.seed = k
        seed_dir = run_dir / f"seed-{k}"
        status = _status(seed_dir)
        if args.resume and not (seed_dir / "config.json").exists():
            one.resume = False  # --seeds 0,1,2 --resume after 0 and 1: seed 2 starts here, as its siblings did
            _as_siblings(one, sorted(run_dir.glob("seed-*")))
        elif args.resume and status == "complete" and args.epochs is None and args.max_steps is None:
            print(f"archc train: seed {k} in {seed_dir} is complete; nothing to resume (--epochs N trains it further)", flush=True)
            continue
        elif args.resume and status == "diverged":
            print(f"archc train: seed {k} in {seed_dir} diverged; left as it is (train it again into another --out)", file=sys.stderr, flush=True)
            failed.append(k)
            continue
        print(f"archc train: seed {k} of {','.join(map(str, seeds))} into {seed_dir}", flush=True)
        train_one(compiled, one, seed_dir, auto)
    print(f"compare them: archc compare {run_dir}")
    if failed:
        from runtime.errors import RuntimeUserError

        raise RuntimeUserError(f"seeds {', '.join(map(str, failed))} could not be resumed (said above); the others are done")
    return 0


# A new seed of a resumed group takes these from a sibling's config.json unless given again (as
# requested there, where config.json records that: compile and amp): the group compares seeds,
# not recipes or datasets. Each is the name of both the config key and the argument.
SIBLING_SETTINGS = ("data", "epochs", "batch_size", "lr", "max_steps", "num_classes", "checkpoint_every", "compile", "compile_mode", "amp",
                    "channels_last")


def _as_siblings(args, siblings: list[Path]) -> None:
    """Settings and data options of the first sibling seed that has a config.json."""
    import json

    from archcompiler.cli.resume import restore_data_options

    for sibling in siblings:
        try:
            saved = json.loads((sibling / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(saved, dict):
            continue
        requested = saved.get("requested") if isinstance(saved.get("requested"), dict) else {}
        for key in SIBLING_SETTINGS:
            value = requested.get(key, saved.get(key))
            if getattr(args, key) is None and value is not None:
                setattr(args, key, value)
        restore_data_options(args, saved.get("data_options"))
        return


def _summary(run_dir: Path) -> dict:
    """The run's summary.json, or {} where there is none (or it is not an object)."""
    import json

    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _status(run_dir: Path) -> str | None:
    return _summary(run_dir).get("status")


def train_one(compiled, args, run_dir: Path, auto: bool = False) -> int:
    from archcompiler.cli.resume import data_options_note

    config = build_config(compiled, args, run_dir)
    done = _summary(run_dir).get("epochs_completed") if args.resume else None
    if args.resume and _status(run_dir) == "complete" and isinstance(done, int) and config.epochs <= done:
        # a job script that always passes --resume: a finished run is left exactly as it is
        print(f"archc train: {run_dir} is complete ({config.epochs} of {config.epochs} epochs); nothing to train "
              "(--epochs N trains it further)", flush=True)
        return 0
    note = data_options_note(args, config, run_dir) if args.resume else None
    if getattr(args, "resume_note", None):
        note = "\n".join(filter(None, [args.resume_note, note]))
    return train(compiled, config, run_dir, args, note, auto)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",")]  # an empty item ("0,,1") is a typo, not a list of two
    except ValueError:
        raise UsageError(f"--seeds takes comma-separated integers, e.g. 0,1,2; got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) > argtypes.SEED_MAX:
        raise UsageError(f"--seeds takes distinct integers from 0 to {argtypes.SEED_MAX}, e.g. 0,1,2; got '{text}'")
    return seeds


def build_config(compiled, args, run_dir: Path):
    from runtime.errors import RuntimeUsageError
    from runtime.train.config import TrainConfig, resolve

    flags = {"data": args.data, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "device": args.device, "compile": args.compile, "compile_mode": args.compile_mode, "amp": args.amp, "channels_last": args.channels_last,
             "max_steps": args.max_steps, "eval_batch_size": args.eval_batch_size, "checkpoint_every": args.checkpoint_every, "progress": args.progress, "log_every": args.log_every,
             "num_classes": args.num_classes}
    flags = {k: v for k, v in flags.items() if v is not None}
    notes = {"spec": str(args.spec), "spec_sha256": compiled.spec_hash, "spec_data_sha256": compiled.spec_data_hash}
    if not args.resume:
        if "data" in flags:  # a folder by its absolute path: the run's config names it from anywhere (eval, --resume)
            from runtime.data.load import absolute_spec

            flags["data"] = absolute_spec(flags["data"])
        return resolve(compiled.train, {**flags, "notes": notes}, recipe=args.recipe)
    # Resuming: the run's own config is the base, so the run goes on exactly as it started.
    from runtime.errors import RuntimeUserError
    from runtime.train.rundir import read_json_object

    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        raise RuntimeUserError(f"--resume: {run_dir} has no config.json; is it a run directory of archc train?")
    try:
        data = read_json_object(saved_path, "the config archc train writes")
        saved = TrainConfig.from_dict({**data, **(data.get("requested") or {})})  # as asked for, not as resolved on that machine
    except (TypeError, ValueError, RuntimeUsageError) as e:  # a field of the wrong type, or out of range
        raise RuntimeUserError(f"--resume: {saved_path} is not a config archc wrote ({e})") from None
    copy = run_dir / "spec.yaml"
    trained = compiled.spec_text
    if saved.num_classes is not None:  # the run's spec.yaml holds its head as trained
        from archcompiler.cli.classes import head, with_classes

        trained = with_classes(compiled, saved.num_classes).spec_text if head(compiled)[1] is not None else trained
    started = copy.read_text(errors="replace") if copy.exists() else None
    if started is not None and started != trained:
        from archcompiler.api import spec_data_hash

        said = spec_data_hash(started)
        if said is None or said != spec_data_hash(trained):
            raise RuntimeUsageError(f"--resume: {args.spec} differs from the spec this run started with; resume with {copy} instead")
        args.spec_reworded = True  # comments or layout only: the same model, and the checkpoints' spec hash is the old text's
    _resumed_data(flags, saved, args)
    changed = [k for k, v in flags.items() if k not in RESUMABLE and v != getattr(saved, k)]
    if args.recipe is not None and args.recipe != saved.recipe:
        changed.append("recipe")
    if changed:
        names = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise RuntimeUsageError(f"--resume: {names} cannot change in the middle of a run (it would no longer be the same run); "
                                "start a new run with another --out instead")
    values = saved.to_dict()
    values.update({k: v for k, v in flags.items() if k in RESUMABLE})
    if "max_steps" not in flags and saved.max_steps is not None and (_steps_run(run_dir) or 0) >= saved.max_steps:
        # A run that stopped because it reached its --max-steps, resumed without one, goes on to its
        # last epoch; one stopped before it (Ctrl-C, a kill) keeps it, so it ends where it would have.
        values["max_steps"] = None
        args.resume_note = (f"archc: {run_dir} stopped at its --max-steps {saved.max_steps}; going on to the end of epoch {values['epochs']} "
                            "(give --max-steps to stop sooner)")  # said once the checkpoint is known to be sound
    config = TrainConfig.from_dict(values)
    if getattr(args, "data_moved", None):  # config.json records where the data is now
        config = dataclasses.replace(config, data=args.data_moved[1])
        moved = f"archc: the run's data {saved.data} is not there any more; reading {args.data_moved[1]}, checked against the run's"
        args.resume_note = "\n".join(filter(None, [getattr(args, "resume_note", None), moved]))
    spe, step = data.get("steps_per_epoch"), _steps_run(run_dir)
    if config.epochs != saved.epochs and isinstance(spe, int) and spe >= 1 and step is not None:
        if step > config.epochs * spe:
            raise RuntimeUsageError(f"--resume --epochs {config.epochs}: the run has trained {step} steps, past the end of epoch "
                                    f"{config.epochs} (step {config.epochs * spe}); give --epochs {-(-step // spe)} or more")
        change = _schedule_change(saved, config, spe, step)
        args.resume_note = "\n".join(filter(None, [getattr(args, "resume_note", None), change]))
    return config


def _resumed_data(flags: dict, saved, args) -> None:
    """The data of a resumed run: the same folder written another way (relative, through a
    link) is the same data; a folder that has moved may be given where it is now, and the
    checkpoint's counts and channel mean then check that it is the same set."""
    from runtime.data.load import absolute_spec, parse_spec, same_folder
    from runtime.errors import RuntimeUserError

    given, stored = flags.get("data"), saved.data
    was = parse_spec(stored)
    gone = was.kind == "directory" and not was.path.exists()
    if given is None:
        if gone:
            raise RuntimeUserError(f"--resume: the run's data {was.path} is not there any more; if it moved, give --data with "
                                   "where it is now (its image counts and channel mean are checked against the run's)")
        return
    if given == stored or same_folder(given, stored):
        flags["data"] = stored
    elif gone and parse_spec(given).kind == "directory":
        flags["data"] = stored  # compared as unchanged; read from where it is now
        args.data_moved = (stored, absolute_spec(given))


def _steps_run(run_dir: Path) -> int | None:
    """The step of the run's last checkpoint (the steps it has trained), or None."""
    from runtime.train import checkpoint

    last = checkpoint.read_link(run_dir, "last")
    return None if last is None else checkpoint.step_of(last)


def _schedule_change(saved, config, steps_per_epoch: int, step: int) -> str | None:
    """A note when new --epochs rewrite a schedule that depends on the run's length (cosine, a
    warm-up capped at a fifth of the run): the `step` steps run followed the old one, so the
    rate jumps where the run resumes and it equals neither an old- nor a new-length run."""
    from runtime.train.schedule import from_config

    old, new = from_config(saved, steps_per_epoch), from_config(config, steps_per_epoch)
    if all(old(k) == new(k) for k in range(step)):
        return None  # what ran is what the new length would have run (a staircase, a constant rate)
    return (f"note: --epochs {config.epochs} rewrites this run's {new.kind} learning-rate schedule, which spans the whole run: its "
            f"{step} steps so far followed the {saved.epochs}-epoch one, so the rate goes from {old(step - 1):.3g} to {new(step):.3g} "
            f"at step {step + 1}, and the run will equal neither a {saved.epochs}- nor a {config.epochs}-epoch run from the start")


def train(compiled, config, run_dir: Path, args, note: str | None = None, auto: bool = False) -> int:
    from archcompiler import __version__
    from runtime.errors import RuntimeUserError
    from runtime.train import distributed
    from runtime.train.loop import Interrupted, fit
    from runtime.train.setup import channels_last_for, device_kind, resolved_compile, safe_layout

    from archcompiler.cli.classes import require_classifier

    require_classifier(compiled)  # before any process starts, what train cannot train is refused at once
    if not compiled.totals["params"]:  # a pool and a flatten: the optimizer would get no tensor at all
        raise RuntimeUserError(f"{compiled.name} has no weights to train (0 parameters); add a layer that has some, such as an affine head")
    size = image_size(compiled)
    kind = device_kind(config.device)
    if kind == "cpu" and not auto:
        _check_step_fits(compiled, config)
    if kind == "cpu" and channels_last_for(config, kind):  # the layout, decided before the model is built (a meta copy)
        config, hazard = safe_layout(compiled.module(seed=None, device="meta"), config, kind)
        if hazard:
            print(f"note: training in NCHW, not the CPU's default channels_last: oneDNN crashes in the backward pass of {hazard} "
                  "in channels_last", file=sys.stderr)
    world = distributed.init(kind)
    # A run that stopped before its first checkpoint has nothing to resume from: --resume starts
    # it again from step 0, with the settings its config.json recorded (read into `config`).
    resume = args.resume and (run_dir / "checkpoints" / "last").is_symlink()
    try:
        if args.resume and not resume and world.main:
            from runtime.train.resume import restart_unstarted

            restart_unstarted(run_dir)
            print(f"archc: {run_dir} stopped before its first checkpoint; starting it again from step 0 with its own settings",
                  file=sys.stderr, flush=True)
        if resume and world.main:
            from runtime.train import checkpoint

            # a corrupt checkpoint, or one of another run, should fail now, not after minutes of decoding
            from archcompiler.cli.resume import check_same_run

            moved = getattr(args, "data_moved", None)  # the checkpoint names the data where it was
            check_same_run(checkpoint.load(run_dir), compiled, dataclasses.replace(config, data=moved[0]) if moved else config,
                           reworded=getattr(args, "spec_reworded", False))
            if note:
                print(note, file=sys.stderr)
        train_set, val_set = _load_data(config.data, args, world, size)
        compiled, config = fit_classes(compiled, config, train_set, args, world)
        check_fit(compiled, train_set, args.data or config.data)
        if auto:
            config = _auto_batch(compiled, config, kind, world, train_set.images.shape[0])
        config = _eval_batch(compiled, config, kind, world)
        if config.batch_size >= len(train_set) and world.main and not resume:  # an epoch is then a single step
            print(f"note: batch size {config.batch_size:,} is {'the whole' if config.batch_size == len(train_set) else 'larger than the'} "
                  f"training set ({len(train_set):,} images): each epoch is one step", file=sys.stderr)
        compile_model = resolved_compile(config, kind)
        if not compile_model and config.compile_mode != "default" and world.main:
            print(f"note: --compile-mode {config.compile_mode} has no effect: the model is not compiled "
                  f"({'--no-compile' if config.compile is False else 'the default on ' + kind}; --compile compiles it)", file=sys.stderr)
        init = {}

        def factory(device):
            model = compiled.module(seed=config.seed, channels_last=channels_last_for(config, kind), device=device)
            if args.init_from:
                init.update(init_from(model, args.init_from, world))
            if compile_model:
                model = vocab.compile_module(model, config.compile_mode, fullgraph=True)
            return model

        meta = {"model": compiled.name, "spec": str(args.spec), "spec_sha256": compiled.spec_hash, "spec_data_sha256": compiled.spec_data_hash,
                "flops": compiled.totals["flops"],
                "input_shape": list(compiled.input_shape), "classes": train_set.classes, "class_names": train_set.names, "num_classes": compiled.output_shape[0],
                "versions": {"archc": __version__},
                "data_options": {"cache_dir": args.cache_dir and os.path.abspath(args.cache_dir), "skip_corrupt": args.skip_corrupt,
                                 "resize": args.resize},
                "init_from": init if args.init_from else None}  # filled in when fit() builds the model, before it writes config.json
        try:
            summary = fit(factory, train_set, val_set, config, run_dir, resume=resume, extra_meta=meta,
                          extra_files={"spec.yaml": compiled.spec_text}, world=world,
                          dashboard_texts={"model/layers": "    " + compiled.table().replace("\n", "\n    ")})
        except Interrupted as e:
            if not world.main:  # rank 0 says where the run stopped and how to go on, once
                raise SystemExit(130) from None
            hint = (f"archc train {args.spec} --out {run_dir.parent} --resume --seeds {args.seeds}" if args.seeds is not None
                    else f"archc train {args.spec} --out {run_dir} --resume")  # a group resumes as a whole
            # with no checkpoint, --resume starts it again with the settings it recorded
            hint = f"to {'start it again' if e.checkpoint_path is None and args.seeds is None else 'continue'}: {hint}"
            raise Interrupted(f"{e}\n{hint}", e.step, e.checkpoint_path) from None
        except (RuntimeUserError, KeyboardInterrupt):
            raise
        except Exception as e:
            if isinstance(e, RuntimeError) and "can't allocate memory" in str(e):  # the CPU allocator's out of memory
                asked = re.search(r"allocate (\d+) bytes", str(e))
                what = f" allocating {int(asked.group(1)) / 2**30:,.1f} GiB" if asked else ""
                raise RuntimeUserError(f"this machine ran out of memory{what}; try a smaller --batch-size, or a smaller model or head") from None
            where = compiled.explain(e)
            if where is None:
                raise
            raise RuntimeUserError(f"the model failed while training: {where}") from e
        if world.main:
            try:
                _report(compiled, summary, run_dir)
            except BrokenPipeError:  # the reader left as the run ended (`| head`): the run is complete all the same
                to_nothing("stdout")
    finally:
        distributed.shutdown(world)
    return 0


def _check_step_fits(compiled, config) -> None:
    """On the CPU, a training step predicted to need far more than the free memory (1.5 times,
    beyond the model's error) is refused before any data is read: the kernel would kill the
    process, or an allocation fail minutes later. On a GPU, out of memory is an exception that
    saves nothing and says what to do."""
    from archcompiler.cli.autobatch import far_over_free
    from runtime.errors import RuntimeUserError

    over = far_over_free(compiled.graph, compiled.result.registry, config.batch_size, "train", config.optimizer, config.amp or "off")
    if over is not None:
        peak, free, source = over
        shape = " x ".join(map(str, compiled.input_shape))
        raise RuntimeUserError(f"a training step of {compiled.name} at batch {config.batch_size} and input {shape} is predicted to need "
                               f"{peak / 2**30:,.1f} GiB, and {free / 2**30:.1f} GiB is free ({source}); "
                               "give a smaller --batch-size (or auto), or a smaller input in the spec")


def fit_classes(compiled, config, train_set, args, world):
    """The head follows the data's class count unless --num-classes or the spec's train:
    num_classes pins it (on --resume, the run's own count); one line says what was done."""
    from archcompiler.cli.classes import decide

    source = ("the run's config" if args.resume else "--num-classes" if args.num_classes is not None
              else "the spec's train: num_classes")
    compiled, line = decide(compiled, len(train_set.classes), config.num_classes, source)
    if world.main and line:
        print(line, flush=True)
    return compiled, dataclasses.replace(config, num_classes=compiled.output_shape[0])


def init_from(model, path: str, world) -> dict:
    """--init-from: copy the checkpoint's tensors whose names and shapes match `model`."""
    from runtime.train import checkpoint

    ckpt = checkpoint.load(path, weights_only=True)
    report = checkpoint.load_matching(model, ckpt.weights, ckpt.path)
    if world.main:
        skipped = "; skipped " + ", ".join(f"{k} ({why})" for k, why in report["skipped"].items()) if report["skipped"] else ""
        print(f"init-from {ckpt.path}: loaded {len(report['loaded'])} of {len(report['loaded']) + len(report['missing'])} "
              f"tensors of the model{skipped}" + (f"; {len(report['missing'])} kept their fresh initialisation" if report["missing"] else ""),
              flush=True)
        total = len(report["loaded"]) + len(report["missing"])
        if 2 * len(report["loaded"]) < total:  # a fine-tune keeps most of a model: this is likely another model's checkpoint
            print(f"archc: warning: --init-from loaded only {len(report['loaded'])} of the model's {total} tensors; is {ckpt.path} "
                  "a checkpoint of this model? Names and shapes must match", file=sys.stderr, flush=True)
    return {"checkpoint": str(ckpt.path), **report}


def _auto_batch(compiled, config, kind: str, world, images: int):
    """The config with the largest batch predicted to fit (at most the training set)."""
    import torch

    from archcompiler.cli.autobatch import auto_batch
    from runtime.errors import RuntimeUsageError

    if world.size > 1:
        raise RuntimeUsageError("--batch-size auto works on one process; give a batch size with --nproc or torchrun")
    amp = config.amp or vocab.default_amp(kind)
    batch = auto_batch(compiled, "train", config.optimizer, amp, torch.device(kind), cap=images)
    return dataclasses.replace(config, batch_size=batch)


def _eval_batch(compiled, config, kind: str, world):
    """The config with validation's batch lowered, when needed, to what the free memory holds
    beside the training state (the weights' gradients and the optimizer's moments stay while
    it runs): the budget of --batch-size auto, so a run that fits its training step does not
    then fail, or get killed, in its first validation."""
    import torch

    from archcompiler.cli.autobatch import MARGIN
    from archcompiler.passes.memory import largest_batch, predict
    from runtime.bench.device import free_memory

    try:
        free, source = free_memory(torch.device(kind))
    except Exception:  # noqa: BLE001 - no figure for the free memory here: the batch stays as asked
        return config
    graph, registry = compiled.graph, compiled.result.registry
    amp = config.amp or vocab.default_amp(kind)
    state = predict(graph, registry, 1, "train", config.optimizer, amp, kind)
    budget = int(free * (1 - MARGIN)) - state.grads_bytes - state.optimizer_bytes
    found = largest_batch(graph, registry, budget, "infer", config.optimizer, amp, kind, cap=config.eval_batch_size)
    batch = found[0] if found else 1
    if batch >= config.eval_batch_size:
        return config
    if world.main:
        print(f"note: validation batch {batch}, not {config.eval_batch_size}: a larger one is predicted not to fit in "
              f"{100 - 100 * MARGIN:.0f}% of {free / 2**30:.2f} GiB free ({source}) beside the training state", file=sys.stderr)
    return dataclasses.replace(config, eval_batch_size=batch)


def check_fit(compiled, dataset, data: str) -> None:
    """The data must fit the model's input and output before any step is taken: bad input (exit 1)."""
    from runtime.errors import RuntimeUserError

    shape = tuple(dataset.images.shape[1:])
    if tuple(compiled.input_shape) != shape:
        raise RuntimeUserError(f"{data} has images of shape {list(shape)} but {compiled.name} takes input {list(compiled.input_shape)}")
    classes, outputs = len(dataset.classes), compiled.output_shape[0]
    if classes > outputs:
        raise RuntimeUserError(f"{data} has {classes} classes but {compiled.name} has {outputs} outputs; "
                                f"set the last affine's `out` to {classes} or more")


def _load_data(data: str, args, world, size: tuple[int, int]):
    from runtime.data import load_dataset
    from runtime.train import distributed

    # The first process of each node decodes (and caches) first; the others then read that
    # node's cache instead of racing to write it.
    def load():
        return load_dataset(data, cache_dir=args.cache_dir, skip_corrupt=args.skip_corrupt, resize=args.resize, size=size, progress=world.main)  # a bar, or lines without a terminal

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
    print(f"{compiled.name}: {status} after {summary['steps']} step{'' if summary['steps'] == 1 else 's'} ({summary['epochs_completed']} full epoch{'' if summary['epochs_completed'] == 1 else 's'}) "
          f"in {summary['wall_time_s']:.1f}s on {summary['device']}" + (f" x{summary['world_size']}" if summary['world_size'] > 1 else ""))
    if best is not None and summary.get("final_val_acc") is not None:
        print(f"  final val acc {100 * summary['final_val_acc']:.2f}%  loss {summary['final_val_loss']:.4f}   "
              f"best val acc {100 * best:.2f}% (epoch {summary['best_epoch']})")
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
    if not _check_split(args):
        return 1
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}", "-m", "archcompiler", "train", *rest]
    print("archc: running " + " ".join(command[1:]), file=sys.stderr)
    # Each process gets its share of the cores (torchrun would otherwise set 1 and say so).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, cores // args.nproc))}
    code, how = _torchrun(command, env)
    if how == "interrupted":
        return 130
    if code != 0:
        why = how or ("Ctrl-C" if code == 130 else "a process that stopped")
        print(f"archc: error: training stopped: {why} (torchrun exit {code})" + ("" if how else "; the processes' own messages are above"),
              file=sys.stderr)
        return 130 if code == 130 else 1
    return 0


def _check_split(args) -> bool:
    """What would fail in every process, checked once before starting them: the spec and the
    batch size, which must split evenly over the processes."""
    from archcompiler.cli.common import compile_or_report
    from runtime.errors import RuntimeUsageError

    compiled = compile_or_report(args.spec)
    if compiled is None:
        return False  # the spec's errors are printed; bad input, exit 1
    if args.batch_size == "auto":
        raise RuntimeUsageError("--batch-size auto works on one process; give a batch size with --nproc or torchrun")
    if not args.resume:
        batch = build_config(compiled, args, Path(args.out or Path("runs") / compiled.name)).batch_size
        if batch % args.nproc:
            raise RuntimeUsageError(f"batch size {batch} does not split evenly over {args.nproc} processes (--nproc); "
                                    f"give a multiple of {args.nproc} with --batch-size")
    return True


def _torchrun(command: list[str], env: dict) -> tuple[int, str]:
    """Run torchrun, passing its processes' output through but not torchrun's own report of a
    failed process (a Python traceback ending in ChildFailedError) nor its logging lines: each
    archc process has already said what went wrong, in one line. Returns torchrun's exit code
    and what its report says of a process that died without a word (killed by a signal).
    With ARCHC_DEBUG set, everything is shown."""
    # torchrun and the workers run in a session of their own, and this process passes each
    # SIGINT or SIGTERM it gets to torchrun, which sends it on to every worker: Ctrl-C (which the
    # terminal now sends here alone) and a scheduler's SIGTERM to this process alike reach each
    # worker once, and each saves its checkpoint (within torchrun's 30 s shutdown timeout).
    # Before, a SIGTERM killed only this process and the workers trained on, orphaned; and a
    # Ctrl-C reached each worker twice, from the terminal and from torchrun, the second of which
    # means "quit without saving".
    debug = bool(os.environ.get("ARCHC_DEBUG"))
    proc, stopped = None, []

    def forward(signum, frame):
        stopped.append(signum)
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
        held: list[str] = []  # from a "Traceback" line on: torchrun's report, or a worker's own (debug) traceback
        codes: list[int] = []
        for line in proc.stderr:
            codes += [int(c) for c in EXITCODE.findall(line)]
            if debug:
                sys.stderr.write(line)
            elif held or line.startswith("Traceback (most recent call last):"):
                held.append(line)
            elif not TORCHRUN_LOG.match(line):
                sys.stderr.write(line)
            sys.stderr.flush()
        code = proc.wait()
        if stopped:  # rank 0 said where it stopped and how to continue; torchrun's SignalException says nothing more
            sys.stderr.writelines(h for h in held if h.startswith("archc: "))
            return 130, "interrupted"
        if held and not any("ChildFailedError" in h for h in held):
            sys.stderr.writelines(held)  # not torchrun's report: show it
        else:
            sys.stderr.writelines(h for h in held if h.startswith("archc: "))  # a process's own message inside it
        signals = sorted({-c for c in codes if c < 0})
        how = f"a process was killed by signal {', '.join(map(str, signals))}" + (" (SIGKILL: out of memory?)" if 9 in signals else "") if signals else ""
        return code, how
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
