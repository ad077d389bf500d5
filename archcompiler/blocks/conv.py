"""Convolutions, transposed convolutions and the channel shuffle that grouped convs need."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from archcompiler.ir.expr import call, is_symbolic, literal
from archcompiler.blocks.registry import Block, Saved, ShapeError, check_spatial, pair, slide

POSITIVE = {"type": "integer", "minimum": 1}
PAIR_TEXT = "an integer >= {m} or a pair [height, width] of them"


def int_or_pair(minimum: int, default=None, description: str = "") -> dict:
    """An integer, or a [height, width] pair for a non-square window (`kernel: [1, 7]`)."""
    one = {"type": "integer", "minimum": minimum}
    frag = {
        "oneOf": [one, {"type": "array", "items": one, "minItems": 2, "maxItems": 2, "description": "[height, width]"}],
        "x-expected": PAIR_TEXT.format(m=minimum),
        "description": description,
    }
    return frag | ({"default": default} if default is not None else {})


PADDING = {
    "oneOf": [{"enum": ["same", "valid"]}, {"type": "integer", "minimum": 0},
              {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2, "description": "[height, width]"}],
    "default": "valid",
    "x-expected": "'same', 'valid', an integer >= 0 or a pair [height, width] of them",
    "description": "'same' keeps H x W at stride 1 and gives ceil(H / stride) at a larger one, padded as TensorFlow's SAME "
                   "(the odd pixel at the bottom and right); 'valid' is 0; or pixels on each side",
}


def code(v):
    """A parameter as it is written in the emitted code: a pair as a tuple, and as one
    integer when both sides agree; a block parameter as itself."""
    if isinstance(v, list) and not any(is_symbolic(x) for x in v):
        return v[0] if v[0] == v[1] else tuple(v)
    return v


def window(p: dict) -> int:
    """kernel height x width."""
    kh, kw = pair(p["kernel"])
    return kh * kw


def check_groups(p, c: int, out: int) -> None:
    if c % p["groups"] or out % p["groups"]:
        raise ShapeError(f"groups={p['groups']} must divide both the input channels ({c}) and out ({out})", param="groups", code="E402")


@dataclass
class Conv(Block):
    name: str = "conv"
    family: str = "conv"
    summary: str = "2-D convolution (nn.Conv2d). `out` defaults to the input channels; kernel, stride, padding and dilation may be [height, width]."
    label_keys: tuple = ("kernel", "stride", "out")
    example_params: dict = field(default_factory=lambda: {"out": 24, "stride": 2, "padding": 1})

    def __post_init__(self):
        self.params = {
            "out": POSITIVE | {"description": "output channels (default: input channels)"},
            "kernel": int_or_pair(1, 3, "kernel size"),
            "stride": int_or_pair(1, 1, "stride"),
            "padding": PADDING,
            "dilation": int_or_pair(1, 1, "dilation"),
            "groups": POSITIVE | {"default": 1, "description": "groups (depthwise: groups = channels)"},
            "bias": {"type": "boolean", "default": True, "description": "add a learned bias"},
        }

    def out_channels(self, p, ins):
        return p.get("out", ins[0][0])

    def infer(self, p, ins, refs, names):
        c, h, w = check_spatial(ins[0], "conv")
        out = self.out_channels(p, ins)
        check_groups(p, c, out)
        if p["padding"] == "same":  # PyTorch pads (unevenly, for an even kernel) to keep H x W; TF's SAME at a stride
            (sh, sw) = pair(p["stride"])
            return (out, -(-h // sh), -(-w // sw))
        pad = (0, 0) if p["padding"] == "valid" else pair(p["padding"])
        oh, ow = slide(ins[0], p["kernel"], p["stride"], pad, p["dilation"])
        return (out, oh, ow)

    def param_count(self, p, ins, out):
        weight = out[0] * (ins[0][0] // p["groups"]) * window(p)
        return weight + (out[0] if p["bias"] else 0)

    def flops(self, p, ins, out):
        cout, oh, ow = out
        return 2 * cout * oh * ow * (ins[0][0] // p["groups"]) * window(p)

    def torch_module(self, p, ins):
        strided_same = p["padding"] == "same" and _strided(p)
        padding = [] if strided_same else [("padding", code(p["padding"]), "valid")]  # Conv2dSame pads in forward
        keywords = [("kernel_size", code(p["kernel"]), None), ("stride", code(p["stride"]), 1), *padding,
                    ("dilation", code(p["dilation"]), 1), ("groups", p["groups"], 1), ("bias", p["bias"], True)]
        return call("Conv2dSame" if strided_same else "nn.Conv2d", [ins[0][0], self.out_channels(p, ins)], keywords)

    def torch_helpers(self):
        return {"Conv2dSame": CONV2D_SAME}

    # memory: convolution_backward needs the input (weight grad) and the weight (input grad);
    # the bias needs only its size. Under autocast both are bf16 copies.
    autocast_low: bool = True

    def saved(self, p, ins, out, device):
        weight = self.param_count(p, ins, out) - (out[0] if p["bias"] else 0)
        padded = same_padded(p, ins[0])
        read = Saved("in0", dtype="low") if padded is None else Saved("new", prod(padded), dtype="low")  # the padded copy
        return [read, Saved("param", weight, dtype="low")]

    # On the CPU, oneDNN's backward reorders a copy of the output's gradient and of the input
    # into its own layout while it computes the gradients.
    def workspace(self, p, ins, out, device):
        return prod(out) + prod(same_padded(p, ins[0]) or ins[0]) if device == "cpu" else 0


def _strided(p) -> bool:
    return is_symbolic(p["stride"]) or pair(p["stride"]) != (1, 1)


def same_padded(p, shape) -> tuple | None:
    """The (C, H, W) of the padded copy that 'same' padding makes, or None where it makes none.
    Both nn.Conv2d's 'same' (stride 1) and Conv2dSame (TensorFlow's, at a stride) let the
    convolution pad evenly by itself, and copy the input into a padded tensor only when one
    side needs a pixel more than the other (an even kernel, or a size the stride does not fit)."""
    if p["padding"] != "same":
        return None
    c, h, w = shape
    totals = [max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0) for n, s, k, d in zip((h, w), pair(p["stride"]), pair(p["kernel"]), pair(p["dilation"]))]
    return (c, h + totals[0], w + totals[1]) if any(t % 2 for t in totals) else None


# TensorFlow's SAME padding at a stride, which nn.Conv2d refuses: the padding depends on the
# input's size, so it is computed in forward (as timm's Conv2dSame does); the parameters and
# their names are nn.Conv2d's.
CONV2D_SAME = '''class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TensorFlow's SAME padding at any stride: the output is ceil(H / stride) x ceil(W / stride),
    and the odd pixel of padding goes to the bottom and right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []  # F.pad's order: left, right, top, bottom
        for i in (1, 0):
            size, stride, reach = x.shape[2 + i], self.stride[i], (self.kernel_size[i] - 1) * self.dilation[i] + 1
            total = max((-(-size // stride) - 1) * stride + reach - size, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] and pads[2] == pads[3]:  # even on both sides: the convolution pads, with no copy
            return F.conv2d(x, self.weight, self.bias, self.stride, (pads[2], pads[0]), self.dilation, self.groups)
        return super().forward(F.pad(x, pads))
'''


@dataclass
class ConvTranspose(Block):
    name: str = "conv_transpose"
    family: str = "conv"
    summary: str = ("Transposed 2-D convolution (nn.ConvTranspose2d), the learned upsampling of decoders: "
                    "H becomes (H - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1.")
    label_keys: tuple = ("kernel", "stride", "out")
    example_params: dict = field(default_factory=lambda: {"out": 6, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1})


    # memory: like conv, convolution_backward needs the input and the weight (bf16 copies
    # under autocast).
    autocast_low: bool = True

    def saved(self, p, ins, out, device):
        weight = self.param_count(p, ins, out) - (out[0] if p["bias"] else 0)
        return [Saved("in0", dtype="low"), Saved("param", weight, dtype="low")]

    def __post_init__(self):
        self.params = {
            "out": POSITIVE | {"description": "output channels (default: input channels)"},
            "kernel": int_or_pair(1, 2, "kernel size"),
            "stride": int_or_pair(1, 1, "stride"),
            "padding": int_or_pair(0, 0, "pixels removed from each side of the output"),
            "output_padding": int_or_pair(0, 0, "pixels added to the bottom and right of the output, to reach an even size; less than the stride or the dilation"),
            "dilation": int_or_pair(1, 1, "dilation"),
            "groups": POSITIVE | {"default": 1, "description": "groups; must divide the input channels and out"},
            "bias": {"type": "boolean", "default": True, "description": "add a learned bias"},
        }

    def out_channels(self, p, ins):
        return p.get("out", ins[0][0])

    def infer(self, p, ins, refs, names):
        c, h, w = check_spatial(ins[0], self.name)
        out = self.out_channels(p, ins)
        check_groups(p, c, out)
        dims = list(zip((h, w), pair(p["kernel"]), pair(p["stride"]), pair(p["padding"]), pair(p["output_padding"]), pair(p["dilation"])))
        for _, _, s, _, op, d in dims:
            if op >= s and op >= d:  # PyTorch refuses it when building the module
                raise ShapeError(f"output_padding {op} must be smaller than the stride ({s}) or the dilation ({d})", param="output_padding", code="E407")
        grown = [(n - 1) * s + d * (k - 1) + op + 1 for n, k, s, _, op, d in dims]
        size = [g - 2 * pad for g, (_, _, _, pad, _, _) in zip(grown, dims)]
        if size[0] < 1 or size[1] < 1:
            raise ShapeError(f"padding {p['padding']} on each side removes more than the {grown[0]}x{grown[1]} that the {h}x{w} input "
                             "grows to; the map would shrink below 1x1", param="padding", code="E404")
        return (out, size[0], size[1])

    def param_count(self, p, ins, out):
        weight = ins[0][0] * (out[0] // p["groups"]) * window(p)  # weight is (in, out / groups, kh, kw)
        return weight + (out[0] if p["bias"] else 0)

    def flops(self, p, ins, out):
        # FlopCounterMode counts a transposed conv over the input's positions, not the output's
        c, h, w = ins[0]
        return 2 * c * h * w * (out[0] // p["groups"]) * window(p)

    def torch_module(self, p, ins):
        keywords = [("kernel_size", code(p["kernel"]), None), ("stride", code(p["stride"]), 1), ("padding", code(p["padding"]), 0),
                    ("output_padding", code(p["output_padding"]), 0), ("groups", p["groups"], 1), ("bias", p["bias"], True),
                    ("dilation", code(p["dilation"]), 1)]
        return call("nn.ConvTranspose2d", [ins[0][0], self.out_channels(p, ins)], keywords)


@dataclass
class ChannelShuffle(Block):
    name: str = "channel_shuffle"
    family: str = "conv"
    summary: str = "Interleave the channels of `groups` groups (ShuffleNet's reshape-transpose, as nn.ChannelShuffle)."
    required: tuple = ("groups",)
    label_keys: tuple = ("groups",)
    example_params: dict = field(default_factory=lambda: {"groups": 4})


    # memory: reshapes and a transpose; the copy it makes is its output, nothing is saved.
    def saved(self, p, ins, out, device):
        return []

    def __post_init__(self):
        self.params = {"groups": {"type": "integer", "minimum": 1, "description": "number of groups; must divide the channels"}}

    def infer(self, p, ins, refs, names):
        c, _, _ = check_spatial(ins[0], self.name)
        if c % p["groups"]:
            raise ShapeError(f"groups={p['groups']} must divide the input channels ({c})", param="groups", code="E402")
        return ins[0]

    def torch_call(self, p, args, module, refs):
        return f"channel_shuffle({args[0]}, {literal(p['groups'])})"

    def torch_helpers(self):
        return {"channel_shuffle": '''def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Channel i of group g moves to i * groups + g (ShuffleNet): each group's channels spread over all groups."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)'''}


BLOCKS = [Conv(), ConvTranspose(), ChannelShuffle()]
