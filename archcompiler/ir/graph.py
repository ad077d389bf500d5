"""The graph IR: a small, closed set of node kinds, after torch.fx.

- `input`: a formal input: the graph's main one, always named `input`, and a composite's
  named inputs (`inputs: [skip]`), in `Graph.inputs` order.
- `call`: a primitive block (conv, add, ...) computing a tensor from its inputs.
- `composite`: a composite block; `body` holds its expanded graph, so the hierarchy is kept.
- `repeat`: a block stacked N times (`repeat: N`); `body` holds the instances in a chain,
  named `0`, `1`, ... (paths `node.0`, `node.1`, as state_dict keys read)
- `part`: output `meta["index"]` of a composite with several outputs (its only input), named
  where the use writes `outputs: [a, b]`; it computes nothing, and readers read it, never the
  composite itself, whose `meta["shapes"]` holds one shape per output.

Passes store their results in `meta`: "shape", "params", "flops", "activation_bytes".
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from archcompiler.diagnostics import Span

INPUT = "input"


@dataclass
class Node:
    name: str
    kind: str  # "input" | "call" | "composite" | "repeat" | "part"
    type: str  # block type name; "input" for the input node
    params: dict = field(default_factory=dict)  # every parameter, defaults filled, substituted
    inputs: list[str] = field(default_factory=list)  # data dependencies, in order
    refs: dict[str, str] = field(default_factory=dict)  # param -> node read for its shape only
    span: Span | None = None  # the node's key in the spec (or the block definition)
    meta: dict = field(default_factory=dict)
    body: "Graph | None" = None  # expanded composite

    @property
    def shape(self) -> tuple:
        return self.meta["shape"]

    @property
    def display_type(self) -> str:
        """The type as tables and diagrams show it: `basic x3` for a repeated block."""
        return f"{self.type} x{self.meta['repeat']}" if self.kind == "repeat" else self.type

    def dependencies(self) -> list[str]:
        return self.inputs + [r for r in self.refs.values() if r not in self.inputs]


@dataclass
class Graph:
    """An ordered graph: nodes in spec order, `input` first."""

    name: str  # the spec name, or the block type of a composite body
    nodes: dict[str, Node]
    output: str
    span: Span | None = None
    partial: bool = False  # some nodes failed to build (and were reported); rules may still run
    inputs: list = field(default_factory=lambda: [INPUT])  # `input`, then a composite's named inputs
    # Optional nodes (`when:`): name -> (condition as written, the node that stands in when it
    # is absent; those absent here are not in `nodes`); the output as written, before any stand-in.
    optional: dict = field(default_factory=dict)
    raw_output: str | None = None
    written: list = field(default_factory=list)  # every node's name as written, present or not
    # A block with several outputs (`output: [a, b]`): all of them, in order, `output` being
    # the first; and as written, before stand-ins. Empty for a graph with one output.
    outputs: list = field(default_factory=list)
    raw_outputs: list = field(default_factory=list)

    @property
    def results(self) -> list[str]:
        """The nodes the graph returns: its outputs, or its one output."""
        return self.outputs or [self.output]

    @property
    def result_names(self) -> list:
        """What the graph returns, named as written: an output switched off (`when:`) keeps its
        own name, though a node before it stands in for its value (`results`)."""
        written = self.raw_outputs or [self.raw_output]
        return [w if w is not None else r for w, r in zip(written, self.results)]

    @property
    def input(self) -> Node:
        return self.nodes[INPUT]

    def __iter__(self):
        return iter(self.nodes.values())

    def layers(self) -> list[Node]:
        """Every node but the input, in spec order."""
        return [n for n in self.nodes.values() if n.kind != "input"]

    def walk(self, depth: int = 0):
        """(depth, node) for every node, composites followed by their bodies."""
        for node in self.layers():
            yield depth, node
            if node.body is not None:
                yield from node.body.walk(depth + 1)

    def primitives(self):
        """Every primitive node, at any depth."""
        for _, node in self.walk():
            if node.kind == "call":
                yield node


def readers(graph: Graph) -> dict[str, list[str]]:
    """node -> the nodes that read it (edges run dependency -> reader), in spec order."""
    out: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for node in graph:
        for dep in node.dependencies():
            if dep in graph.nodes and node.name not in out[dep]:  # a partial graph may lack nodes that failed to build
                out[dep].append(node.name)
    return out


def stable_topological_order(edges: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm; ties keep the dict's order. Shorter than `edges` when there is a cycle."""
    order = {n: i for i, n in enumerate(edges)}
    indegree = {n: 0 for n in edges}
    for targets in edges.values():
        for t in targets:
            indegree[t] += 1
    ready = [(order[n], n) for n, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, n = heapq.heappop(ready)
        out.append(n)
        for t in edges[n]:
            indegree[t] -= 1
            if indegree[t] == 0:
                heapq.heappush(ready, (order[t], t))
    return out


def topological_order(graph: Graph) -> list[str]:
    """Dependencies first; ties keep spec order, so the order is stable and readable."""
    return stable_topological_order(readers(graph))
