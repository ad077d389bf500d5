"""The viewer backend: graph IR -> one self-contained, interactive HTML page. No CLI.

The page lays the graph out in the browser with Graphviz compiled to WebAssembly (Viz.js,
vendored in html_assets/, inlined gzipped), from DOT it builds for whatever composites are
open. Everything it draws comes from here, as data: each node's graphviz attributes collapsed
and as an opened cluster's head (from backends/dot.py, so the page looks like `archc render -o
x.svg`), its edges with their shape labels, the numbers of the `archc check` table, and the spec
lines it came from. The page itself only decides which composites are open.

Node ids are node paths joined with '.', as in dot.py; `input` and `@output` are the terminals.
"""
from __future__ import annotations

import base64
import functools
import gzip
import json
import os
import re
from html import escape
from pathlib import Path

from archcompiler.backends import dot
from archcompiler.backends.table import fmt_count, fmt_flops, fmt_shape, shown
from archcompiler.blocks.registry import FAMILIES, Registry
from archcompiler.ir.graph import INPUT, Graph, Node

ASSETS = Path(__file__).with_name("html_assets")
STDLIB = "<stdlib>/"  # how spans name the standard library's files (driver._load_stdlib)

# What dark mode changes in the diagram: edges and cluster backgrounds. Node fills stay the
# family colours of the SVG figures, which keep their black text readable on a dark page.
DARK = {"edge": {"color": "#9aa0a6", "fontcolor": "#c9ccd1"}, "cluster_fills": ["#2c2838", "#383148"]}


def page(graph: Graph, registry: Registry, *, title: str, totals: dict, sources: dict[str, str] | None = None,
         expand: bool = False, depth: int | None = None, rankdir: str = "TB") -> str:
    """The HTML text. `sources` maps a span's file to its text, for the source lines shown.
    The page opens first with the composites `--expand [--depth N]` would draw as clusters."""
    data = model_data(graph, registry, title=title, totals=totals, sources=sources or {})
    data["open"] = [n["id"] for n in data["nodes"] if n["composite"] and shown(n["depth"] + 1, expand, depth)]
    data["rankdir"] = rankdir
    # no `<` at all in the JSON (its strings hold labels): `</script>` or `<!--` would end the element early
    blob = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    parts = {
        "TITLE": escape(title),
        "CSS": (ASSETS / "viewer.css").read_text(),
        "DATA": blob,
        "VIZ": _packed_viz(),
        "JS": (ASSETS / "viewer.js").read_text(),
    }
    # one pass, so nothing inserted (a title, a label) is ever read as a placeholder
    return re.sub(r"/\*ARCHC_([A-Z]+)\*/", lambda m: parts[m.group(1)], (ASSETS / "viewer.html").read_text())


@functools.cache
def _packed_viz() -> str:
    """Viz.js gzipped and in base64: 0.64 MB instead of 1.33 MB in every page. The page unpacks
    it with the browser's DecompressionStream. mtime=0 keeps pages byte-for-byte reproducible."""
    return base64.b64encode(gzip.compress((ASSETS / "viz-global.js").read_bytes(), mtime=0)).decode("ascii")


def model_data(graph: Graph, registry: Registry, *, title: str, totals: dict, sources: dict[str, str]) -> dict:
    """Everything the page shows, as JSON-ready data."""
    nodes: list[dict] = []
    _collect(graph, registry, sources, prefix=(), depth=0, out=nodes)
    families = sorted({n["family"] for n in nodes}, key=list(FAMILIES).index)
    return {
        "title": title,
        "summary": f"{fmt_count(totals['params'])} params, {fmt_flops(totals['flops'])} FLOPs, "
        f"activations {totals['activation_bytes'] / 2**20:.1f} MiB at batch 1 (fp32)",
        "totals": {"params": fmt_count(totals["params"]), "flops": fmt_flops(totals["flops"])},
        "input": {"shape": fmt_shape(graph.input.shape), "attrs": dot.terminal_attrs("input", graph.input.shape)},
        # a block's body drawn alone: its named inputs are terminals too
        "named_inputs": [{"name": n, "attrs": dot.terminal_attrs(n, graph.nodes[n].shape)} for n in graph.inputs[1:]],
        "output": {"attrs": dot.terminal_attrs("output"),
                   "from": [{"from": o, "label": dot.shape_label(graph.nodes[o].shape, written)}
                            for o, written in zip(graph.results, graph.raw_outputs or [None])]},
        "style": {
            "graph": dot.GRAPH_ATTRS,
            "node": dot.NODE_ATTRS,
            "edge": dot.EDGE_ATTRS,
            "cluster_fills": list(dot.CLUSTER_FILLS),
            "dark": DARK,
            "legend": [{"family": f, "fill": FAMILIES[f].fill, "border": FAMILIES[f].border, "text": FAMILIES[f].legend} for f in families],
        },
        "nodes": nodes,
    }


def _collect(graph: Graph, registry: Registry, sources: dict, prefix: tuple, depth: int, out: list) -> None:
    """One record per layer at every depth, in `Graph.walk` order (the check table's rows)."""
    for node in graph.layers():
        path = prefix + (node.name,)
        block = registry.get(node.type)
        record = {
            "id": ".".join(path),
            "name": node.name,
            "parent": ".".join(prefix),
            "depth": depth,
            "type": node.type,
            "family": dot.family_of(block),
            "composite": node.body is not None,
            "attrs": dot.node_attrs(node, block),
            "params": {k: _jsonable(v) for k, v in node.params.items()},
            "inputs": list(node.inputs),
            "edges": _edges(graph, node, inside=bool(prefix)),
            "shape": fmt_shape(node.shape),
            "count": fmt_count(node.meta["params"]),
            "flops": fmt_flops(node.meta["flops"]),
            "activations": fmt_bytes(node.meta["activation_bytes"]),
            "source": _source(node, sources),
        }
        if node.body is not None:
            record["head"] = dot.node_attrs(node, block, head=True)
            record["cluster"] = dot.cluster_attrs(depth)
            record["output"] = node.body.output
        out.append(record)
        if node.body is not None:
            _collect(node.body, registry, sources, path, depth + 1, out)


def _edges(graph: Graph, node: Node, inside: bool) -> list[dict]:
    """The edges into `node`, as dot.py draws them: data inputs, then shape-only refs dashed."""
    edges = []
    for i in node.inputs:
        # out of a cluster's head, the tensor is the one labelled on the edge into the head;
        # a named input (a skip) comes out of the head too, labelled with its name
        if inside and i in graph.inputs:
            edges.append({"from": INPUT, "label": None if i == INPUT else i})
            continue
        if node.kind == "part":  # one of a composite's several outputs: from the body node that computes it
            edges.append({"from": i, "label": dot.shape_label(node.shape), "output": dot.part_output(graph, node)})
            continue
        edges.append({"from": i, "label": dot.shape_label(graph.nodes[i].shape)})
    for param, r in node.refs.items():
        if r not in node.inputs:
            edges.append({"from": r, "label": dot.shape_label(graph.nodes[r].shape, param), "dashed": True})
    return edges


def fmt_bytes(n: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _source(node: Node, sources: dict) -> dict | None:
    """The node's entry in its file: the key line and the lines indented under it."""
    span = node.span
    if span is None:
        return None
    text = sources.get(span.file)
    lines = text.splitlines() if text is not None else []
    where = {"file": _display(span.file), "line": span.line}
    if not 1 <= span.line <= len(lines):
        return {**where, "lines": []}
    first = lines[span.line - 1]
    indent = len(first) - len(first.lstrip())
    end = span.line
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    while end > span.line and not lines[end - 1].strip():
        end -= 1
    return {**where, "lines": [line[indent:] for line in lines[span.line - 1:end]]}  # dedented to the key


def _display(file: str) -> str:
    """A file's name as the page shows it: relative to the working folder when inside it, so
    a page (and the committed figure) does not carry the path of one machine's checkout."""
    if os.path.isabs(file):
        rel = os.path.relpath(file)
        if not rel.startswith(".."):
            return rel
    return file


def read_sources(graph: Graph, known: dict[str, str]) -> dict[str, str]:
    """The text of every file a span in `graph` names: `known` texts, the standard library's
    files, and other files read from disk (a file that cannot be read shows no lines)."""
    from archcompiler.blocks import stdlib_files

    library = {f"{STDLIB}{p.name}": p for p in stdlib_files()}  # the driver's display names
    texts = dict(known)
    for _, node in graph.walk():
        f = node.span.file if node.span else None
        if f is None or f in texts:
            continue
        path = library.get(f, Path(f))
        try:
            texts[f] = path.read_text()
        except (OSError, UnicodeDecodeError):
            texts[f] = None
    return {k: v for k, v in texts.items() if v is not None}


def _jsonable(v):
    return v if isinstance(v, (str, int, float, bool)) or v is None else (
        [_jsonable(x) for x in v] if isinstance(v, (list, tuple)) else str(v))
