"""Normalisation."""
from __future__ import annotations

from dataclasses import dataclass

from archcompiler.ir.expr import call
from archcompiler.blocks.registry import Block, Saved


@dataclass
class BatchNorm(Block):
    name: str = "batchnorm"
    family: str = "norm_act"
    summary: str = "Batch normalisation over channels (nn.BatchNorm2d; nn.BatchNorm1d on vectors)."

    def __post_init__(self):
        self.params = {
            "eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-5, "description": "added to the variance"},
            "momentum": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.1, "description": "running-statistics momentum"},
        }

    def param_count(self, p, ins, out):
        return 2 * ins[0][0]  # weight and bias; running stats are buffers, not parameters

    def torch_module(self, p, ins):
        cls = "nn.BatchNorm2d" if len(ins[0]) == 3 else "nn.BatchNorm1d"
        return call(cls, [ins[0][0]], [("eps", p["eps"], 1e-5), ("momentum", p["momentum"], 0.1)])

    # memory: native_batch_norm saves its input and the batch's mean and 1/std (fp32, one per
    # channel); the weight and running statistics it also saves are the module's own.
    def saved(self, p, ins, out, device):
        c = ins[0][0]
        return [Saved("in0"), Saved("new", c, "fp32", batched=False), Saved("new", c, "fp32", batched=False)]


BLOCKS = [BatchNorm()]
