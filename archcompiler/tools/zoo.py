"""The README's model-zoo table, from the specs themselves.

    python -m archcompiler.tools.zoo        # prints the markdown table

YAML lines are the spec's non-blank, non-comment lines. The reference's lines are those of
the torchvision module that defines the model (every variant and weights table in it
included), or of the hand-written reference in tests/ for the U-Net, counting lines that
hold code: no blank lines, comments or docstrings. Parameters and FLOPs are `archc check`'s.
`tests/test_zoo.py` checks that the outputs equal, and that the README holds this table.
"""
from __future__ import annotations

import importlib.util
import io
import tokenize
from pathlib import Path

from archcompiler.backends.table import fmt_flops
from archcompiler.driver import check_file

ROOT = Path(__file__).resolve().parents[2]
# spec -> (torchvision constructor, its arguments, the file it lives in under torchvision/)
ZOO = {
    "resnet18": ("resnet18", {}, "models/resnet.py"),
    "resnet50": ("resnet50", {}, "models/resnet.py"),
    "densenet121": ("densenet121", {}, "models/densenet.py"),
    "googlenet": ("googlenet", {"aux_logits": False, "init_weights": True}, "models/googlenet.py"),  # no auxiliary heads
    "mobilenet_v2": ("mobilenet_v2", {}, "models/mobilenetv2.py"),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}, "models/mobilenetv3.py"),
    "efficientnet_b0": ("efficientnet_b0", {}, "models/efficientnet.py"),
    "convnext_tiny": ("convnext_tiny", {}, "models/convnext.py"),
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", {}, "models/shufflenetv2.py"),
    "resnext50_32x4d": ("resnext50_32x4d", {}, "models/resnet.py"),
    "regnet_y_400mf": ("regnet_y_400mf", {}, "models/regnet.py"),
    "squeezenet1_1": ("squeezenet1_1", {}, "models/squeezenet.py"),
    "mnasnet0_5": ("mnasnet0_5", {}, "models/mnasnet.py"),
    "efficientnet_v2_s": ("efficientnet_v2_s", {}, "models/efficientnet.py"),
    "inception_v3": ("inception_v3", {"aux_logits": False, "init_weights": True}, "models/inception.py"),
    "vgg11_bn": ("vgg11_bn", {}, "models/vgg.py"),
}
# Specs whose numerics test is marked slow (`make test-all` runs them): vgg11_bn, whose 133 M
# parameters (two copies, ours and torchvision's) cost the 2-core test machine more than the
# rest of the zoo together. The others run in under 3 s each since torch 2.14.
SLOW: set[str] = {"vgg11_bn"}
HAND_WRITTEN = {"unet": "tests/unet_reference.py"}  # no torchvision model: a plain PyTorch module
# Specs whose features, not their classifier head, are torchvision's: the files of its modules
# (tests/test_zoo.py compares every level of the feature pyramid).
FEATURES = {"resnet18_fpn": ("models/detection/backbone_utils.py", "ops/feature_pyramid_network.py")}


def yaml_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.lstrip().startswith("#"))


def code_lines(path: Path) -> int:
    """Lines holding Python code: not blank, not only a comment, not part of a docstring."""
    text = path.read_text(encoding="utf-8")
    lines: set[int] = set()
    previous = tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                previous = tok.type
            continue
        docstring = tok.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        if not docstring:
            lines.update(range(tok.start[0], tok.end[0] + 1))
        previous = tok.type
    return len(lines)


def torchvision_root() -> Path | None:
    spec = importlib.util.find_spec("torchvision")  # finds the package without importing torch
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def table() -> str:
    tv = torchvision_root()
    rows = ["| model | YAML lines | reference (code lines) | params | FLOPs (forward, at its input) | outputs equal |", "|---|---|---|---|---|---|"]
    for name in [*ZOO, *FEATURES, *HAND_WRITTEN]:
        path = ROOT / "specs" / "examples" / f"{name}.yaml"
        result = check_file(str(path))
        if name in ZOO:
            ref = ZOO[name][2]
            where = f"torchvision {ref} ({code_lines(tv / ref)})" if tv is not None else f"torchvision {ref}"
        elif name in FEATURES:
            refs = FEATURES[name]
            lines = f" ({sum(code_lines(tv / r) for r in refs)})" if tv is not None else ""
            where = f"torchvision {' + '.join(refs)}{lines}"
        else:
            ref = HAND_WRITTEN[name]
            where = f"{ref} ({code_lines(ROOT / ref)})"
        c, h, w = result.input_shape
        equal = "yes (`make test-all`)" if name in SLOW else "yes, each FPN level (its head is archc's)" if name in FEATURES else "yes"
        rows.append(f"| `{name}` | {yaml_lines(path)} | {where} | {result.totals['params']:,} | {fmt_flops(result.totals['flops'])} at {c}x{h}x{w} | {equal} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
