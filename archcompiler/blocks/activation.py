"""Element-wise activations."""
from __future__ import annotations

from dataclasses import dataclass

from archcompiler.blocks.registry import Block

MODULES = {
    "relu": "nn.ReLU()",
    "relu6": "nn.ReLU6()",
    "gelu": "nn.GELU()",
    "silu": "nn.SiLU()",
    "sigmoid": "nn.Sigmoid()",
    "tanh": "nn.Tanh()",
}


@dataclass
class Activation(Block):
    name: str = "activation"
    family: str = "norm_act"
    summary: str = "An element-wise nonlinearity: relu, relu6, gelu, silu, sigmoid or tanh."
    label_keys: tuple = ("fn",)

    def __post_init__(self):
        self.params = {"fn": {"enum": sorted(MODULES), "default": "relu", "description": "the function"}}

    def torch_module(self, p, ins):
        return MODULES[p["fn"]]


BLOCKS = [Activation()]
