"""Convolutions."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from archcompiler.ir.expr import call
from archcompiler.blocks.registry import Block, Saved, ShapeError, check_spatial, slide

POSITIVE = {"type": "integer", "minimum": 1}
PADDING = {
    "oneOf": [{"enum": ["same", "valid"]}, {"type": "integer", "minimum": 0}],
    "default": "valid",
    "x-expected": "'same', 'valid' or an integer >= 0",
    "description": "'same' keeps H x W (stride 1 only), 'valid' is 0, or pixels on each side",
}


def padding_pixels(padding, kernel: int, dilation: int = 1) -> int:
    if padding == "valid":
        return 0
    if padding == "same":
        return dilation * (kernel - 1) // 2
    return padding


@dataclass
class Conv(Block):
    name: str = "conv"
    family: str = "conv"
    summary: str = "2-D convolution (nn.Conv2d). `out` defaults to the input channels."
    label_keys: tuple = ("kernel", "stride", "out")
    example_params: dict = field(default_factory=lambda: {"out": 24, "stride": 2, "padding": 1})

    def __post_init__(self):
        self.params = {
            "out": POSITIVE | {"description": "output channels (default: input channels)"},
            "kernel": POSITIVE | {"default": 3, "description": "square kernel size"},
            "stride": POSITIVE | {"default": 1, "description": "stride"},
            "padding": PADDING,
            "dilation": POSITIVE | {"default": 1, "description": "dilation"},
            "groups": POSITIVE | {"default": 1, "description": "groups (depthwise: groups = channels)"},
            "bias": {"type": "boolean", "default": True, "description": "add a learned bias"},
        }

    def out_channels(self, p, ins):
        return p.get("out", ins[0][0])

    def infer(self, p, ins, refs, names):
        c, _, _ = check_spatial(ins[0], "conv")
        out = self.out_channels(p, ins)
        if p["padding"] == "same" and p["stride"] != 1:
            raise ShapeError("padding 'same' needs stride 1; give the padding in pixels instead", param="padding", code="E403")
        if c % p["groups"] or out % p["groups"]:
            raise ShapeError(f"groups={p['groups']} must divide both the input channels ({c}) and out ({out})", param="groups", code="E402")
        if p["padding"] == "same":  # PyTorch pads (unevenly, for an even kernel) to keep H x W
            return (out, ins[0][1], ins[0][2])
        pad = padding_pixels(p["padding"], p["kernel"], p["dilation"])
        oh, ow = slide(ins[0], p["kernel"], p["stride"], pad, p["dilation"])
        return (out, oh, ow)

    def param_count(self, p, ins, out):
        weight = out[0] * (ins[0][0] // p["groups"]) * p["kernel"] ** 2
        return weight + (out[0] if p["bias"] else 0)

    def flops(self, p, ins, out):
        cout, oh, ow = out
        return 2 * cout * oh * ow * (ins[0][0] // p["groups"]) * p["kernel"] ** 2

    def torch_module(self, p, ins):
        keywords = [("kernel_size", p["kernel"], None), ("stride", p["stride"], 1), ("padding", p["padding"], "valid"),
                    ("dilation", p["dilation"], 1), ("groups", p["groups"], 1), ("bias", p["bias"], True)]
        return call("nn.Conv2d", [ins[0][0], self.out_channels(p, ins)], keywords)

    # memory: convolution_backward needs the input (weight grad) and the weight (input grad);
    # the bias needs only its size. Under autocast both are bf16 copies.
    autocast_low: bool = True

    def saved(self, p, ins, out, device):
        weight = self.param_count(p, ins, out) - (out[0] if p["bias"] else 0)
        return [Saved("in0", dtype="low"), Saved("param", weight, dtype="low")]

    # On the CPU, oneDNN's backward reorders a copy of the output's gradient and of the input
    # into its own layout while it computes the gradients.
    def workspace(self, p, ins, out, device):
        return prod(out) + prod(ins[0]) if device == "cpu" else 0


BLOCKS = [Conv()]
