"""`archc export SPEC --format onnx -o model.onnx [--checkpoint PATH]`.

The model is exported with torch.onnx's torch.export-based exporter (dynamic batch), then
checked with onnx.checker and run with onnxruntime against PyTorch on the same input.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from archcompiler.cli.common import compile_or_report
from archcompiler.errors import ArchcError

INSTALL_HINT = ("ONNX export needs the 'onnx' extra (onnx, onnxruntime, onnxscript): in the archc checkout, "
                "pip install -e '.[onnx]' (make setup does it)")
TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| accepted, in logits


def checkpoint_classes(compiled, path: str):
    """The spec with the head the checkpoint was trained with (archc train sets it to the
    data's class count; meta.json records it)."""
    import json

    from archcompiler.cli.classes import with_classes

    try:
        meta = json.loads((Path(path) / "meta.json").read_text())
    except (OSError, ValueError):
        return compiled  # a bare .safetensors file, or no meta: the spec as written
    classes = meta.get("num_classes") if isinstance(meta, dict) else None
    return with_classes(compiled, classes) if isinstance(classes, int) else compiled


def load_weights(model, path: str) -> None:
    """Load a checkpoint directory (its model.safetensors) or a .safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = os.path.join(path, "model.safetensors") if os.path.isdir(path) else path
    try:
        state = load_file(file)
    except FileNotFoundError:
        raise ArchcError(f"no checkpoint at {file}") from None
    except (SafetensorError, OSError) as e:
        raise ArchcError(f"{file} is not a readable safetensors checkpoint: {e}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArchcError(f"{file} does not fit this spec: {len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")


def say(text: str) -> None:
    """Progress on stderr, with or without a terminal: each stage can take seconds."""
    print(f"archc export: {text} ...", file=sys.stderr, flush=True)


def export_onnx(compiled, output: str, checkpoint: str | None = None, opset: int | None = None) -> float:
    """Export, check and verify. Returns the max abs difference against PyTorch."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        import onnxscript  # noqa: F401 - the exporter needs it
    except ImportError:
        raise ArchcError(INSTALL_HINT) from None
    import torch

    from runtime.files import write_bytes

    if checkpoint:
        compiled = checkpoint_classes(compiled, checkpoint)
    model = compiled.module(seed=0).eval()
    if checkpoint:
        load_weights(model, checkpoint)
    example = torch.randn(2, *compiled.input_shape, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=65536)
    kwargs = {"opset_version": opset} if opset else {}
    say("tracing the model with torch.export and converting it to ONNX (the slow part: seconds to a minute)")
    program = torch.onnx.export(
        model, (example,), dynamo=True, input_names=["input"], output_names=["output"],
        dynamic_shapes=({0: batch},), verbose=False, **kwargs,
    )
    proto = program.model_proto
    say("checking the graph with onnx.checker and running it with onnxruntime against PyTorch")
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    probe = torch.randn(3, *compiled.input_shape, generator=torch.Generator().manual_seed(1))
    got = session.run(None, {"input": probe.numpy()})[0]
    with torch.no_grad():
        want = model(probe).numpy()
    diff = float(np.abs(got - want).max())
    if diff > TOLERANCE:
        raise ArchcError(f"onnxruntime disagrees with PyTorch by {diff:.2e} (> {TOLERANCE}); not writing {output}")
    write_bytes(output, data)
    return diff


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="archc export", description="Export a spec's model (optionally with trained weights).")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--checkpoint", metavar="PATH", help="a checkpoint directory (archc train) or a .safetensors file")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the exporter's)")
    args = p.parse_args(argv)
    compiled = compile_or_report(args.spec)
    if compiled is None:
        return 1
    diff = export_onnx(compiled, args.output, args.checkpoint, args.opset)
    print(f"wrote {args.output}: onnx.checker ok; onnxruntime matches PyTorch (max |diff| {diff:.1e})", file=sys.stderr)
    return 0
