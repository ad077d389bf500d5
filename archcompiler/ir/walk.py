"""A framework-neutral walk over a graph of the IR, for code generators, and for the memory
replay (passes/memory.py), which frees a value when the generated code drops its variable.

It decides what every backend that writes a program needs and nothing framework-specific:
the order of the nodes (dependencies first, ties in spec order), which nodes read each
node, and the variable that holds each node's output. A node takes over `x` when the node
holding `x` is read for the last time there, which gives nanoGPT-like `x = self.block(x)`
chains; otherwise its variable is its own name, made unique against `reserved`.

A composite with several outputs is one step whose variable is the tuple its parts unpack
into (`p3, p4, x = self.neck(x)`); its `part` nodes are no steps of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from archcompiler.ir.graph import INPUT, Graph, Node, readers, topological_order

INPUT_VAR = "x"
AMBIGUOUS = ("l", "O", "I")  # names pycodestyle refuses for variables (E741): a node so named gets l_2


@dataclass
class Step:
    node: Node
    var: str  # the variable its output is assigned to
    args: list[str]  # the variables of its inputs, in order
    refs: dict[str, str] = field(default_factory=dict)  # param -> variable of the node whose shape it reads


@dataclass
class Walk:
    steps: list[Step]
    output: str  # the variable returned
    inputs: list[str] = field(default_factory=lambda: [INPUT_VAR])  # the variables of the graph's inputs, `x` first
    variables: dict[str, str] = field(default_factory=dict)  # every node -> its variable (a part's too: what its call unpacks into)


class Names:
    """Identifiers unique by construction: `take` returns the name itself, or with a suffix."""

    def __init__(self, reserved=()):
        self.taken = set(reserved)

    def take(self, name: str, sep: str = "_") -> str:
        out, n = name, 1
        while out in self.taken:
            n += 1
            out = f"{name}{sep}{n}"
        self.taken.add(out)
        return out


def walk(graph: Graph, reserved=()) -> Walk:
    order = [n for n in topological_order(graph) if n not in graph.inputs]
    later_readers = readers(graph)
    names = Names(set(reserved) | {INPUT_VAR, *AMBIGUOUS})
    var = {INPUT: INPUT_VAR}
    for n in graph.inputs[1:]:  # a composite's named inputs keep their names
        var[n] = names.take(n)
    holder = INPUT
    steps = []
    results = set(graph.results)
    for i, name in enumerate(order):
        node = graph.nodes[name]
        rest = set(order[i + 1:])
        # the output is read by the return at the end, so it never gives up its variable
        if holder in node.dependencies() and holder not in results and not (set(later_readers[holder]) & rest):
            var[name] = INPUT_VAR
            holder = name
        elif not later_readers[name] and name not in results:
            var[name] = names.take(f"_{name}")  # computed, never read (W303): a name linters know is unused
        else:
            var[name] = names.take(name)
        if node.kind != "part":
            steps.append(Step(node, var[name], [var[d] for d in node.inputs], {p: var[r] for p, r in node.refs.items()}))
    for step in steps:  # a composite with several outputs assigns the tuple its parts unpack into
        if "outputs" in step.node.meta:
            step.var = ", ".join(var[p] for p in step.node.meta["outputs"])
    return Walk(steps, ", ".join(var[o] for o in graph.results), [var[n] for n in graph.inputs], var)
