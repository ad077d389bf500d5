"""Step time from the spec: a roofline over the layers of one step (`archc bench --predict`).

Each primitive costs the longer of its FLOPs at the device's peak FLOP/s and its bytes moved
at the device's memory bandwidth (both measured by runtime/bench/peak.py); a step is the sum
over its layers, forward then backward, plus the optimizer's update. Bytes moved are each
tensor read or written once: a layer's inputs, output and weights in the forward; in the
backward its output's gradient and its saved inputs read, its inputs' gradients written, its
weights read and their gradients written. That is a lower bound on the time, as rooflines
are: kernels below the peak, caches that miss and the framework's overhead per op are what
the ratio measured/predicted shows. torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

from archcompiler.blocks.registry import Registry
from archcompiler.ir.graph import INPUT, Graph
from archcompiler.passes.memory import BYTES, LOW, OPTIMIZERS, flatten


@dataclass
class Cost:
    name: str  # the primitive, qualified ("res1.conv1"), or "optimizer"
    flops: int
    bytes: int

    def seconds(self, flops_per_s: float, bytes_per_s: float) -> float:
        return max(self.flops / flops_per_s, self.bytes / bytes_per_s)


def step_costs(graph: Graph, registry: Registry, batch: int, mode: str = "train", amp: str = "off",
               optimizer: str = "sgd") -> list[Cost]:
    """FLOPs and bytes moved per primitive of one step (forward, and backward for train)."""
    ops = flatten(graph, registry)
    shape = {INPUT: graph.input.shape, **{op.name: op.node.shape for op in ops}}
    act = BYTES[LOW] if amp != "off" else BYTES["fp32"]
    needs = {INPUT: False}
    costs = []
    for op in ops:
        needs[op.name] = any(needs[i] for i in op.inputs) or op.node.meta["params"] > 0
        if op.block.view:
            continue
        ins = sum(prod(shape[i]) for i in op.inputs) * batch * act
        out = prod(op.node.shape) * batch * act
        weights = op.node.meta["params"] * (act if op.block.autocast_low else BYTES["fp32"])
        flops = op.node.meta["flops"] * batch
        costs.append(Cost(op.name, flops, ins + out + weights))
        if mode == "train":
            grad_in = any(needs[i] for i in op.inputs)
            back_flops = flops + (flops if grad_in else 0)  # weight gradient, then input gradient
            back_bytes = out + ins + (ins if grad_in else 0) + weights + BYTES["fp32"] * op.node.meta["params"]
            costs.append(Cost(op.name + " (backward)", back_flops, back_bytes))
    if mode == "train":
        params = sum(n.meta["params"] for n in graph.primitives())
        costs.append(Cost("optimizer", 0, OPTIMIZERS[optimizer].update_traffic * BYTES["fp32"] * params))
    return costs


def predict_seconds(costs: list[Cost], flops_per_s: float, bytes_per_s: float) -> tuple[float, float]:
    """(seconds of the step, the share of them spent in layers bound by compute)."""
    total = bound = 0.0
    for c in costs:
        t = c.seconds(flops_per_s, bytes_per_s)
        total += t
        if c.flops / flops_per_s >= c.bytes / bytes_per_s:
            bound += t
    return total, (bound / total if total else 0.0)
