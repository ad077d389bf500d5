"""Memory of a training step (or of a forward pass), predicted from the IR.

Each primitive's block type declares what autograd saves for its backward (`Block.saved`);
this pass resolves those declarations to storages, counts each storage once however many
ops save it, and replays one step's allocations and frees to find its peak. The model and
the reasoning per op are in docs/memory.md; tests/test_memory.py holds it to what PyTorch
actually saves. torch-free: `archc check` runs it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from archcompiler.blocks.registry import Registry
from archcompiler.ir.graph import INPUT, Graph, topological_order
from archcompiler.ir.walk import INPUT_VAR, walk
from runtime.vocab import AMP as AMPS  # noqa: F401 - check's --amp choices come from here
from runtime.vocab import OPTIMIZERS  # the optimizers' state and update sizes; imports no torch

BYTES = {"fp32": 4, "bf16": 2, "int64": 8, "bool": 1}
LOW = "bf16"  # the autocast dtype of --amp bf16

MODES = ("train", "infer")


@dataclass
class Op:
    """One primitive of the flattened graph, in execution order."""

    name: str  # qualified: "attn.trunk1.conv1"
    path: tuple  # the composite nodes it sits in, outermost first, then its own name
    block: object
    node: object
    inputs: list[str]  # qualified names of the ops (or "input") it reads


@dataclass
class Memory:
    """The `memory` object of `archc check --format json`; every *_bytes is an integer."""

    batch_size: int
    mode: str
    amp: str
    optimizer: str | None  # None for a forward pass
    params_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    saved_activations_bytes: int
    peak_bytes: int
    per_node: dict = field(default_factory=dict)  # qualified name (and every composite's) -> saved bytes

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "per_node"}


def flatten(graph: Graph, registry: Registry) -> list[Op]:
    """The primitives in the order the emitted forward runs them, composites expanded."""
    ops: list[Op] = []
    _flatten(graph, registry, {INPUT: INPUT}, (), ops)
    return ops


def _flatten(graph: Graph, registry: Registry, bound: dict, path: tuple, ops: list) -> list[str]:
    """Appends the graph's primitives to `ops`; returns the ops its outputs are (one, or a
    block's several)."""
    names = dict(bound)  # local name -> the qualified op whose output it is
    several = {}  # a composite with several outputs -> their ops, which its parts are
    for local in topological_order(graph):
        node = graph.nodes[local]
        if node.kind == "input":
            continue
        ins = [names[i] for i in node.inputs]
        if node.body is not None:
            several[local] = _flatten(node.body, registry, dict(zip(node.body.inputs, ins)), path + (local,), ops)
            names[local] = several[local][0]
            continue
        if node.kind == "part":
            names[local] = several[node.inputs[0]][node.meta["index"]]
            continue
        name = ".".join(path + (local,))
        ops.append(Op(name, path + (local,), registry.get(node.type), node, ins))
        names[local] = name
    return [names[o] for o in graph.results]


def predict(graph: Graph, registry: Registry, batch_size: int, mode: str = "train", optimizer: str = "sgd",
            amp: str = "off", device: str = "cpu") -> Memory:
    """Bytes of one step at `batch_size`; fills node.meta["saved_activations_bytes"] everywhere."""
    ops = flatten(graph, registry)
    shape = {INPUT: graph.input.shape, **{op.name: op.node.shape for op in ops}}
    params = sum(n.meta["params"] for n in graph.primitives())
    params_bytes = BYTES["fp32"] * params
    training = mode == "train"
    dtype = _dtypes(ops, amp, device)
    storage = {INPUT: INPUT}
    for op in ops:
        storage[op.name] = storage[op.inputs[0]] if op.block.view else op.name

    def nbytes(name: str) -> int:
        return batch_size * prod(shape[name]) * BYTES[dtype[name]]

    needs = _needs_grad(ops)
    saved, owner, savers = _saved(ops, shape, dtype, storage, batch_size, amp, device, needs) if training else ({}, {}, {})
    per_node = {}
    for key, size in saved.items():
        for i in range(1, len(owner[key]) + 1):
            prefix = ".".join(owner[key][:i])
            per_node[prefix] = per_node.get(prefix, 0) + size
    _annotate(graph, per_node, ())

    slots, temp = OPTIMIZERS[optimizer].state_slots, OPTIMIZERS[optimizer].update_temps
    opt_bytes = slots * params_bytes if training else 0
    base = params_bytes + opt_bytes + nbytes(INPUT) + (batch_size * BYTES["int64"] if training else 0)
    out = ops[-1].name if ops else INPUT
    # Autocast keeps the bf16 copy of each weight it casts until it exits; in training they
    # are saved tensors already, in a forward pass they pile up as it goes.
    casts = {op.name: BYTES[LOW] * op.node.meta["params"] for op in ops if op.block.autocast_low and amp != "off" and not training}
    fwd = _forward_peak(graph, ops, storage, saved, savers, nbytes, casts)
    if not training:
        peak = base + fwd
    else:
        largest = max((n.meta["params"] for n in graph.primitives()), default=0)
        fused = device == "cuda" and OPTIMIZERS[optimizer].fused  # one kernel, in place (runtime.vocab.make_optimizer)
        step_temp = 0 if fused else BYTES["fp32"] * (params if device == "cuda" and temp else temp * largest)
        logits = batch_size * prod(shape[out]) * BYTES["fp32"]
        bwd = _backward_peak(ops, shape, saved, savers, nbytes, dtype, logits, amp, batch_size, device, needs)
        peak = base + max(fwd + 2 * logits, bwd, params_bytes + step_temp)
    return Memory(batch_size, mode, amp, optimizer if training else None, params_bytes, params_bytes if training else 0, opt_bytes,
                  sum(saved.values()), peak, per_node)


def largest_batch(graph: Graph, registry: Registry, budget: int, mode: str = "train", optimizer: str = "sgd",
                  amp: str = "off", device: str = "cpu", cap: int = 1 << 16) -> tuple[int, Memory] | None:
    """The largest batch (at most `cap`) whose predicted peak fits in `budget` bytes, with its
    prediction; None when not even a batch of one fits. The peak grows with the batch, so a
    doubling search then a bisection finds it in a few dozen predictions."""
    # On the CPU oneDNN may reorder a convolution's input and output into blocked layouts while
    # it runs: transient copies the prediction leaves out, as they come for some shapes only
    # (docs/memory.md). The batch chosen here must fit even when they come, so it leaves room
    # for two copies of the largest convolution's input and output: one was too few for a
    # 3-channel conv at a very large batch, in a run on this project's machine (docs/memory.md).
    transient = largest_conv_copies(graph, registry, amp) if device == "cpu" else 0

    def fits(b):
        m = predict(graph, registry, b, mode, optimizer, amp, device)
        return m if m.peak_bytes + b * transient <= budget else None

    if fits(1) is None:
        return None
    lo, hi = 1, 2
    while hi <= cap and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, cap + 1)
    while hi - lo > 1:  # fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, fits(lo)


def largest_conv_copies(graph: Graph, registry: Registry, amp: str) -> int:
    """Bytes per image of two copies of the largest convolution's input and output together,
    in the dtype it computes in: the room CPU batch choices leave for oneDNN's reorders."""
    ops = flatten(graph, registry)
    shape = {INPUT: graph.input.shape, **{op.name: op.node.shape for op in ops}}
    size = BYTES[LOW if amp != "off" else "fp32"]
    return 2 * max((size * (prod(shape[op.inputs[0]]) + prod(op.node.shape)) for op in ops if op.block.name in ("conv", "conv_transpose")),
                   default=0)


def _dtypes(ops: list[Op], amp: str, device: str) -> dict:
    """Each output's dtype: fp32, or under autocast bf16 from conv and linear onwards (an op
    on mixed inputs promotes to fp32, as torch does, and one that autocast runs in fp32 on
    this device makes fp32)."""
    dtype = {INPUT: "fp32"}
    for op in ops:
        if amp == "off" or op.block.runs_in_fp32(op.node.params, device):
            dtype[op.name] = "fp32"
        elif op.block.autocast_low:
            dtype[op.name] = LOW
        else:
            dtype[op.name] = "fp32" if any(dtype[i] == "fp32" for i in op.inputs) else LOW
    return dtype


def _needs_grad(ops) -> dict:
    """Whether each value needs a gradient: the image does not; an op does when it has weights
    or an input that does. One that does not (a pad or a softmax straight on the image) makes
    no autograd node: it saves nothing and gets no gradient."""
    needs = {INPUT: False}
    for op in ops:
        needs[op.name] = op.node.meta["params"] > 0 or any(needs[i] for i in op.inputs)
    return needs


def _saved(ops, shape, dtype, storage, batch, amp, device, needs):
    """(storage key -> bytes, storage key -> owner path, storage key -> [op index that saves it]).
    A storage saved by several ops (a ReLU's output that the next conv saves as its input)
    is one entry, owned by the first op that saves it."""
    saved, owner, savers = {}, {}, {}
    for k, op in enumerate(ops):
        if not needs[op.name]:
            continue
        ins = [shape[i] for i in op.inputs]
        for j, s in enumerate(op.block.saved(op.node.params, ins, op.node.shape, device)):
            if s.of == "param":
                if amp == "off":
                    continue  # the weight itself: counted as a parameter
                key, size = (op.name, "weight"), s.elements * BYTES[LOW]
            elif s.of == "new":  # "low": made from the input, then cast by autocast where it is on (Conv2dSame's padded copy)
                kind = (LOW if amp != "off" else dtype[op.inputs[0]]) if s.dtype == "low" else s.dtype or dtype[op.name]
                key, size = (op.name, j), s.elements * (batch if s.batched else 1) * BYTES[kind]
            else:
                src = op.name if s.of == "out" else op.inputs[int(s.of[2:])]
                cast = {"low": LOW, "fp32": "fp32"}.get(s.dtype)
                if cast and amp != "off" and dtype[src] != cast:
                    key, size = (op.name, j), batch * prod(shape[src]) * BYTES[cast]  # autocast's copy
                else:  # the tensor itself, or a view of another's storage (a split part): autograd keeps the whole storage
                    key = storage[src]
                    size = batch * prod(shape[key]) * BYTES[dtype[key]]
            if key not in saved:
                saved[key], owner[key] = size, op.path
            savers.setdefault(key, []).append(k)
    return saved, owner, savers


def _forward_peak(graph: Graph, ops: list[Op], storage, saved, savers, nbytes, casts) -> int:
    """The most the forward holds above the step's base: what was saved so far, plus the
    outputs not saved that are still referenced. The emitted forward (backends/torch_source)
    keeps a chain in one variable `x`, so a value read last by the next op is freed when that
    op's output takes `x` over; any other value has a variable of its own and lives until its
    composite's forward returns. A composite's input is held by its caller throughout."""
    first = {}
    for key, idx in savers.items():
        first.setdefault(ops[idx[0]].name, []).append(key)
    state = {"held": 0, "live": {}, "peak": 0, "first": first, "saved": saved, "storage": storage, "nbytes": nbytes, "casts": casts}
    _forward_scope(graph, (), {INPUT: INPUT}, state)
    return state["peak"]


def _forward_scope(graph: Graph, path: tuple, given: dict, state: dict, chained: bool = False, release: str | None = None) -> list[str]:
    """Replays one frame; returns the ops its outputs are. A composite with several outputs
    holds no value of its own (None): its parts, unpacked from its call, do."""
    names = dict(given)  # each input -> the op whose output it is
    w = walk(graph)  # the emitted forward's order and variables: a node given `x` drops the value `x` held
    order = [n for n in topological_order(graph) if n not in graph.inputs]
    takes_x = {n for n, v in w.variables.items() if v == INPUT_VAR and n not in graph.inputs}
    holder, scoped = INPUT, []
    several = {}
    for local in order:
        node = graph.nodes[local]
        if node.body is not None:
            loop = node.kind == "repeat" and bool(node.body.outputs)  # `a, b = layer(a, b)` over the instances
            # the first instance's call rebinds the caller's `x` when it reads it last: gone after instance 0
            rebound = names[holder] if loop and local in takes_x and holder not in graph.inputs else None
            outs = _forward_scope(node.body, path + (local,), {n: names[i] for n, i in zip(node.body.inputs, node.inputs)}, state, loop, rebound)
            several[local] = outs
            out = outs[0] if len(outs) == 1 else None
        elif node.kind == "part":
            out = several[node.inputs[0]][node.meta["index"]]
            if out not in given.values() and _unsaved(out, state):
                state["live"][out] = state["storage"][out]  # a value the block passed through: this variable holds it too
            instance = graph.nodes[node.inputs[0]]
            if chained and node.meta["index"] == len(several[instance.name]) - 1:  # the loop rebinds: the last instance's outputs are gone
                for prev in instance.inputs:
                    if names[prev] not in several[instance.name] and prev not in graph.inputs:
                        state["live"].pop(names[prev], None)
                    elif prev in graph.inputs and names[prev] == release and release not in several[instance.name]:
                        state["live"].pop(release, None)  # the caller's variable the first call rebound
        else:
            out = ".".join(path + (local,))
            state["held"] += sum(state["saved"][key] for key in state["first"].get(out, [])) + state["casts"].get(out, 0)
            if _unsaved(out, state):
                state["live"][out] = state["storage"][out]  # a view (a split part) keeps its input's whole storage
            live = set(state["live"].values())  # each storage once, however many variables view it
            state["peak"] = max(state["peak"], state["held"] + sum(state["nbytes"](key) for key in live))
        names[local] = out
        if local in takes_x:
            if holder not in graph.inputs:
                state["live"].pop(names[holder], None)  # `x` rebound: the old value is gone
            holder = local
        else:
            scoped.append(local)
    returned = {names[o] for o in graph.results}
    for local in scoped + [holder]:
        if names[local] not in returned and local not in graph.inputs:
            state["live"].pop(names[local], None)  # the composite returned
    return [names[o] for o in graph.results]


def _unsaved(out: str, state: dict) -> bool:
    """Whether the storage `out` lives in is held only by variables: not saved for backward
    (which `held` counts) and not the batch (which the step's base counts)."""
    key = state["storage"][out]
    return key != INPUT and key not in state["saved"]


def _backward_peak(ops, shape, saved, savers, nbytes, dtype, logits, amp, batch, device, needs) -> int:
    """Replay the backward in reverse execution order: each op holds its output's gradient,
    makes its inputs' gradients and its weights' (kept to the end), and its saved tensors
    go once every op that saved them has run. Returns the peak above the base."""
    first_saver = {key: idx[0] for key, idx in savers.items()}
    held = sum(v for k, v in saved.items() if k != INPUT)  # the input batch is in the base
    grads = {ops[-1].name: logits} if ops else {}
    weights = peak = 0
    for k in range(len(ops) - 1, -1, -1):
        op = ops[k]
        made = {}
        # A view of all its input (flatten) passes its gradient on, reshaped; a part of it (a
        # split's narrow) makes a zero-filled gradient of the whole input around its own.
        reshaped = op.block.view and prod(shape[op.inputs[0]]) == prod(shape[op.name])
        for i in op.inputs:
            if needs[i] and not reshaped:
                made[i] = nbytes(i)
        wgrad = BYTES["fp32"] * op.node.meta["params"]
        scratch = batch * BYTES[dtype[op.name]] * op.block.workspace(op.node.params, [shape[i] for i in op.inputs], op.node.shape, device)
        if amp != "off" and op.block.autocast_low:
            wgrad += BYTES[LOW] * op.node.meta["params"]  # computed in bf16, then copied to the fp32 .grad
        peak = max(peak, held + sum(grads.values()) + sum(made.values()) + weights + wgrad + scratch)
        weights += BYTES["fp32"] * op.node.meta["params"]
        held -= sum(saved[key] for key, first in first_saver.items() if first == k and key != INPUT)
        mine = grads.pop(op.name, 0)
        for i, size in made.items():
            grads[i] = grads.get(i, 0) or size  # a second consumer's gradient is added into the first
        if reshaped and needs[op.inputs[0]]:
            grads[op.inputs[0]] = mine  # a view's gradient is its input's, reshaped
    return max(peak, weights)


def _annotate(graph: Graph, per_node: dict, path: tuple) -> None:
    for node in graph.layers():
        name = ".".join(path + (node.name,))
        node.meta["saved_activations_bytes"] = per_node.get(name, 0)
        if node.body is not None:
            _annotate(node.body, per_node, path + (node.name,))
