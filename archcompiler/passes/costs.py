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
        elif node.kind == "part":  # an output of a composite that computed it: counted there
            cost = dict.fromkeys(COSTS, 0)
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


def train_flops(graph: Graph) -> int:
    """FLOPs per image of one training step's forward and backward, from an annotated graph.

    The backward of a convolution or matrix multiply costs its forward twice over: once for
    the gradient of the weight and once for the gradient of its input. The input gradient is
    not computed where the input does not require grad, which is the case for a layer that
    reads the model's input directly or only through parameter-free layers (a max pool). This
    is what FlopCounterMode counts for a forward and backward, except for grouped convolutions,
    whose weight gradient FlopCounterMode counts `groups` times over (its convolution_backward
    formula ignores groups); here it is counted once, as the arithmetic is done once.
    """
    fwd, bwd = _train_flops(graph, {"input": False})
    return fwd + bwd


def _train_flops(graph: Graph, needs_grad: dict[str, bool]) -> tuple[int, int]:
    """(forward, backward) FLOPs of `graph`; `needs_grad` says which nodes' outputs require
    grad, given for the input and filled in here for every layer."""
    fwd = bwd = 0
    for node in graph.layers():
        grad_in = any(needs_grad[i] for i in node.inputs)
        if node.body is not None:
            f, b = _train_flops(node.body, {n: needs_grad[i] for n, i in zip(node.body.inputs, node.inputs)})
            fwd, bwd = fwd + f, bwd + b
            needs_grad[node.name] = grad_in or node.meta["params"] > 0
            continue
        if node.kind == "part":  # its composite's output, computed there (grad as the composite's)
            needs_grad[node.name] = grad_in
            continue
        flops = node.meta["flops"]
        fwd += flops
        if flops:
            bwd += flops + (flops if grad_in else 0)  # weight gradient, then input gradient
        needs_grad[node.name] = grad_in or node.meta["params"] > 0
    return fwd, bwd
