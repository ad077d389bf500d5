"""`archc render`: draw a spec, or one block definition, with graphviz.

    archc render SPEC -o model.svg [--expand [--depth N]] [--rankdir LR]
    archc render --block soft_attention -o attention.png [--input 64,64,64] [--set pool=2]
    archc render SPEC --block my_block -o my_block.svg     # a block from the spec's `blocks:`

The format is the output's extension. `.dot` needs only the graphviz Python package; `.html`
is an interactive page that lays itself out in the browser (backends/html.py); the others run
the `dot` program. The output file is written atomically, so a failed render
leaves nothing behind (and an older file in place).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys

import yaml

from archcompiler.backends.dot import to_digraph
from archcompiler.backends.table import fmt_count, fmt_shape
from archcompiler.blocks.registry import RESERVED_NAMES, Registry
from archcompiler.driver import builtin_registry
from archcompiler.errors import ArchcError, UsageError
from archcompiler.driver import CheckResult, check_file, check_text
from archcompiler.ir.arith import MAX_VALUE
from archcompiler.ir.graph import Graph, Node
from runtime import argtypes
from runtime.files import write_bytes, write_text

FORMATS = ("svg", "png", "pdf", "dot", "html")
INSTALL = "install it with 'apt-get install graphviz' (or 'make setup'), or write a .dot file instead"



class SpecError(ArchcError):
    """A spec (or a block instance) did not check; `result` holds its diagnostics, and
    `sources` the text of each file they name (to show their lines)."""

    def __init__(self, result: CheckResult, sources: dict[str, str] | None = None):
        errors = sum(d.is_error for d in result.diagnostics)
        super().__init__(f"{result.file}: {errors} error{'s' * (errors != 1)}")
        self.result = result
        self.sources = sources if sources is not None else {result.file: result.text} if result.text is not None else {}


def output_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise UsageError(f"cannot tell the format of '{path}': use one of the extensions {', '.join('.' + f for f in FORMATS)}")
    return ext


def diagram(
    spec: str | None = None,
    *,
    block: str | None = None,
    expand: bool = False,
    depth: int | None = None,
    rankdir: str = "TB",
    input_shape: tuple | None = None,
    params: dict | None = None,
):
    """The graphviz Digraph of a spec, or of one block drawn at a concrete input shape."""
    graph, registry, title, _ = subject(spec, block, input_shape, params)
    return to_digraph(graph, registry, expand=expand, depth=depth, rankdir=rankdir, title=title)


def subject(spec: str | None, block: str | None = None, input_shape=None, params=None) -> tuple[Graph, Registry, str, CheckResult]:
    """What to draw: the spec's graph, or block `block`'s body; its registry, title and check result."""
    result = check_file(spec) if spec is not None else None
    if result is not None and (result.diagnostics.has_errors or result.registry is None):
        raise SpecError(result)
    if block is None:
        if result.graph is None:  # a block library: nothing to draw but its blocks
            names = [b.name for b in result.registry if b.origin == result.file]
            raise UsageError(f"{spec} has no nodes; draw one of its blocks with --block ({', '.join(names)})")
        title = f"{result.name} - {fmt_count(result.totals['params'])} params"
        return result.graph, result.registry, title, result
    graph, registry, title = block_graph(block, result, input_shape, params)
    return graph, registry, title, result


def viewer(spec: str | None = None, *, block: str | None = None, expand: bool = False, depth: int | None = None,
           rankdir: str = "TB", input_shape: tuple | None = None, params: dict | None = None) -> str:
    """The interactive HTML page of a spec or a block (backends/html.py)."""
    from archcompiler.backends import html

    graph, registry, title, result = subject(spec, block, input_shape, params)
    totals = {k: sum(n.meta[k] for n in graph.layers()) for k in ("params", "flops", "activation_bytes")}
    known = {result.file: result.text} if result is not None and result.text is not None else {}
    name = result.name if block is None else title.split(" - ")[0]
    return html.page(graph, registry, title=name, totals=totals, sources=html.read_sources(graph, known),
                     expand=expand, depth=depth, rankdir=rankdir)


def block_graph(name: str, result: CheckResult | None, input_shape=None, params=None) -> tuple[Graph, Registry, str]:
    """The body of block `name` instantiated at an input shape, by checking a one-node spec.

    The shape and parameters come from, in order: the flags; the spec's first use of the
    block; the block's own example (for the standard library, where the paper uses it)."""
    registry = result.registry if result is not None else builtin_registry()
    if name not in registry:
        from archcompiler.diagnostics import did_you_mean

        raise UsageError(f"unknown block '{name}'{did_you_mean(name, registry.names())}")
    shapes, given, use = _instance(name, result, registry)
    shape = tuple(input_shape) if input_shape is not None else shapes[0]
    given = {**given, **(params or {})}
    node = name if name not in RESERVED_NAMES else "block"
    feeds, names = _feeds(shape, shapes[1:])
    call = {"type": name, **given, **({"in": names} if len(names) > 1 else {})}
    data = {"archc": 1, "name": "figure", "input": list(shape), "nodes": {**feeds, node: call}}
    if isinstance(given.get("outputs"), list) and given["outputs"] and name == "split":  # a split ends in its parts
        data["output"] = given["outputs"][-1]
    several = getattr(registry.get(name), "outputs", [None])
    if len(several) > 1:  # a block with several outputs: its use names them (drawn from the body, which returns them all)
        call["outputs"] = [f"{o}_out" for o in several]
        data["output"] = call["outputs"][0]
    if result is not None and result.data.get("defaults"):  # drawn as the spec builds it
        data["defaults"] = result.data["defaults"]
    # The spec's own blocks come in through its registry, defined where it defines them: an
    # error in a body is then at its line in the spec, not in this generated text.
    inst = check_text(yaml.safe_dump(data, sort_keys=False), f"<block {name}>", registry=registry)
    if not inst.ok:
        _instance_failed(inst, node, params or {}, _drawn(name, shape, input_shape, params or {}, use))
    n = inst.graph.nodes.get(node) or inst.graph.nodes[data["output"]]
    label = registry.get(name).label(n.params)
    title = f"{name}({label}) at {fmt_shape(shape)} - {fmt_count(n.meta['params'])} params"
    return (n.body if n.body is not None else inst.graph), inst.registry, title


def _instance(name: str, result: CheckResult | None, registry: Registry) -> tuple[list[tuple], dict, Node | None]:
    """The shapes of its inputs and its parameters at the spec's first use (and that node),
    else its example."""
    if result is not None and result.graph is not None:
        inputs: list[Graph] = [result.graph]  # the graph each walked node lives in, by depth
        path: list[str] = []  # the names down to the walked node: a repeated use's instance is 'pr.0'
        for d, node in result.graph.walk():
            del inputs[d + 1:], path[d:]
            path.append(node.name)
            if node.type == name and node.kind != "repeat":  # a repeated use: its instances, `first:` applied, come next
                named = dataclasses.replace(node, name=".".join(path))
                return [inputs[d].nodes[i].shape for i in node.inputs], dict(node.params), named
            if node.body is not None:
                inputs.append(node.body)
    block = registry.get(name)
    return list(block.example_inputs), dict(block.example_params), None


def _drawn(name: str, shape: tuple, input_shape, params: dict, use: Node | None) -> str:
    """Where the instance being drawn comes from, for a note under its errors."""
    where = f"node '{use.name}' at {use.span.file}:{use.span.line}" if use is not None and use.span is not None else None
    flags = [f"--input {','.join(map(str, shape))}"] if input_shape is not None else []
    flags += [f"--set {k}={_yaml_value(v)}" for k, v in params.items()]
    if not flags:
        return f"the {name} drawn here is " + (f"the one {where} uses" if where else "the block's example")
    return f"the {name} drawn here has {' and '.join(flags)}; the rest " + (f"as {where} uses it" if where else "from the block's example")


def _yaml_value(v) -> str:
    return yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip()


def _instance_failed(inst: CheckResult, node: str, params: dict, drawn: str):
    """Raise the instance's errors where a user can find them: a --set value's as a usage
    error; one inside a composite's body at the body's line in its own file (the spec, or
    the standard library's); one at the instance itself at no line of the generated text.
    Each says which instance was drawn."""
    tables = (inst.doc.key_spans, inst.doc.spans) if inst.doc is not None else ()  # None: the generated text did not load (a --set value past 2^53)
    at = {span: path for table in tables for path, span in table.items()}

    def the_flags(d) -> bool:  # at a --set value of the instance, or naming one
        if d.inner is not None:
            return False
        path = at.get(d.span, ())
        return (len(path) > 2 and path[:2] == ("nodes", node) and path[2] in params) or any(f"'{k}'" in d.message for k in params)

    errors = [d for d in inst.diagnostics if d.is_error]
    if params and all(the_flags(d) for d in errors):  # the flags' fault, not a file's
        raise UsageError("; ".join(f"--set: {d.message}" for d in errors))
    # A warning in the generated text is about the drawing's own harness (the outputs it names
    # and leaves unread), not about anything the user wrote.
    inst.diagnostics[:] = [d for d in inst.diagnostics if d.is_error or d.inner is not None or d.span is None or d.span.file != inst.file]
    for d in inst.diagnostics:
        if d.inner is not None:
            d.span = d.inner
        elif d.span is not None and d.span.file == inst.file:
            d.span = None  # a line of generated text, in no file
        d.notes.append(drawn)
    sources = {b.doc.file: b.doc.text for b in inst.registry if getattr(b, "doc", None) is not None}  # the spec's, the library's
    raise SpecError(inst, sources)


def _feeds(main: tuple, others: list[tuple]) -> tuple[dict, list[str]]:
    """Nodes that make each further input of a block (a merge, a named input) from the
    figure's one input: a 1x1 conv to its channels, then a pool or an upsample to its size."""
    nodes, names = {}, ["input"]
    for i, shape in enumerate(others, start=1):
        name = f"feed{i}"
        if len(shape) == 1 or len(main) == 1:
            pool = {f"{name}_pool": {"type": "global_avgpool", "in": "input"}} if len(main) == 3 else {}
            nodes.update(pool)
            nodes[name] = {"type": "affine", "out": shape[0], "in": next(iter(pool), "input")}
        else:
            (h, w), (H, W) = shape[1:], main[1:]
            nodes[name] = {"type": "conv", "out": shape[0], "kernel": 1, "in": "input"}
            if (h, w) != (H, W):
                nodes[f"{name}_conv"] = nodes.pop(name)
                if h > H and h % H == 0 and w * H == W * h:
                    nodes[name] = {"type": "upsample", "scale": h // H, "in": f"{name}_conv"}
                elif h < H and H % h == 0 and W * h == w * H:
                    nodes[name] = {"type": "avgpool", "kernel": H // h, "in": f"{name}_conv"}
                else:
                    raise UsageError(f"cannot draw the block at {fmt_shape(main)} with input {i + 1} at {fmt_shape(shape)}: "
                                     f"the sizes are not an integer scale apart; give --input a size that is")
        names.append(name)
    return nodes, names


# A drawing past this many nodes takes graphviz minutes and gigabytes (10,000 layers, in one run on a 2-CPU machine).
MANY_NODES = 2_000
# a node statement of a Digraph's body, at any cluster depth; edges have "->" after the name
_NODE_LINE = re.compile(r'^\s+(?!(?:graph|node|edge) \[)(?:"[^"]*"|[^\s"\[]+) \[')


def drawn_nodes(dot) -> int:
    """How many nodes a Digraph draws (its clusters' included)."""
    return sum(1 for line in dot.body if _NODE_LINE.match(line))


def render(spec: str | None, output: str, **options) -> str:
    """Draw and write `output` (format from its extension). Returns the format written."""
    fmt = output_format(output)
    if fmt == "html":
        write_text(output, viewer(spec, **options))
        return fmt
    dot = diagram(spec, **options)
    if fmt == "dot":
        write_text(output, dot.source)
        return fmt
    import graphviz

    drawn = drawn_nodes(dot)
    if drawn > MANY_NODES:  # graphviz's layout grows faster than the node count: say so before the wait
        print(f"archc render: laying out {drawn:,} nodes with graphviz takes minutes and gigabytes; "
              "--depth N draws fewer, and .html opens blocks on demand", file=sys.stderr, flush=True)
    try:
        data = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise ArchcError(f"writing .{fmt} needs graphviz's 'dot' program, which is not on PATH; {INSTALL}") from None
    except graphviz.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace").strip()
        raise ArchcError(f"graphviz's dot failed on {output}: {detail or e}") from None
    write_bytes(output, data)
    return fmt


# --- command line ---

def parser() -> argparse.ArgumentParser:
    p = argtypes.Parser(
        prog="archc render",
        description="Draw a spec, or one block definition, with graphviz. The format is the extension of -o: .svg, .png, .pdf, .dot, "
        "or .html for an interactive page (click composites to open them, pan, zoom, search).",
    )
    p.add_argument("spec", nargs="?", metavar="SPEC", help="spec file (.yaml); optional with --block for built-in blocks")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file: .svg, .png, .pdf, .dot or .html")
    p.add_argument("--block", metavar="NAME", help="draw this block's definition (built-in, or from SPEC's blocks:)")
    p.add_argument("--expand", action="store_true", help="draw composite blocks as nested clusters (.html: open them at first)")
    p.add_argument("--depth", type=argtypes.non_negative, metavar="N", help="with --expand, nest at most N levels (as archc check)")
    p.add_argument("--rankdir", choices=("TB", "LR"), default="TB", help="top to bottom (default) or left to right")
    p.add_argument("--input", metavar="C,H,W", help="with --block: the input shape to draw the block at")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="with --block: a block parameter (repeatable)")
    return p


def check_args(args) -> None:
    """Every flag checked before any drawing, so a bad one costs nothing."""
    if args.spec is None and args.block is None:
        raise UsageError("give a SPEC to draw, or --block NAME")
    if args.depth is not None and (args.depth < 0 or not args.expand):
        raise UsageError("--depth N limits --expand: give --expand too, and N >= 0")
    if args.block is None and (args.input or args.set):
        raise UsageError("--input and --set apply to --block only")
    output_format(args.output)  # a bad extension is a usage error before any work
    from runtime.paths import output_file

    output_file(args.output, "-o", reads=[args.spec])
    if args.input:
        _shape(args.input)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    try:
        render(
            args.spec,
            args.output,
            block=args.block,
            expand=args.expand,
            depth=args.depth,
            rankdir=args.rankdir,
            input_shape=_shape(args.input) if args.input else None,
            params=dict(_setting(s) for s in args.set),
        )
    except SpecError as e:
        for d in e.result.diagnostics:
            print(d.pretty(e.sources), file=sys.stderr)
        return 1
    print(f"wrote {args.output}", file=sys.stderr)  # as emit and export say
    return 0


def _shape(text: str) -> tuple:
    try:
        dims = tuple(int(x) for x in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) not in (1, 3) or min(dims) < 1:
        raise UsageError(f"--input wants C,H,W (or a vector length N) as positive integers, not '{text}'")
    if max(dims) > MAX_VALUE:
        raise UsageError(f"--input {text}: a size is too large; a spec's integers stay within 2^53 ({MAX_VALUE:,})")
    return dims


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--set wants KEY=VALUE, not '{text}'")
    # the value is read as a spec's values are (YAML 1.2, plain data, finite numbers)
    from archcompiler.diagnostics import Diagnostics
    from archcompiler.frontend.loader import load_text

    diags = Diagnostics()
    doc = load_text(f"{key.strip()}: {value}\n", "--set", diags) if "\n" not in value and "\r" not in value else None
    errors = [d for d in diags if d.is_error]
    if doc is None or errors or not isinstance(doc.data, dict):
        why = f": {errors[0].message}" if errors else ""
        raise UsageError(f"--set {key.strip()}: cannot read '{value}' as a value{why}")
    return key.strip(), next(iter(doc.data.values()))
