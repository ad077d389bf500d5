"""`archc export SPEC --format onnx -o model.onnx [--checkpoint PATH]`.

The model is exported with torch.onnx's torch.export-based exporter (dynamic batch), then
checked with onnx.checker and run with onnxruntime against PyTorch on the same input.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from archcompiler.cli.common import compile_or_report
from archcompiler.errors import ArchcError, UsageError
from runtime import argtypes

INSTALL_HINT = ("ONNX export needs the 'onnx' extra (onnx, onnxruntime, onnxscript): in the archc checkout, "
                "pip install -e '.[onnx]' (make setup does it)")
TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| accepted, in logits


def with_checkpoint(compiled, path: str):
    """Read trained weights as `archc eval` does (a run directory, checkpoints/best, a step
    directory or a bare .safetensors file), and the spec with the head they were trained with
    (archc train sets it to the data's class count; meta.json records it)."""
    from archcompiler.cli.classes import with_classes
    from runtime.train import checkpoint

    ckpt = checkpoint.load(path, weights_only=True)
    classes = ckpt.meta.get("num_classes")
    return (with_classes(compiled, classes) if isinstance(classes, int) else compiled), ckpt


def model_props(compiled, ckpt) -> dict[str, str]:
    """What a user of the .onnx file needs besides the graph, as its metadata_props: the
    preprocessing the weights were trained with (archc's loader: RGB pixels / 255, minus the
    training set's channel mean, over its std when the recipe divides) and the classes in
    output order. Without a checkpoint only the model and its input."""
    import json

    h, w = compiled.input_shape[1:]
    props = {"archc:model": compiled.name, "archc:spec_sha256": compiled.spec_hash,
             "archc:input": f"float32 (batch, 3, {h}, {w}), RGB, NCHW"}
    if ckpt is None:
        return props
    meta = ckpt.meta
    stats = meta.get("data_stats") or {}
    if isinstance(meta.get("step"), int):
        props["archc:step"] = str(meta["step"])  # the training step of the weights; not a path of this machine
    if "mean" in stats:
        std = stats.get("std") or [1.0, 1.0, 1.0]
        props.update({"archc:preprocessing": "x = (pixels / 255 - mean) / std, per RGB channel, pixels 0-255",
                      "archc:mean": json.dumps(stats["mean"]), "archc:std": json.dumps(std)})
    if meta.get("classes"):
        props["archc:classes"] = json.dumps(meta["classes"])
    if meta.get("class_names"):
        props["archc:class_names"] = json.dumps(meta["class_names"])
    return props


def supported_opsets(onnx, torch) -> tuple[int, int]:
    """The opsets this installation exports: from the lowest torch's exporter implements (below
    it, it converts down and silently keeps its own when that fails) to the newest onnx knows."""
    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET as low
    except ImportError:  # a torch that moved the constant: 18 since the exporter's first release
        low = 18
    return low, onnx.defs.onnx_opset_version()


def check_opset(opset: int | None, onnx, torch) -> None:
    if opset is None:
        return
    low, high = supported_opsets(onnx, torch)
    if not low <= opset <= high:
        raise UsageError(f"--opset {opset}: this installation (torch {torch.__version__.split('+')[0]}, onnx {onnx.__version__}) "
                         f"exports opsets {low} to {high}")


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

    check_opset(opset, onnx, torch)
    ckpt = None
    if checkpoint:
        compiled, ckpt = with_checkpoint(compiled, checkpoint)
    model = compiled.module(seed=0).eval()
    if ckpt is not None:
        from archcompiler.cli.common import load_weights

        load_weights(model, ckpt, compiled, torch.device("cpu"))  # as eval and predict load, and say what does not fit
    example = torch.randn(2, *compiled.input_shape, generator=torch.Generator().manual_seed(0))
    results = compiled.graph.result_names  # as the spec names them
    # A model with several outputs names each after its node; one that returns its own input
    # (output: [input, p3]) cannot reuse the input's name, which ONNX gives one value.
    names = ["output"] if len(results) == 1 else [f"{r}_output" if r == "input" else r for r in results]
    batch = torch.export.Dim("batch", min=1, max=65536)
    kwargs = {"opset_version": opset} if opset is not None else {}
    say("tracing the model with torch.export and converting it to ONNX (the slow part: seconds to a minute)")
    with warnings.catch_warnings():
        # The exporter's own deprecation notices (torch 2.11 warns about its pytree's LeafSpec
        # from inside torch.export) speak to torch's developers; nothing a user can act on.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        program = torch.onnx.export(
            model, (example,), dynamo=True, input_names=["input"], output_names=names,
            dynamic_shapes=({0: batch},), verbose=False, **kwargs,
        )
    proto = program.model_proto
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and written != opset:  # the exporter falls back quietly when it cannot convert
        raise ArchcError(f"the exporter wrote opset {written}, not the {opset} asked for; not writing {output}")
    say("checking the graph with onnx.checker and running it with onnxruntime against PyTorch")
    onnx.helper.set_model_props(proto, model_props(compiled, ckpt))
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    probe = torch.randn(3, *compiled.input_shape, generator=torch.Generator().manual_seed(1))
    got = session.run(None, {"input": probe.numpy()})
    with torch.no_grad():
        want = model(probe)
    want = [want] if len(results) == 1 else list(want)
    diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))
    if diff > TOLERANCE:
        raise ArchcError(f"onnxruntime disagrees with PyTorch by {diff:.2e} (> {TOLERANCE}); not writing {output}")
    write_bytes(output, data)
    return diff


def parser() -> argtypes.Parser:
    p = argtypes.Parser(prog="archc export", description="Export a spec's model (optionally with trained weights).")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--checkpoint", metavar="PATH", help="a checkpoint directory (archc train) or a .safetensors file")
    p.add_argument("--opset", type=argtypes.positive, metavar="N", help="ONNX opset (default: the exporter's; 18 up to what onnx knows)")
    return p


def check_args(args) -> None:
    """The output path, and the opset against what this installation's exporter writes."""
    from runtime.paths import output_file

    out = Path(args.output)
    resolved = out.resolve()
    inside = next((p for p in (resolved, *resolved.parents) if p.name == "checkpoints" and (p.parent / "config.json").exists()), None)
    if inside is not None and out.is_dir():  # not "give a file name inside it": none may go there
        raise UsageError(f"-o {args.output}: is the run's {inside}, which holds only what archc train writes; "
                         f"write it beside, e.g. {inside.parent / 'model.onnx'}")
    output_file(args.output, "-o", reads=[args.spec, args.checkpoint])  # a folder, a device, what the command reads
    if out.name.lower() == ".onnx":
        raise UsageError(f"-o {args.output}: give the file a name, e.g. model.onnx")
    if out.suffix.lower() != ".onnx":  # a typo'd -o would otherwise overwrite, say, a run's metrics.csv
        raise UsageError(f"-o {args.output}: an ONNX file's name ends in .onnx")
    if inside is not None:
        raise UsageError(f"-o {args.output}: is inside the run's {inside}, which holds only what archc train writes; "
                         f"write it beside, e.g. {inside.parent / 'model.onnx'}")
    if args.opset is not None:
        try:
            import onnx
            import torch
        except ImportError:
            raise ArchcError(INSTALL_HINT) from None
        check_opset(args.opset, onnx, torch)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    compiled = compile_or_report(args.spec)
    if compiled is None:
        return 1
    diff = export_onnx(compiled, args.output, args.checkpoint, args.opset)
    print(f"wrote {args.output}: onnx.checker ok; onnxruntime matches PyTorch (max |diff| {diff:.1e})", file=sys.stderr)
    return 0
