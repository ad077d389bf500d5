"""Graph rules: cycles and reachability are errors, unused nodes warnings.

A spec is a few dozen nodes, so the checks every run needs (is there a cycle, topological
order, reachability) are done here directly. networkx, a seventh of `archc check`'s start-up
time, is imported only when there is a cycle to describe.
"""
from __future__ import annotations

import heapq

from archcompiler.ir.graph import INPUT, Graph
from archcompiler.passes.build import Scope


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


def simple_cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Every elementary cycle, for messages; only called when there is one."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(edges)
    g.add_edges_from((a, b) for a, targets in edges.items() for b in targets)
    return list(nx.simple_cycles(g))


def check_rules(graph: Graph, scope: Scope) -> bool:
    edges = readers(graph)
    ok = True
    order = {n: i for i, n in enumerate(graph.nodes)}
    cycles = simple_cycles(edges) if len(stable_topological_order(edges)) < len(edges) else []
    reported = set()
    for cycle in sorted(cycles, key=lambda c: min(order[n] for n in c)):
        if len(cycle) == 1:  # a node reading itself: the reference check reported it, at the reference
            ok = False
            continue
        if frozenset(cycle) in reported:
            continue
        reported.add(frozenset(cycle))
        start = min(cycle, key=order.__getitem__)
        i = cycle.index(start)
        path = cycle[i:] + cycle[:i] + [start]
        # edges run dependency -> reader; show the chain as "reads" links
        chain = " -> ".join(reversed(path))
        scope.error("E301", f"cycle: {chain} (each node reads the next)", graph.nodes[start].span)
        ok = False
    if not ok or graph.partial or graph.output not in graph.nodes:
        return False
    if graph.output not in _reachable(edges, INPUT):
        scope.error("E302", f"the output '{graph.output}' does not depend on the input", graph.nodes[graph.output].span)
        return False
    for node in graph.layers():
        if node.name != graph.output and not edges[node.name]:
            if scope.blame is None:
                scope.diags.warning("W303", f"node '{node.name}' is never used: nothing reads it and it is not the output", node.span)
    return True


def _reachable(edges: dict[str, list[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for t in edges[todo.pop()]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def topological_order(graph: Graph) -> list[str]:
    """Dependencies first; ties keep spec order, so the order is stable and readable."""
    return stable_topological_order(readers(graph))
