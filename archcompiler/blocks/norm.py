"""Normalisation, and the learned per-channel scale that residual blocks put after it."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from archcompiler.ir.expr import call, literal
from archcompiler.blocks.registry import Block, Saved, ShapeError, check_spatial

EPS = {"type": "number", "exclusiveMinimum": 0, "default": 1e-5, "description": "added to the variance"}
AFFINE = {"type": "boolean", "default": True, "description": "learn a per-channel weight and bias"}


@dataclass
class BatchNorm(Block):
    name: str = "batchnorm"
    family: str = "norm_act"
    summary: str = "Batch normalisation over channels (nn.BatchNorm2d; nn.BatchNorm1d on vectors)."

    def __post_init__(self):
        self.params = {
            "eps": EPS,
            "momentum": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.1, "description": "running-statistics momentum"},
            "affine": AFFINE,
            "track_running_stats": {"type": "boolean", "default": True,
                                    "description": "keep running mean and variance for eval; false normalises by the batch's statistics in eval too"},
        }

    def param_count(self, p, ins, out):
        return 2 * ins[0][0] if p["affine"] else 0  # running stats are buffers, not parameters

    def torch_module(self, p, ins):
        cls = "nn.BatchNorm2d" if len(ins[0]) == 3 else "nn.BatchNorm1d"
        return call(cls, [ins[0][0]], [("eps", p["eps"], 1e-5), ("momentum", p["momentum"], 0.1),
                                       ("affine", p["affine"], True), ("track_running_stats", p["track_running_stats"], True)])

    # memory: native_batch_norm saves its input and the batch's mean and 1/std (fp32, one per
    # channel); the weight and running statistics it also saves are the module's own.
    def saved(self, p, ins, out, device):
        c = ins[0][0]
        return [Saved("in0"), Saved("new", c, "fp32", batched=False), Saved("new", c, "fp32", batched=False)]


def _fp32_on(device: str) -> str:
    """The dtype of what layer and group norm save: CUDA's autocast casts their input to fp32."""
    return "fp32" if device == "cuda" else ""


# ConvNeXt's LayerNorm2d (torchvision.models.convnext): nn.LayerNorm over the channels of each
# pixel, by moving channels last and back. nn.GroupNorm(1, C) is not the same: it normalises
# over C, H and W together.
LAYER_NORM_2D = '''class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of a (B, C, H, W) map, as ConvNeXt's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)'''


@dataclass
class LayerNorm(Block):
    name: str = "layernorm"
    family: str = "norm_act"
    summary: str = ("Layer normalisation over channels: at each pixel of a map, channels-first as ConvNeXt's "
                    "LayerNorm2d; over the features of a vector (nn.LayerNorm).")
    label_keys: tuple = ("eps",)
    example_params: dict = field(default_factory=lambda: {"eps": 1e-6})


    # memory: native_layer_norm saves its input (a permuted view of it, for a map) and the
    # mean and 1/std of each normalised position (fp32). CUDA's autocast runs it in fp32, on a
    # cast copy of a bf16 input (its fp32 list; CPU's keeps bf16).
    def saved(self, p, ins, out, device):
        positions = prod(ins[0][1:]) if len(ins[0]) == 3 else 1
        return [Saved("in0", dtype=_fp32_on(device)), Saved("new", positions, "fp32"), Saved("new", positions, "fp32")]

    def runs_in_fp32(self, p, device):
        return device == "cuda"

    def __post_init__(self):
        self.params = {"eps": EPS, "affine": AFFINE}

    def param_count(self, p, ins, out):
        return 2 * ins[0][0] if p["affine"] else 0

    def torch_module(self, p, ins):
        cls = "LayerNorm2d" if len(ins[0]) == 3 else "nn.LayerNorm"
        return call(cls, [ins[0][0]], [("eps", p["eps"], 1e-5), ("elementwise_affine", p["affine"], True)])

    def torch_helpers(self):
        return {"LayerNorm2d": LAYER_NORM_2D}


@dataclass
class GroupNorm(Block):
    name: str = "groupnorm"
    family: str = "norm_act"
    summary: str = "Group normalisation: channels split into `groups`, each normalised over its channels and H x W (nn.GroupNorm)."
    required: tuple = ("groups",)
    label_keys: tuple = ("groups",)
    example_params: dict = field(default_factory=lambda: {"groups": 4})


    # memory: native_group_norm saves its input and the mean and 1/std of each group (fp32);
    # on CUDA under autocast, as layernorm, an fp32 copy of its input.
    def saved(self, p, ins, out, device):
        return [Saved("in0", dtype=_fp32_on(device)), Saved("new", p["groups"], "fp32"), Saved("new", p["groups"], "fp32")]

    def runs_in_fp32(self, p, device):
        return device == "cuda"

    def __post_init__(self):
        self.params = {
            "groups": {"type": "integer", "minimum": 1, "description": "number of groups; must divide the channels"},
            "eps": EPS,
            "affine": AFFINE,
        }

    def infer(self, p, ins, refs, names):
        if ins[0][0] % p["groups"]:
            raise ShapeError(f"groups={p['groups']} must divide the input channels ({ins[0][0]})", param="groups", code="E402")
        return ins[0]

    def param_count(self, p, ins, out):
        return 2 * ins[0][0] if p["affine"] else 0

    def torch_module(self, p, ins):
        return call("nn.GroupNorm", [p["groups"], ins[0][0]], [("eps", p["eps"], 1e-5), ("affine", p["affine"], True)])


# A bare parameter, as ConvNeXt's CNBlock keeps it (`layer_scale * block(x)`), in a module of
# its own so that the spec's node name is its state_dict prefix.
LAYER_SCALE = '''class LayerScale(nn.Module):
    """A learned per-channel scale, initialised to `init` (ConvNeXt's layer scale)."""

    def __init__(self, channels: int, init: float, spatial: bool = True):
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels, 1, 1) if spatial else (channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale'''


@dataclass
class LayerScale(Block):
    name: str = "layer_scale"
    family: str = "norm_act"
    summary: str = "Multiply each channel by a learned scale, initialised to `init` (ConvNeXt's layer scale); C parameters, no FLOPs."
    label_keys: tuple = ("init",)
    example_params: dict = field(default_factory=lambda: {"init": 0.5})


    # memory: `x * scale` saves x (the scale is the module's own parameter).
    def saved(self, p, ins, out, device):
        return [Saved("in0")]

    def __post_init__(self):
        self.params = {"init": {"type": "number", "default": 1e-6, "description": "initial value of every channel's scale"}}

    def param_count(self, p, ins, out):
        return ins[0][0]

    def torch_module(self, p, ins):
        spatial = [] if len(ins[0]) == 3 else ["spatial=False"]
        return f"LayerScale({', '.join([literal(ins[0][0]), literal(p['init']), *spatial])})"

    def torch_helpers(self):
        return {"LayerScale": LAYER_SCALE}


# ConvNeXt V2's global response normalisation, channels first, with timm's parameter names
# (timm.layers.GlobalResponseNorm: `weight` and `bias` of C, both starting at zero).
GRN = '''class GRN(nn.Module):
    """Global response normalisation (ConvNeXt V2): x + weight * (x * n) + bias, where n is each channel's L2 norm
    over H x W divided by the mean of those norms over the channels. It starts as the identity."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.linalg.vector_norm(x, dim=(2, 3), keepdim=True)
        n = g / (g.mean(dim=1, keepdim=True) + self.eps)
        return x + torch.addcmul(self.bias.view(1, -1, 1, 1), self.weight.view(1, -1, 1, 1), x * n)'''


@dataclass
class GlobalResponseNorm(Block):
    name: str = "grn"
    family: str = "norm_act"
    summary: str = ("Global response normalisation (ConvNeXt V2): each channel's L2 norm over H x W, divided by the "
                    "channels' mean norm, rescales the map; 2C parameters, starting as the identity.")
    label_keys: tuple = ("eps",)

    def __post_init__(self):
        self.params = {"eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-6, "description": "added to the mean norm"}}

    def infer(self, p, ins, refs, names):
        return check_spatial(ins[0], self.name)

    def param_count(self, p, ins, out):
        return 2 * ins[0][0]

    def torch_module(self, p, ins):
        return call("GRN", [ins[0][0]], [("eps", p["eps"], 1e-6)])

    def torch_helpers(self):
        return {"GRN": GRN}

    # memory: the norm saves x and each channel's norm g; the division saves g (already
    # counted) and the one mean norm per image; `x * n` saves x and n; addcmul saves x * n.
    def saved(self, p, ins, out, device):
        c, h, w = ins[0]
        return [Saved("in0"), Saved("new", c), Saved("new", 1), Saved("new", c), Saved("new", c * h * w)]


BLOCKS = [BatchNorm(), LayerNorm(), GroupNorm(), LayerScale(), GlobalResponseNorm()]
