"""Costs per layer and in total: parameters, forward FLOPs and activation bytes.

FLOPs count a multiply-add as 2 and count exactly what torch.utils.flop_counter.FlopCounterMode
counts: convolutions and matrix multiplies (no bias adds, no element-wise ops), at batch 1.
Activation bytes are the fp32 outputs a layer materialises at batch 1; for a composite, the
sum over its body, which is what a training step keeps alive for the backward pass.
"""
from __future__ import annotations

from math import prod

from archcompiler.blocks.registry import Registry
from archcompiler.ir.graph import Graph

BYTES_FP32 = 4
COSTS = ("params", "flops", "activation_bytes")


def annotate_costs(graph: Graph, registry: Registry) -> dict:
    """Fill meta[params|flops|activation_bytes] on every node; return the graph's totals."""
    totals = dict.fromkeys(COSTS, 0)
    for node in graph.layers():
        if node.body is not None:
            cost = annotate_costs(node.body, registry)
        else:
            block = registry.get(node.type)
            ins = [graph.nodes[i].shape for i in node.inputs]
            out = node.shape
            cost = {
                "params": block.param_count(node.params, ins, out),
                "flops": block.flops(node.params, ins, out),
                "activation_bytes": BYTES_FP32 * prod(out),
            }
        node.meta.update(cost)
        for k in COSTS:
            totals[k] += cost[k]
    return totals
