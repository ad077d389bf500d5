"""Pooling and resampling."""
from __future__ import annotations

from dataclasses import dataclass, field

from archcompiler.ir.expr import call, literal, variables
from archcompiler.blocks.conv import code, int_or_pair
from archcompiler.blocks.registry import IDENTIFIER, Block, Saved, ShapeError, check_spatial, items, pair, slide

POSITIVE = {"type": "integer", "minimum": 1}


@dataclass
class _Pool(Block):
    family: str = "pooling"
    label_keys: tuple = ("kernel", "stride")
    torch_class: str = ""
    torch_function: str = ""

    def __post_init__(self):
        self.params = {
            "kernel": int_or_pair(1, 2, "window size: one integer, or [height, width]"),
            "stride": int_or_pair(1, None, "stride (default: the kernel size)"),
            "padding": int_or_pair(0, 0, "pixels on each side, at most half the kernel"),
            "ceil_mode": {"type": "boolean", "default": False,
                          "description": "round the output size up: a last, partial window is kept if it starts inside the input or its left padding"},
        }

    def infer(self, p, ins, refs, names):
        c, _, _ = check_spatial(ins[0], self.name)
        (kh, kw), (ph, pw) = pair(p["kernel"]), pair(p["padding"])
        if 2 * ph > kh or 2 * pw > kw:
            raise ShapeError(f"padding {_side(p['padding'])} is more than half the {kh}x{kw} window", param="padding", code="E405")
        oh, ow = slide(ins[0], p["kernel"], p.get("stride", p["kernel"]), p["padding"], ceil_mode=p["ceil_mode"])
        return (c, oh, ow)

    def torch_module(self, p, ins):
        if self._sized_by_input(p):
            return None
        return call(self.torch_class, [code(p["kernel"])], self._keywords(p))

    def torch_call(self, p, args, module, refs):
        if module is not None:
            return f"{module}({args[0]})"
        # a window sized by the block's input ($in_height): computed in forward, as the
        # input arrives, so the model runs at any input size
        window = call("", [code(p["kernel"])], self._keywords(p))[1:-1]
        return f"{self.torch_function}({args[0]}, {window})"

    def _keywords(self, p):
        keywords = [("stride", code(p["stride"]), code(p["kernel"]))] if "stride" in p else []
        return keywords + [("padding", code(p["padding"]), 0), ("ceil_mode", p["ceil_mode"], False)]

    @staticmethod
    def _sized_by_input(p) -> bool:
        return any(variables(p[k]) & {"in_height", "in_width"} for k in ("kernel", "stride", "padding") if k in p)


def _side(v) -> str:
    """A padding as written: 1, or [0, 1]."""
    return str(v) if not isinstance(v, (list, tuple)) else f"[{v[0]}, {v[1]}]"


@dataclass
class MaxPool(_Pool):
    name: str = "maxpool"
    summary: str = "Max pooling (nn.MaxPool2d). `stride` defaults to the kernel size."
    torch_class: str = "nn.MaxPool2d"
    torch_function: str = "F.max_pool2d"

    # memory: max_pool2d_with_indices saves its input and the int64 index of every maximum.
    def saved(self, p, ins, out, device):
        return [Saved("in0"), Saved("new", out[0] * out[1] * out[2], "int64")]


@dataclass
class AvgPool(_Pool):
    name: str = "avgpool"
    summary: str = "Average pooling (nn.AvgPool2d). `stride` defaults to the kernel size."
    torch_class: str = "nn.AvgPool2d"
    torch_function: str = "F.avg_pool2d"

    # memory: avg_pool2d_backward takes the input tensor (for its geometry).
    def saved(self, p, ins, out, device):
        return [Saved("in0")]

    def __post_init__(self):
        super().__post_init__()
        self.params["count_include_pad"] = {"type": "boolean", "default": True,
                                            "description": "divide by the whole window, padding included; false divides by the input pixels it covers"}

    def _keywords(self, p):
        return super()._keywords(p) + [("count_include_pad", p["count_include_pad"], True)]


KEEP_MAP = {"type": "boolean", "default": False,
            "description": "keep a (C, 1, 1) map, to gate a map by multiplying (squeeze-and-excitation), instead of a vector"}


@dataclass
class _GlobalPool(Block):
    family: str = "pooling"
    torch_class: str = ""
    label_keys: tuple = ("keep_map",)

    def __post_init__(self):
        self.params = {"keep_map": KEEP_MAP}

    def infer(self, p, ins, refs, names):
        c, _, _ = check_spatial(ins[0], self.name)
        return (c, 1, 1) if p["keep_map"] else (c,)

    def torch_module(self, p, ins):
        if p["keep_map"]:
            return f"{self.torch_class}(1)"
        return f"nn.Sequential({self.torch_class}(1), nn.Flatten())"

    def label(self, p):
        return "keep_map" if p["keep_map"] else ""


@dataclass
class GlobalAvgPool(_GlobalPool):
    name: str = "global_avgpool"
    summary: str = "Average over H x W: a (C, H, W) map becomes a vector of C, or a (C, 1, 1) map with `keep_map`."
    torch_class: str = "nn.AdaptiveAvgPool2d"

    # memory: an adaptive pool to 1x1 runs as mean(), whose backward needs only sizes; the
    # flatten of its (B, C, 1, 1) output is a view. Nothing is saved.
    def saved(self, p, ins, out, device):
        return []


@dataclass
class GlobalMaxPool(_GlobalPool):
    name: str = "global_maxpool"
    summary: str = "Maximum over H x W: a (C, H, W) map becomes a vector of C, or a (C, 1, 1) map with `keep_map`."
    torch_class: str = "nn.AdaptiveMaxPool2d"

    # memory: adaptive_max_pool2d saves its input and the int64 index of each channel's maximum.
    def saved(self, p, ins, out, device):
        return [Saved("in0"), Saved("new", ins[0][0], "int64")]


@dataclass
class Upsample(Block):
    name: str = "upsample"
    family: str = "pooling"
    summary: str = "Resize a map, to the H x W of another node (`size_of`) or by an integer `scale`."
    refs: tuple = ("size_of",)
    label_keys: tuple = ("mode", "scale")
    example_params: dict = field(default_factory=lambda: {"scale": 2, "mode": "bilinear"})

    def __post_init__(self):
        self.params = {
            "mode": {"enum": ["nearest", "bilinear"], "default": "nearest", "description": "interpolation (bilinear uses align_corners=False)"},
            "size_of": {"type": "string", "pattern": IDENTIFIER, "description": "a node (or `input`) whose H x W to match"},
            "scale": POSITIVE | {"description": "integer scale factor"},
        }

    def infer(self, p, ins, refs, names):
        c, h, w = check_spatial(ins[0], self.name)
        if "size_of" in p and "scale" in p:
            raise ShapeError("give one of 'size_of' or 'scale', not both", code="E406")
        if "size_of" not in p and "scale" not in p:
            raise ShapeError("give 'size_of' (a node whose H x W to match) or 'scale' (an integer factor)", code="E406")
        if "scale" in p:
            return (c, h * p["scale"], w * p["scale"])
        target = check_spatial(refs["size_of"], "upsample's size_of")
        return (c, target[1], target[2])

    def torch_module(self, p, ins):
        return None

    def torch_call(self, p, args, module, refs):
        mode = f"mode={literal(p['mode'])}" + (", align_corners=False" if p["mode"] == "bilinear" else "")
        if "scale" in p:
            return f"F.interpolate({args[0]}, scale_factor={literal(p['scale'])}, {mode})"
        return f"F.interpolate({args[0]}, size={refs['size_of']}.shape[-2:], {mode})"

    # memory: nearest and bilinear backward need only sizes; nothing is saved.
    def saved(self, p, ins, out, device):
        return []


@dataclass
class ChannelPool(Block):
    name: str = "channel_pool"
    family: str = "pooling"
    summary: str = ("Mean or maximum over the channels at each pixel: a (C, H, W) map becomes (1, H, W), "
                    "as CBAM's spatial attention reads its input.")
    label_keys: tuple = ("op",)
    example_params: dict = field(default_factory=lambda: {"op": "max"})

    def __post_init__(self):
        self.params = {"op": {"enum": ["mean", "max"], "default": "mean", "description": "what each pixel's channels become"}}

    def infer(self, p, ins, refs, names):
        _, h, w = check_spatial(ins[0], self.name)
        return (1, h, w)

    def torch_module(self, p, ins):
        return None

    def torch_call(self, p, args, module, refs):
        return f"{args[0]}.{'amax' if p['op'] == 'max' else 'mean'}(dim=1, keepdim=True)"

    # memory: mean's backward needs only sizes; amax's compares its input with its output to
    # share the gradient among the maxima, so it saves both.
    def saved(self, p, ins, out, device):
        return [Saved("in0"), Saved("out")] if p["op"] == "max" else []


@dataclass
class AdaptiveAvgPool(Block):
    name: str = "adaptive_avgpool"
    family: str = "pooling"
    summary: str = ("Average into a fixed H x W whatever the input's (nn.AdaptiveAvgPool2d): VGG's and AlexNet's "
                    "pool before the classifier, so that its head fits any input size.")
    required: tuple = ("size",)
    label_keys: tuple = ("size",)
    example_params: dict = field(default_factory=lambda: {"size": [2, 3]})

    def __post_init__(self):
        self.params = {"size": int_or_pair(1, None, "output height and width: one integer, or [height, width]")}

    def infer(self, p, ins, refs, names):
        c, _, _ = check_spatial(ins[0], self.name)
        oh, ow = pair(p["size"])
        return (c, oh, ow)

    def torch_module(self, p, ins):
        return call("nn.AdaptiveAvgPool2d", [code(p["size"])], [])

    # memory: to a 1 x 1 map it runs as mean(), which saves nothing; otherwise its backward
    # takes the input tensor.
    def saved(self, p, ins, out, device):
        return [] if tuple(out[1:]) == (1, 1) else [Saved("in0")]


@dataclass
class _Shuffle(Block):
    """pixel_shuffle and pixel_unshuffle: F.<name>(x, factor), reshapes and a permute."""

    family: str = "pooling"
    required: tuple = ("factor",)
    label_keys: tuple = ("factor",)
    example_params: dict = field(default_factory=lambda: {"factor": 2})
    factor_text: str = ""

    def __post_init__(self):
        self.params = {"factor": POSITIVE | {"description": self.factor_text}}

    def torch_call(self, p, args, module, refs):
        return f"F.{self.name}({args[0]}, {literal(p['factor'])})"

    # memory: a reshape and a permute (its copy is its output); nothing is saved.
    def saved(self, p, ins, out, device):
        return []


@dataclass
class PixelShuffle(_Shuffle):
    name: str = "pixel_shuffle"
    summary: str = ("Trade channels for resolution: (C x r^2, H, W) becomes (C, H x r, W x r), as nn.PixelShuffle "
                    "(sub-pixel convolution, ESPCN's and many decoders' learned upsampling).")
    factor_text: str = "r: the height and width grow r times, the channels shrink r^2 times"

    def infer(self, p, ins, refs, names):
        c, h, w = check_spatial(ins[0], self.name)
        r = p["factor"]
        if c % (r * r):
            raise ShapeError(f"factor {r} needs channels divisible by {r * r}, but the input has {c}", param="factor", code="E413")
        return (c // (r * r), h * r, w * r)


@dataclass
class PixelUnshuffle(_Shuffle):
    name: str = "pixel_unshuffle"
    summary: str = ("Trade resolution for channels: (C, H x r, W x r) becomes (C x r^2, H, W), as nn.PixelUnshuffle "
                    "(space-to-depth: a lossless stem, as YOLOv5's Focus up to a channel order, or a downsampling that keeps every pixel).")
    factor_text: str = "r: the height and width shrink r times, the channels grow r^2 times"

    def infer(self, p, ins, refs, names):
        c, h, w = check_spatial(ins[0], self.name)
        r = p["factor"]
        if h % r or w % r:
            raise ShapeError(f"factor {r} must divide the input's height and width, but it is {h}x{w}", param="factor", code="E413")
        return (c * r * r, h // r, w // r)


PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def sides(v) -> tuple:
    """(top, bottom, left, right) of `pad`: one integer, [height, width] or the four sides."""
    if isinstance(v, (list, tuple)) or isinstance(getattr(v, "value", None), (list, tuple)):
        parts = items(v)
        return (parts[0], parts[0], parts[1], parts[1]) if len(parts) == 2 else tuple(parts)
    return (v, v, v, v)


@dataclass
class Pad(Block):
    name: str = "pad"
    family: str = "pooling"
    summary: str = ("Pad a map's sides: with zeros (Keras' ZeroPadding2D, an asymmetric pad before a strided conv), "
                    "or by reflecting, repeating or wrapping its edges (nn.ReflectionPad2d, as image-to-image generators do).")
    required: tuple = ("pad",)
    label_keys: tuple = ("pad", "mode")
    example_params: dict = field(default_factory=lambda: {"pad": [0, 1, 0, 1]})

    def __post_init__(self):
        side = {"type": "integer", "minimum": 0}
        self.params = {
            "pad": {
                "oneOf": [side, {"type": "array", "items": side, "minItems": 2, "maxItems": 2, "description": "[height, width]"},
                          {"type": "array", "items": side, "minItems": 4, "maxItems": 4, "description": "[top, bottom, left, right]"}],
                "x-expected": "an integer >= 0, a pair [height, width] or four sides [top, bottom, left, right] of them",
                "description": "pixels added: one integer for every side, [height, width] for top and bottom, left and right, "
                               "or [top, bottom, left, right] (note: F.pad's own order is left, right, top, bottom)",
            },
            "mode": {"enum": list(PAD_MODES), "default": "zeros",
                     "description": "zeros; reflect (the edge pixel not repeated, as nn.ReflectionPad2d); replicate (the edge pixel "
                                    "repeated); circular (the opposite edge's pixels, as a torus)"},
        }

    def infer(self, p, ins, refs, names):
        c, h, w = check_spatial(ins[0], self.name)
        top, bottom, left, right = (int(getattr(x, "value", x)) for x in sides(p["pad"]))
        mode = p["mode"]
        for axis, size, a, b in (("height", h, top, bottom), ("width", w, left, right)):
            # PyTorch's own limits: reflect mirrors inside the map, so it needs a pixel beyond
            # each pad; circular wraps at most once around
            if mode == "reflect" and max(a, b) >= size:
                raise ShapeError(f"reflect padding of {max(a, b)} needs a {axis} above {max(a, b)}, but the input's is {size}; "
                                 "use replicate or zeros, or pad less", param="pad", code="E409")
            if mode == "circular" and max(a, b) > size:
                raise ShapeError(f"circular padding of {max(a, b)} wraps around the {axis} ({size}) more than once; pad at most {size}",
                                 param="pad", code="E409")
        return (c, h + top + bottom, w + left + right)

    def torch_call(self, p, args, module, refs):
        top, bottom, left, right = sides(p["pad"])
        if p["mode"] == "replicate":
            return f"replicate_pad({args[0]}, {literal((left, right, top, bottom))})"
        mode = "" if p["mode"] == "zeros" else f", mode={literal(PAD_MODES[p['mode']])}"
        return f"F.pad({args[0]}, {literal((left, right, top, bottom))}{mode})"

    def torch_helpers(self):
        return {"replicate_pad": REPLICATE_PAD}

    # memory: a constant pad's backward slices the gradient and circular's is built of slices
    # and a cat, needing only sizes; reflect keeps its input (derivatives.yaml), which CPU
    # autocast casts to fp32 first (reflection_pad2d is on its fp32 list, not on CUDA's); the
    # replicate helper's indexing keeps its two index vectors.
    def saved(self, p, ins, out, device):
        if p["mode"] == "reflect":
            return [Saved("in0", dtype="fp32" if self.runs_in_fp32(p, device) else "")]
        if p["mode"] == "replicate":
            return [Saved("new", out[1], "int64", batched=False), Saved("new", out[2], "int64", batched=False)]
        return []

    def runs_in_fp32(self, p, device):
        return device == "cpu" and p["mode"] == "reflect"


# F.pad's replicate mode, written as indexing: torch.compile cannot differentiate PyTorch's own
# (inductor's replication_pad2d_backward fails its stride assertion, torch 2.14).
REPLICATE_PAD = '''def replicate_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """F.pad(x, pad, mode="replicate"), pad as (left, right, top, bottom): each edge pixel repeated outwards."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    rows = torch.arange(-top, h + bottom, device=x.device).clamp(0, h - 1)
    cols = torch.arange(-left, w + right, device=x.device).clamp(0, w - 1)
    return x[..., rows[:, None], cols]'''


BLOCKS = [MaxPool(), AvgPool(), GlobalAvgPool(), GlobalMaxPool(), AdaptiveAvgPool(), ChannelPool(), Upsample(), Pad(), PixelShuffle(), PixelUnshuffle()]
