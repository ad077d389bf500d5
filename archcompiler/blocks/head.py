"""Classifier-head blocks (dropout, flatten, affine), and stochastic depth beside dropout."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from archcompiler.ir.expr import call
from archcompiler.blocks.registry import Block, Saved, ShapeError, check_spatial


@dataclass
class Dropout(Block):
    name: str = "dropout"
    family: str = "head"
    summary: str = "Zero each element with probability `p` while training (nn.Dropout)."
    label_keys: tuple = ("p",)

    def __post_init__(self):
        self.params = {"p": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.5, "description": "drop probability"}}

    def torch_module(self, p, ins):
        return call("nn.Dropout", [p["p"]], [])

    # memory: on CUDA the fused native_dropout saves a bool mask; elsewhere dropout is
    # `input * noise` with a scaled noise tensor in the input's dtype, and the product saves it.
    def saved(self, p, ins, out, device):
        return [Saved("new", prod(ins[0]), "bool" if device == "cuda" else "")]


# Stochastic depth, written out so that the emitted file needs only torch. It draws its mask
# exactly as torchvision.ops.stochastic_depth(mode="row") does (one Bernoulli per sample from
# the global RNG, then divided by the survival rate), so the same seed drops the same samples.
DROP_PATH = '''class DropPath(nn.Module):
    """Stochastic depth: in training, zero each sample's whole input with probability p and
    scale the others by 1 / (1 - p); the identity in eval."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(survival)
        return x * noise.div_(survival)'''


@dataclass
class DropPath(Block):
    name: str = "drop_path"
    family: str = "head"
    summary: str = ("Stochastic depth for a residual branch: while training, zero a whole sample with probability `p` "
                    "and scale the rest by 1 / (1 - p) (torchvision's StochasticDepth, mode 'row'); the identity in eval.")
    required: tuple = ("p",)
    label_keys: tuple = ("p",)
    example_params: dict = field(default_factory=lambda: {"p": 0.1})


    # memory: `x * mask` saves the per-sample mask, one scalar per image.
    def saved(self, p, ins, out, device):
        return [Saved("new", 1)]

    def __post_init__(self):
        self.params = {"p": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "probability of dropping a sample's branch"}}

    def torch_module(self, p, ins):
        return call("DropPath", [p["p"]], [])

    def torch_helpers(self):
        return {"DropPath": DROP_PATH}


@dataclass
class Flatten(Block):
    name: str = "flatten"
    family: str = "head"
    summary: str = "A (C, H, W) map becomes a vector of C*H*W."

    def infer(self, p, ins, refs, names):
        c, h, w = check_spatial(ins[0], self.name)
        return (c * h * w,)

    def torch_module(self, p, ins):
        return "nn.Flatten()"

    # memory: a view of its (contiguous) input; nothing is saved.
    view: bool = True

    def saved(self, p, ins, out, device):
        return []


@dataclass
class Affine(Block):
    name: str = "affine"
    family: str = "head"
    summary: str = "Fully connected layer on a vector (nn.Linear)."
    required: tuple = ("out",)
    label_keys: tuple = ("out",)
    example_inputs: tuple = ((16,),)
    example_params: dict = field(default_factory=lambda: {"out": 4})

    def __post_init__(self):
        self.params = {
            "out": {"type": "integer", "minimum": 1, "description": "output features"},
            "bias": {"type": "boolean", "default": True, "description": "add a learned bias"},
        }

    def infer(self, p, ins, refs, names):
        if len(ins[0]) != 1:
            raise ShapeError("affine needs a vector; put 'global_avgpool' or 'flatten' before it", code="E401")
        return (p["out"],)

    def param_count(self, p, ins, out):
        return ins[0][0] * out[0] + (out[0] if p["bias"] else 0)

    def flops(self, p, ins, out):
        return 2 * ins[0][0] * out[0]

    def torch_module(self, p, ins):
        return call("nn.Linear", [ins[0][0], p["out"]], [("bias", p["bias"], True)])

    # memory: addmm saves the input and the weight (bf16 copies of both under autocast).
    autocast_low: bool = True

    def saved(self, p, ins, out, device):
        return [Saved("in0", dtype="low"), Saved("param", ins[0][0] * out[0], dtype="low")]


BLOCKS = [Dropout(), DropPath(), Flatten(), Affine()]
