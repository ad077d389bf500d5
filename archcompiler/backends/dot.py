"""The diagram backend: graph IR -> a graphviz Digraph (DOT text). No files, no CLI.

What is drawn, so a test can hold the drawing to the IR:
- Nodes: the graph's `input`, one node per layer the `check` table lists (the same `shown`
  rule over the same `Graph.walk`), and an `@output` terminal fed by the graph's output.
- A listed composite whose body is listed too becomes a cluster, headed by the composite's
  own node. The head stands for the body's formal `input`, which is not drawn: edges into the
  composite end at the head, and the body's uses of `input` start there (unlabelled: the
  tensor is the one on the edge into the head). Edges out of a cluster start at the node of
  its body's output (or the head again, for a body that returns its input).
- Edges: one per data input of each drawn node (solid) and one per shape-only reference that
  is not also a data input (dashed, e.g. upsample's `size_of`), labelled with the producer's
  shape in H x W x C.
- A composite with several outputs feeds one small node per output (its `part` nodes, rows
  of the table too), each edge labelled with that output's shape and, from an opened
  cluster, starting at the body node that computes it.

Node IDs are node paths joined with '.' ('attn.trunk1.bn1'); names are identifiers, so the
paths never collide, nor with `@output`. Heads put cluster labels inside a node, where
graphviz routes edges around them instead of through them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from graphviz import Digraph

from archcompiler.backends.table import fmt_count, fmt_shape, shown
from archcompiler.blocks.registry import FAMILIES, Registry
from archcompiler.ir.graph import INPUT, Graph, Node

OUTPUT = "@output"
FONT = "Helvetica"

# Nested clusters alternate between two tints so a cluster never hides inside its parent.
CLUSTER_FILLS = ("#f5f1fb", "#e9e1f6")
TERMINAL = ("#ffffff", "#666666")
MERGE_SYMBOL = {"add": "+", "concat": "concat"}
GRAPH_ATTRS = {"fontname": FONT, "newrank": "true", "nodesep": "0.45", "ranksep": "0.35", "labelloc": "t"}
NODE_ATTRS = {"fontname": FONT, "fontsize": "11", "shape": "box", "style": "rounded,filled", "margin": "0.12,0.05"}
EDGE_ATTRS = {"fontname": FONT, "fontsize": "9", "color": "#555555", "fontcolor": "#333333", "arrowsize": "0.7"}


@dataclass
class _Item:
    """One thing drawn: a node, or a cluster holding more items."""

    id: str
    node: Node
    depth: int
    cluster: bool
    children: list[_Item] = field(default_factory=list)


def to_digraph(
    graph: Graph,
    registry: Registry,
    *,
    expand: bool = False,
    depth: int | None = None,
    rankdir: str = "TB",
    title: str | None = None,
) -> Digraph:
    """Draw `graph` (top-level nodes, or nested clusters with `expand`, at most `depth` deep)."""
    dot = Digraph(name=graph.name)
    dot.attr("graph", rankdir=rankdir, **GRAPH_ATTRS)
    dot.attr("node", **NODE_ATTRS)
    dot.attr("edge", **EDGE_ATTRS)

    top, scopes = _layout(graph, expand, depth)
    for name in graph.inputs:  # a block's body drawn alone has its named inputs too
        dot.node(name, **terminal_attrs(name, graph.nodes[name].shape))
    families: list[str] = []
    _emit(dot, top, registry, families)
    dot.node(OUTPUT, **terminal_attrs("output"))

    for prefix, item in _drawn(top):
        g = scopes[prefix]
        for i in item.node.inputs:
            # out of a cluster's head, the tensor is the one labelled on the edge into the head;
            # a named input (a skip) comes out of the head too, labelled with its name
            if prefix and i in g.inputs:
                label = None if i == INPUT else i
            else:
                label = shape_label(item.node.shape if item.node.kind == "part" else g.nodes[i].shape)
            dot.edge(_source(scopes, prefix, i, part_output(g, item.node)), item.id, label=label)
        for param, r in item.node.refs.items():
            if r not in item.node.inputs:
                dot.edge(_source(scopes, prefix, r), item.id, label=shape_label(g.nodes[r].shape, param), style="dashed")
    for name, written in zip(graph.results, graph.raw_outputs or [None]):  # a block drawn alone may have several
        label = shape_label(graph.nodes[name].shape, written)
        dot.edge(_source(scopes, (), name), OUTPUT, label=label)

    dot.attr("graph", label=_legend(title, families))
    return dot


def to_dot(graph: Graph, registry: Registry, **options) -> str:
    return to_digraph(graph, registry, **options).source


# --- structure: which nodes are drawn, and as what ---

def _layout(graph: Graph, expand: bool, depth: int | None):
    """The drawn items as a tree, and the graph at each opened path (() for the top).

    The walk and the `shown` rule are those of the check table's rows."""
    scopes: dict[tuple, Graph] = {(): graph}
    top: list[_Item] = []
    open_: list[_Item] = []  # the clusters enclosing the current node, outermost first
    path: list[str] = []
    for d, node in graph.walk():
        del path[d:]
        path.append(node.name)
        if not shown(d, expand, depth):
            continue
        del open_[d:]
        cluster = node.body is not None and shown(d + 1, expand, depth)
        item = _Item(".".join(path), node, d, cluster)
        (open_[-1].children if d else top).append(item)
        if cluster:
            open_.append(item)
            scopes[tuple(path)] = node.body
    return top, scopes


def _drawn(items: list[_Item], prefix: tuple = ()):
    """(prefix, item) for every item drawn, clusters before their contents, in walk order."""
    for item in items:
        yield prefix, item
        if item.cluster:
            yield from _drawn(item.children, prefix + (item.node.name,))


def part_output(graph: Graph, node: Node) -> str | None:
    """For a `part` node, the body node its composite returns for it; else None."""
    if node.kind != "part":
        return None
    body = graph.nodes[node.inputs[0]].body
    return body.results[node.meta["index"]] if body is not None else None


def _source(scopes: dict, prefix: tuple, name: str, output: str | None = None) -> str:
    """The drawn node that produces tensor `name` of the graph at `prefix` (`output`: which of
    a composite's several outputs, when it is opened)."""
    if name == INPUT:
        return ".".join(prefix) if prefix else INPUT  # a body's input: its cluster's head
    if prefix and name in scopes[prefix].inputs:  # a named input (a skip): the cluster's head too
        return ".".join(prefix)
    inner = prefix + (name,)
    if inner in scopes:  # a cluster: its body's output node
        return _source(scopes, inner, output or scopes[inner].output)
    return ".".join(inner)


# --- drawing ---

def _emit(dot: Digraph, items: list[_Item], registry: Registry, families: list[str]) -> None:
    for item in items:
        node = item.node
        block = registry.get(node.type)
        family = family_of(block)
        if family not in families:
            families.append(family)
        if item.cluster:
            sub = Digraph(name=f"cluster_{item.id}")
            sub.attr("graph", **cluster_attrs(item.depth))
            sub.node(item.id, **node_attrs(node, block, head=True))
            _emit(sub, item.children, registry, families)
            dot.subgraph(sub)
            continue
        dot.node(item.id, **node_attrs(node, block))


def family_of(block) -> str:
    """The colour family (a key of the registry's FAMILIES) a block is drawn in; an unknown
    type draws as a composite."""
    return block.family if block else "composite"


def node_attrs(node: Node, block, head: bool = False) -> dict:
    """The graphviz attributes of a drawn node: a layer, or (`head`) an opened composite's head."""
    family = FAMILIES["composite" if head else family_of(block)]
    colours = {"fillcolor": family.fill, "color": family.border}
    if node.kind == "part":  # one output of a composite: a small tag, as a merge is
        return {"label": _html([f"<b>{escape(node.name)}</b>", _small(f"{node.type}.{node.meta['output']}")]), "shape": "box",
                "style": "rounded,filled,dashed", **colours, "margin": "0.06,0.02"}
    if head:
        return {"label": _node_label(node, block), **colours, "style": "filled", "penwidth": "1.5"}
    if family is FAMILIES["merge"]:
        return {"label": _merge_label(node), "shape": "ellipse", "style": "filled", **colours, "margin": "0.04,0.02"}
    return {"label": _node_label(node, block), **colours}


def cluster_attrs(depth: int) -> dict:
    """An opened composite's cluster, `depth` composites deep."""
    return {"label": "", "style": "rounded,filled", "fillcolor": CLUSTER_FILLS[depth % 2], "color": FAMILIES["composite"].border, "margin": "10"}


def terminal_attrs(name: str, shape: tuple | None = None) -> dict:
    """The `input` (with its shape) and `output` terminals."""
    label = _terminal_label(name, fmt_shape(shape) if shape is not None else None)
    return {"label": label, "shape": "box", "style": "rounded,filled", "fillcolor": TERMINAL[0], "color": TERMINAL[1]}


def _html(lines: list[str]) -> str:
    """Lines as table rows: graphviz spaces <br/> lines of mixed sizes too tightly to read."""
    rows = "".join(f"<tr><td>{line}</td></tr>" for line in lines)
    return f'<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">{rows}</table>>'


def _small(text: str, size: int = 9) -> str:
    return f'<font point-size="{size}">{escape(text)}</font>'


def _node_label(node: Node, block) -> str:
    """name / type(key parameters) / parameter count."""
    return _html([f"<b>{escape(node.name)}</b>", _small(_call(node, block), 10), _small(_count(node))])


KEY_PARAMS = ("kernel", "stride", "out")  # always shown when a block has them


def _call(node: Node, block) -> str:
    """'conv(kernel=3, stride=1, out=64)': the block's label keys. A composite labels all its
    parameters, so there those left at their default are dropped, except the key ones."""
    if block is None:
        return node.type
    if node.kind == "repeat":  # 'basic x3': the instances' own parameters show when expanded
        return node.display_type
    p = dict(node.params)
    if "out" in block.label_keys and "out" not in p and len(node.shape) == 3:
        p["out"] = node.shape[0]  # `out` left to its default (the input channels): show the value
    if block.is_composite:
        p = {k: v for k, v in p.items() if k in KEY_PARAMS or block.params.get(k, {}).get("default") != v}
    args = block.label(p)
    return f"{node.type}({args})" if args else node.type


def _count(node: Node) -> str:
    n = node.meta.get("params", 0)
    return f"{fmt_count(n)} param" + ("" if n == 1 else "s")


def _merge_label(node: Node) -> str:
    """The operator, written over the node's own inputs: '(1 + mask) * trunk2' for attention."""
    if node.type == "mul":
        offset = node.params.get("offset", 0)
        first = f"({_num(offset)} + {node.inputs[0]})" if offset else node.inputs[0]
        op = " * ".join([first, *node.inputs[1:]])
    else:
        op = MERGE_SYMBOL.get(node.type, node.type)
    return _html([f"<b>{escape(op)}</b>", _small(node.name)])


def _num(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _terminal_label(name: str, shape: str | None) -> str:
    return _html([f"<b>{name}</b>"] + ([_small(shape)] if shape else []))


def shape_label(shape: tuple, ref: str | None = None) -> str:
    """An edge's label: the producer's shape, named by the parameter for a shape-only edge."""
    return f"{ref}: {fmt_shape(shape)}" if ref else fmt_shape(shape)


def _legend(title: str | None, families: list[str]) -> str:
    """The title over one line of coloured squares, one per family drawn. A single text cell:
    graphviz stretches table cells to the title's width, which pulls a legend apart."""
    keys = "&nbsp;&nbsp;&nbsp;".join(
        f'<font color="{FAMILIES[f].border}" point-size="13">&#9632;</font>{_small(chr(0xA0) * 2 + FAMILIES[f].legend, 10)}'
        for f in FAMILIES
        if f in families
    )
    lines = ([f"<b>{escape(title)}</b>"] if title else []) + [keys]
    return _html(lines)
