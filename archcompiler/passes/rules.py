"""Graph rules, with networkx: cycles and reachability are errors, unused nodes warnings."""
from __future__ import annotations

import networkx as nx

from archcompiler.ir.graph import INPUT, Graph
from archcompiler.passes.build import Scope


def to_networkx(graph: Graph) -> nx.DiGraph:
    g = nx.DiGraph()
    for i, node in enumerate(graph):
        g.add_node(node.name, order=i)
    for node in graph:
        for dep in node.dependencies():
            if dep in graph.nodes:  # a partial graph may lack nodes that failed to build
                g.add_edge(dep, node.name)
    return g


def check_rules(graph: Graph, scope: Scope) -> bool:
    g = to_networkx(graph)
    ok = True
    order = {n: i for i, n in enumerate(graph.nodes)}
    reported = set()
    for cycle in sorted(nx.simple_cycles(g), key=lambda c: min(order[n] for n in c)):
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
    if not nx.has_path(g, INPUT, graph.output):
        scope.error("E302", f"the output '{graph.output}' does not depend on the input", graph.nodes[graph.output].span)
        return False
    for node in graph.layers():
        if node.name != graph.output and g.out_degree(node.name) == 0:
            if scope.blame is None:
                scope.diags.warning("W303", f"node '{node.name}' is never used: nothing reads it and it is not the output", node.span)
    return True


def topological_order(graph: Graph) -> list[str]:
    """Dependencies first; ties keep spec order, so the order is stable and readable."""
    g = to_networkx(graph)
    order = {n: i for i, n in enumerate(graph.nodes)}
    return list(nx.lexicographical_topological_sort(g, key=order.__getitem__))
