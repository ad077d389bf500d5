"""What `archc train --resume` checks and restores beyond the saved config (cli/train.py):
the data options the run started with, and that the checkpoint really is this run's."""
from __future__ import annotations

import json
from pathlib import Path


def data_options_note(args, config, run_dir: Path) -> str | None:
    """A resume reads the data the run started with: its --data (in the config), its --cache-dir
    --skip-corrupt and --resize (in config.json's data_options) unless given again. Returns the line
    that says so, printed once the checkpoint has been found sound."""
    saved = {}
    try:
        saved = json.loads((run_dir / "config.json").read_text()).get("data_options") or {}
    except (OSError, ValueError, AttributeError):
        pass  # build_config has read config.json already; a run from before data_options has none
    restore_data_options(args, saved)
    if args.data is None or args.cache_dir != saved.get("cache_dir"):
        where = f", cache {args.cache_dir}" if args.cache_dir else ""
        return (f"archc: resuming with the run's data: {config.data}{where}" + (", --skip-corrupt" if args.skip_corrupt else "")
                + (", --resize" if args.resize else ""))
    return None


def restore_data_options(args, saved) -> None:
    """--cache-dir, --skip-corrupt and --resize from a run's config.json `data_options`, where
    not given again."""
    if not isinstance(saved, dict):
        return
    if args.cache_dir is None and isinstance(saved.get("cache_dir"), str):
        args.cache_dir = saved["cache_dir"]
    args.skip_corrupt = args.skip_corrupt or saved.get("skip_corrupt") is True
    args.resize = args.resize or saved.get("resize") is True


def check_same_run(ckpt, compiled, config, reworded: bool = False) -> None:
    """The checkpoint's meta.json must describe this run: its model, spec, settings and step
    (`reworded`: the spec's text differs from the run's copy in comments or layout only)."""
    from runtime.errors import CheckpointError
    from runtime.train.config import TrainConfig

    from archcompiler.cli.train import RESUMABLE

    meta, where = ckpt.meta, ckpt.path / "meta.json"
    if config.num_classes is not None:  # the run trained the spec with its head set to the data's classes
        from archcompiler.cli.classes import head, with_classes

        if head(compiled)[1] is not None:
            compiled = with_classes(compiled, config.num_classes)
    if meta.get("model") not in (None, compiled.name):
        raise CheckpointError(f"{where} is of model {meta.get('model')!r}, not {compiled.name}; it belongs to another run")
    if meta.get("spec_sha256") not in (None, compiled.spec_hash) and not reworded:
        raise CheckpointError(f"{where} was trained from another spec than this run's; it belongs to another run")
    if meta.get("step") != ckpt.state.get("step"):
        raise CheckpointError(f"{where} says step {meta.get('step')} but its state.pt is at step {ckpt.state.get('step')}; "
                              "the files come from different checkpoints")
    saved = meta.get("config")
    if isinstance(saved, dict):
        fixed = [k for k in TrainConfig().to_dict() if k not in (*RESUMABLE, "notes") and k in saved and saved[k] != getattr(config, k)]
        if fixed:
            k = fixed[0]
            raise CheckpointError(f"{where} has {k} {saved[k]!r} but this run has {getattr(config, k)!r}; it belongs to another run")
