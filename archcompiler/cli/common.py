"""Helpers shared by the subcommands that need a compiled spec."""
from __future__ import annotations

import sys


NO_MODEL = "no model: a spec's `input:` and `nodes:` make one"  # said of a file of blocks only


def block_names(result) -> list[str]:
    """The composite blocks a checked file defines."""
    return list((result.data or {}).get("blocks") or {})


def print_diagnostics(result, concise: bool = False) -> None:
    sources = {result.file: result.text} if result.text is not None else {}
    for d in result.diagnostics:
        print(d.concise() if concise else d.pretty(sources), file=sys.stderr)


def compile_or_report(path: str):
    """A `Compiled` for `path`, or None after printing its diagnostics (exit code 1)."""
    from archcompiler.api import Compiled
    from archcompiler.driver import check_file

    result = check_file(path)
    if not result.ok:
        print_diagnostics(result)
        if result.valid and result.graph is None:  # a block library: nothing failed, but there is no model
            print(f"{result.file}: defines blocks only ({', '.join(block_names(result))}), {NO_MODEL}", file=sys.stderr)
        return None
    return Compiled(result)


def image_size(compiled) -> tuple[int, int]:
    """(height, width) of the RGB images a model takes; bad input (exit 1) when its input is
    not (3, H, W), since every dataset archc reads is RGB images."""
    from runtime.errors import RuntimeUserError

    shape = tuple(compiled.input_shape)
    if len(shape) != 3 or shape[0] != 3:
        raise RuntimeUserError(f"{compiled.name} takes input {list(shape)}, but archc's datasets are RGB images: "
                               "train, eval and predict need an input of [3, H, W]")
    return shape[1], shape[2]


def trained_at(meta: dict, compiled) -> str | None:
    """A note when a checkpoint was trained at another input than the spec now takes (a model
    with global pooling runs at any size, but its accuracy was measured at one)."""
    trained = meta.get("input_shape")
    if isinstance(trained, list) and tuple(trained) != tuple(compiled.input_shape):
        return f"it was trained at input {trained}, and the spec takes {list(compiled.input_shape)}"
    return None


def spec_changed(meta: dict, compiled, checkpoint_path) -> bool:
    """Whether the spec says something else than the one a checkpoint was trained from: an
    edit to comments or layout is no change. A checkpoint older than `spec_data_sha256` is
    compared through its run's copy of the spec, when that copy is the text it was trained from."""
    import hashlib

    from archcompiler.api import spec_data_hash

    trained = meta.get("spec_sha256")
    if trained in (None, compiled.spec_hash):
        return False
    if meta.get("spec_data_sha256") is not None:
        return meta["spec_data_sha256"] != compiled.spec_data_hash
    for copy in _run_specs(checkpoint_path):
        try:
            text = copy.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        if hashlib.sha256(text.encode()).hexdigest() == trained:
            return spec_data_hash(text) != compiled.spec_data_hash
    return True


def _run_specs(checkpoint_path) -> list:
    """Where a checkpoint's run may keep its spec.yaml: in the run of run/checkpoints/step-N,
    or beside a weights file."""
    from pathlib import Path

    path = Path(checkpoint_path)
    return [run / "spec.yaml" for run in (path.parent.parent, path.parent)]


def load_weights(model, ckpt, compiled, device) -> None:
    """The checkpoint's weights into `model`; a mismatch says so when the input size changed
    since training, which is the usual reason (a flatten before an affine)."""
    from runtime.errors import CheckpointError
    from runtime.train import checkpoint

    try:
        checkpoint.load_into(model, {k: v.to(device) for k, v in ckpt.weights.items()}, ckpt.path)
    except CheckpointError as e:
        note = trained_at(ckpt.meta, compiled) or _other_model(ckpt, compiled)
        raise CheckpointError(f"{e}; {note}" if note else str(e)) from None


def _other_model(ckpt, compiled) -> str | None:
    """When a checkpoint does not fit: the model it holds, if another, and its run's spec."""
    name = ckpt.meta.get("model")
    if not isinstance(name, str) or name == compiled.name:
        return None
    copy = next((copy for copy in _run_specs(ckpt.path) if copy.is_file()), None)
    return f"it holds a {name} model, not {compiled.name}" + (f"; its spec is {copy}" if copy else "")
