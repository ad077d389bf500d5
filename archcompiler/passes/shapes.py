"""Shape inference, with composite expansion.

A composite's body can only be instantiated once its input shape is known ($in_channels),
so expansion happens here, node by node in topological order. Each composite node keeps its
expanded body graph (`node.body`), so tables and diagrams can nest.
"""
from __future__ import annotations

from archcompiler.blocks.registry import ShapeError
from archcompiler.ir.graph import Graph, Node
from archcompiler.passes.build import Scope, build_graph
from archcompiler.passes.rules import topological_order


def infer_shapes(graph: Graph, input_shape: tuple, scope: Scope) -> bool:
    """Fill meta['shape'] everywhere. Returns False if any node failed (others still run)."""
    graph.input.meta["shape"] = tuple(input_shape)
    ok = True
    for name in topological_order(graph):
        node = graph.nodes[name]
        if node.kind == "input":
            continue
        deps = [graph.nodes[d].meta.get("shape") for d in node.dependencies()]
        if any(s is None for s in deps):
            ok = False  # an upstream node failed and was reported already
            continue
        ins = [graph.nodes[i].shape for i in node.inputs]
        refs = {p: graph.nodes[r].shape for p, r in node.refs.items()}
        try:
            if node.kind == "composite":
                node.meta["shape"] = _expand(node, ins[0], scope)
            else:
                block = scope.registry.get(node.type)
                node.meta["shape"] = tuple(block.infer(node.params, ins, refs, node.inputs))
        except _Reported:
            ok = False
        except ShapeError as e:
            # Blame the parameter (or the `in:` list of a merge) where the spec wrote one.
            blamed = bool(e.param) and (e.param in node.params or e.param == "in")
            rel = node.meta["source_path"] + ((e.param,) if blamed else ())
            span = scope.doc.span(rel) if blamed and scope.blame is None else node.span
            scope.error(e.code, f"node '{node.name}' ({node.type}): {e}", span)
            ok = False
    return ok


def _expand(node: Node, in_shape: tuple, scope: Scope) -> tuple:
    """Instantiate the composite for this input shape and infer its body."""
    block = scope.registry.get(node.type)
    if any(t == node.type for _, t in scope.trail):
        raise ShapeError(f"block '{node.type}' contains itself", code="E203")
    inner = Scope(
        doc=block.doc,
        path=block.path,
        registry=scope.registry,
        diags=scope.diags,
        env=block.bind(node.params, in_shape),
        blame=scope.blame or node.span,
        trail=scope.trail + [(node.name, node.type)],
    )
    before = len(scope.diags)
    body, complete = build_graph(node.type, inner)
    if not complete or not infer_shapes(body, in_shape, inner):
        if len(scope.diags) == before:  # make sure a failure is never silent
            scope.error("E400", f"node '{node.name}' ({node.type}) could not be expanded", node.span)
        raise _Reported()
    node.body = body
    node.params = {k: inner.env[k] for k in block.params}  # every declared parameter, bound
    node.meta["env"] = inner.env  # plus $in_channels & co., for code generation
    return body.nodes[body.output].shape


class _Reported(ShapeError):
    """A failure inside a composite body, already reported there."""

    def __init__(self):
        super().__init__("reported")
