"""Element-wise activations."""
from __future__ import annotations

from dataclasses import dataclass

from archcompiler.blocks.registry import Block, Saved
from archcompiler.ir.expr import is_symbolic, literal

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
        if is_symbolic(p["fn"]):  # a block parameter: chosen when the block is built
            return f"activation({literal(p['fn'])})"
        return MODULES[p["fn"]]

    def torch_helpers(self):
        table = ", ".join(f'"{k}": {v[:-2]}' for k, v in sorted(MODULES.items()))
        return {"activation": f'''def activation(fn: str) -> nn.Module:
    """The activation module named `fn`."""
    return {{{table}}}[fn]()'''}

    # memory: relu, sigmoid and tanh differentiate from their output; the others (hardtanh
    # for relu6, gelu, silu) from their input.
    def saved(self, p, ins, out, device):
        return [Saved("out" if p["fn"] in ("relu", "sigmoid", "tanh") else "in0")]


BLOCKS = [Activation()]
