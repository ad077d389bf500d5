"""Graph rules: cycles and reachability are errors, unused nodes warnings.

A spec is a few dozen nodes, so the checks every run needs (is there a cycle, topological
order, reachability) are done here directly. networkx, a seventh of `archc check`'s start-up
time, is imported only when there is a cycle to describe.
"""
from __future__ import annotations

from archcompiler.ir.graph import INPUT, Graph, readers, stable_topological_order
from archcompiler.passes.build import Scope


def simple_cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Every elementary cycle, for messages; only called when there is one."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(edges)
    g.add_edges_from((a, b) for a, targets in edges.items() for b in targets)
    return list(nx.simple_cycles(g))


def check_rules(graph: Graph, scope: Scope) -> bool:
    edges = readers(graph)
    if not report_cycles(graph, scope, edges) or graph.partial or any(o not in graph.nodes for o in graph.results):
        return False
    return _check_reach(graph, scope, edges)


def report_cycles(graph: Graph, scope: Scope, edges: dict | None = None) -> bool:
    """E301 for each cycle (a node reading itself was reported at its reference); False if any.
    A block's body is checked per instance too: a node left out there may stand in a loop
    (`otherwise:` naming a node that reads it)."""
    edges = readers(graph) if edges is None else edges
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
        gone = [f"'{n}' (read as '{stand_in}')" for n, (_, stand_in) in graph.optional.items() if n not in graph.nodes]
        left_out = f"; left out here: {', '.join(gone)}" if gone else ""
        scope.error("E301", f"cycle: {chain} (each node reads the next){left_out}", graph.nodes[start].span)
        ok = False
    return ok


def _check_reach(graph: Graph, scope: Scope, edges: dict) -> bool:
    # one output depends on the input; each of a block's several on one of its inputs (an FPN
    # level may read only a named input)
    reached = _reachable(edges, INPUT)
    any_input = set().union(*(_reachable(edges, i) for i in graph.inputs)) if graph.outputs else reached
    for output in graph.results:
        if output not in any_input:
            what = "any of the block's inputs" if len(graph.inputs) > 1 else "the input"
            scope.error("E302", f"the output '{output}' does not depend on {what}", graph.nodes[output].span)
            return False
    # a node that stands in for an optional one (`otherwise: m2`) is read wherever that one is absent
    standing_in = {stand_in for _, stand_in in graph.optional.values()}
    for node in graph.layers():
        chained = node.kind == "part" and getattr(graph.nodes.get(node.meta.get("part_of")), "kind", None) == "repeat"  # each instance reads the one before's
        if (node.name not in graph.results and not edges[node.name] and "split" not in node.meta and node.name not in standing_in
                and not chained):  # a part left unread is a slice
            if scope.blame is None:
                what = (f"output '{node.name}' of node '{node.meta['part_of']}' is never used: nothing reads it" if node.kind == "part"
                        else f"node '{node.name}' is never used: nothing reads it and it is not the output")
                scope.diags.warning("W303", what, node.span)
    for name in graph.inputs[1:]:
        if name not in graph.results and not edges[name] and scope.blame is None:
            scope.diags.warning("W303", f"input '{name}' is never read: no node of the block reads it", graph.nodes[name].span)
    return True


def _reachable(edges: dict[str, list[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for t in edges[todo.pop()]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen
