"""Graph IR -> standalone PyTorch source.

The output is one Python file that imports only torch: a class per composite block type
(its constructor takes the block's parameters), and a class for the model whose attribute
names are the spec's node names, so `state_dict` keys mirror the spec. `forward` has one
line per node with a shape comment. The emitter also returns a map from each generated
line to its node and YAML position, so errors at run time can be traced back to the spec.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from archcompiler.ir.expr import Sym, literal, value_of
from archcompiler.blocks.composite import BUILTIN_VARS, Composite
from archcompiler.ir.graph import INPUT, Graph
from archcompiler.passes.rules import topological_order
from archcompiler.diagnostics import Span
from archcompiler.frontend.schema import is_substitution

QUOTES = '"' * 3
PY_TYPES = {"integer": "int", "number": "float", "boolean": "bool", "string": "str"}


class CodegenError(Exception):
    exit_code = 1


@dataclass
class LineInfo:
    cls: str  # the generated class the line belongs to
    node: str  # the node it computes or constructs
    span: Span | None  # where that node is written in YAML


@dataclass
class Emitted:
    text: str
    class_name: str
    line_map: dict[int, LineInfo] = field(default_factory=dict)


def class_name(name: str) -> str:
    """snake_case -> CamelCase: attn_simple -> AttnSimple, conv_bn_relu -> ConvBnRelu."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Model"


@dataclass
class _Body:
    """The rendered parts of one class."""

    init: list[tuple[str, str]]  # (code, node)
    forward: list[tuple]  # (code, comment, node, comment without H x W relations)
    out_shape: tuple
    uses: set  # names of modules used: "F", "torch"


class Emitter:
    def __init__(self, graph: Graph, registry, spans=None):
        self.graph, self.registry = graph, registry
        self.classes: dict[str, str] = {}  # signature key -> class name
        self.rendered: list[tuple[str, Composite, list[str]]] = []  # classes, inner ones first
        self.bodies: dict[str, _Body] = {}
        self.uses: set = set()

    # ---------------------------------------------------------------- composites
    def composite_class(self, block: Composite, in_shape: tuple, env: dict) -> str:
        """The class for this instance of `block`: shared by every instance that renders
        to the same code (normally all of them), or a numbered variant otherwise."""
        params = _ctor_params(block)
        sym_env = {"in_channels": Sym("in_channels", env["in_channels"])}
        for extra in ("in_height", "in_width"):
            if extra in params:
                sym_env[extra] = Sym(extra, env[extra])
        sym_env.update({k: Sym(k, env[k]) for k in block.params})
        sym_in = (sym_env["in_channels"], *in_shape[1:])
        body = self.render_body(block.nodes, block.output, sym_in, sym_env, block)
        key = (block.name, tuple(c for c, _ in body.init), tuple(f[0] for f in body.forward))
        if key in self.classes:
            name = self.classes[key]
            self._merge_comments(self.bodies[name], body)
            return name
        taken = sum(1 for k in self.classes if k[0] == block.name)
        name = class_name(block.name) + (str(taken + 1) if taken else "")
        self.classes[key] = name
        self.bodies[name] = body
        self.rendered.append((name, block, params))
        return name

    @staticmethod
    def _merge_comments(kept: _Body, other: _Body) -> None:
        """Instances that share a class may differ in H x W: keep only what they agree on."""
        for i, (mine, theirs) in enumerate(zip(kept.forward, other.forward)):
            if mine[1] != theirs[1]:
                code, _, node, generic = mine
                kept.forward[i] = (code, generic, node, generic)

    def _class_lines(self, name, block, params):
        body = self.bodies[name]
        sig = ", ".join(["self", "in_channels: int"] + [_param_sig(k, block.params.get(k, {})) for k in params if k != "in_channels"])
        lines = [(f"class {name}(nn.Module):", None), *((d, None) for d in _docstring(block.summary)), ("", None)]
        lines += self._init_forward(name, sig, body, lambda n: block.doc.span(block.path + ("nodes", n), key=True))
        return lines

    # ---------------------------------------------------------------- shared
    def render_body(self, nodes: dict, output: str, in_shape: tuple, env: dict | None, block: Composite | None) -> _Body:
        """Run the shape rules over a graph's nodes (symbolically inside composites) and
        render constructor and forward lines."""
        shapes = {INPUT: in_shape}
        order = [n for n in _order(nodes) if n != INPUT]
        consumers = _consumers(nodes, order)
        var = _assign_vars(order, nodes, consumers, output)
        init, forward, uses = [], [], set()
        for name in order:
            raw = nodes[name]
            blk = self.registry.get(raw["type"])
            given = {k: (env[v[1:]] if env is not None and is_substitution(v) else v) for k, v in raw.items() if k not in ("type", "in")}
            inputs = _inputs(raw, order, name)
            ins = [shapes[i] for i in inputs]
            args = [var[i] for i in inputs]
            if blk.is_composite:
                bound = blk.bind(given, ins[0])
                cls = self.composite_class(blk, _values(ins[0]), _values(bound))
                init.append((f"self.{name} = {_composite_call(cls, blk, ins[0], bound, given)}", name))
                shapes[name] = self.render_body(blk.nodes, blk.output, ins[0], bound, blk).out_shape
                expr = f"self.{name}({args[0]})"
            else:
                p = blk.with_defaults(given)
                refs = {k: shapes[p[k]] for k in blk.refs if k in p}
                shapes[name] = tuple(blk.infer(p, ins, refs, inputs))
                ctor = blk.torch_module(p, ins)
                if ctor is not None:
                    init.append((f"self.{name} = {ctor}", name))
                expr = blk.torch_call(p, args, f"self.{name}" if ctor else None, {k: var[p[k]] for k in blk.refs if k in p})
            uses.update(m for m in ("F.", "torch.") if m in expr)
            comment = _shape_comment(shapes[name], in_shape, symbolic=block is not None)
            generic = _shape_comment(shapes[name], in_shape, symbolic=block is not None, generic=True)
            forward.append((f"{var[name]} = {expr}", comment, name, generic))
        forward.append((f"return {var[output]}", "", output, ""))
        self.uses |= uses
        return _Body(init, forward, shapes[output], uses)

    def _init_forward(self, cls, sig, body: _Body, span_of):
        lines = [(text, None) for text in wrap(f"def __init__({sig}):", 4)]
        lines.append(("        super().__init__()", None))
        for code, node in body.init:
            info = LineInfo(cls, node, span_of(node))
            lines += [(text, info) for text in wrap(code, 8)]
        lines += [("", None), ("    def forward(self, x: torch.Tensor) -> torch.Tensor:", None)]
        for code, comment, node, _ in body.forward:
            info = LineInfo(cls, node, span_of(node))
            lines += [(text, info) for text in wrap(code, 8, f"  # {comment}" if comment else "")]
        return lines

    # ---------------------------------------------------------------- the model
    def model_class(self, name: str, summary: str, totals: dict) -> list:
        g = self.graph
        nodes = {n.name: _raw_node(n) for n in g.layers()}
        body = self.render_body(nodes, g.output, g.input.shape, None, None)
        cls = class_name(name)
        facts = (
            f"Input {_shape_comment(g.input.shape, None)}, output {_shape_comment(body.out_shape, None)}; "
            f"{totals['params']:,} parameters, {totals['flops'] / 1e9:.3f} GFLOPs per image (forward)."
        )
        doc = [f"class {cls}(nn.Module):", *_docstring(summary or name, facts), ""]
        lines = [(d, None) for d in doc]
        lines += self._init_forward(cls, "self", body, lambda n: g.nodes[n].span)
        return cls, lines


def emit(graph: Graph, registry, *, name: str, summary: str, totals: dict, header: list[str]) -> Emitted:
    e = Emitter(graph, registry)
    cls, model_lines = e.model_class(name, summary, totals)
    chunks = [e._class_lines(*r) for r in e.rendered] + [model_lines]
    imports = ["import torch"]
    if "F." in e.uses:
        imports.append("import torch.nn.functional as F")
    imports.append("from torch import nn")
    out: list[tuple[str, LineInfo | None]] = [(h, None) for h in header]
    out += [("", None)] + [(i, None) for i in imports] + [("", None), (f'__all__ = ["{cls}"]', None)]
    for chunk in chunks:
        out += [("", None), ("", None)] + chunk
    text = "\n".join(code for code, _ in out) + "\n"
    line_map = {i: info for i, (_, info) in enumerate(out, start=1) if info is not None}
    return Emitted(text, cls, line_map)


# -------------------------------------------------------------------- helpers

LINE_LENGTH = 120


def wrap(code: str, indent: int, comment: str = "") -> list[str]:
    """Lay out one statement as ruff/black format would at LINE_LENGTH: on one line if it
    fits, else its outermost call split after "(", else one argument per line."""
    pad = " " * indent
    if len(pad) + len(code) + len(comment) <= LINE_LENGTH:
        return [pad + code + comment]
    open_at, close_at = _outer_call(code)
    if open_at is None:
        return [pad + code + comment]
    head, inner, tail = code[: open_at + 1], code[open_at + 1 : close_at], code[close_at:]
    args = _split_args(inner)
    one_line = pad + "    " + ", ".join(args)
    if not code.startswith("def ") and len(one_line) <= LINE_LENGTH:
        return [pad + head, one_line, pad + tail + comment]
    return [pad + head, *(f"{pad}    {a}," for a in args), pad + tail + comment]


def _outer_call(code: str):
    """The first "(" whose matching ")" ends the expression (before a trailing ":")."""
    end = len(code) - 1 - code.endswith(":")
    depth, opened = 0, None
    quote = None
    for i, ch in enumerate(code):
        if quote:
            quote = None if ch == quote else quote
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            if depth == 0 and ch == "(":
                opened = i
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and ch == ")" and opened is not None:
                if i == end:
                    return opened, i
                opened = None
    return None, None


def _split_args(inner: str) -> list[str]:
    args, depth, start, quote = [], 0, 0, None
    for i, ch in enumerate(inner):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    args.append(inner[start:].strip())
    return [a for a in args if a]


def _raw_node(node) -> dict:
    """A top-level node as a definition-like mapping of concrete, validated values."""
    raw = {"type": node.type, "in": list(node.inputs)}
    raw.update(node.meta["given"])
    return raw


def _inputs(raw: dict, order: list[str], name: str) -> list[str]:
    given = raw.get("in")
    if given is None:
        i = order.index(name)
        return [order[i - 1] if i else INPUT]
    return [given] if isinstance(given, str) else list(given)


def _order(nodes: dict) -> list[str]:
    g = Graph("", {INPUT: _Stub(INPUT, [], {})} | {n: _Stub(n, _inputs(raw, list(nodes), n), _ref_params(raw)) for n, raw in nodes.items()}, "")
    return topological_order(g)


@dataclass
class _Stub:
    name: str
    inputs: list
    refs: dict

    def dependencies(self):
        return self.inputs + [r for r in self.refs.values() if r not in self.inputs]


def _ref_params(raw: dict) -> dict:
    return {"size_of": raw["size_of"]} if raw.get("type") == "upsample" and isinstance(raw.get("size_of"), str) else {}


def _consumers(nodes: dict, order: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {INPUT: [], **{n: [] for n in order}}
    for n in order:
        for dep in _inputs(nodes[n], order, n) + list(_ref_params(nodes[n]).values()):
            out[dep].append(n)
    return out


def _assign_vars(order: list[str], nodes: dict, consumers: dict, output: str) -> dict[str, str]:
    """A node's variable is `x` when it can take it over (the node holding `x` is read for the
    last time here), which gives nanoGPT-like `x = self.block(x)` chains; otherwise its name."""
    var = {INPUT: "x"}
    holder = INPUT
    for i, n in enumerate(order):
        later = set(order[i + 1:])
        deps = _inputs(nodes[n], order, n) + list(_ref_params(nodes[n]).values())
        if holder in deps and not (set(consumers[holder]) & later):
            var[n] = "x"
            holder = n
        else:
            var[n] = n
    return var


def _values(shape_or_env):
    if isinstance(shape_or_env, dict):
        return {k: (v.value if isinstance(v, Sym) else v) for k, v in shape_or_env.items()}
    return tuple(v.value if isinstance(v, Sym) else v for v in shape_or_env)


def _ctor_params(block: Composite) -> list[str]:
    text = repr(block.nodes)
    extra = [v for v in BUILTIN_VARS[1:] if f"${v}" in text]
    required = [k for k in block.params if not _literal_default(block.params[k])]
    optional = [k for k in block.params if _literal_default(block.params[k])]
    return ["in_channels", *extra, *required, *optional]


def _literal_default(decl: dict) -> bool:
    return "default" in decl and not is_substitution(decl["default"])


def _param_sig(name: str, decl: dict) -> str:
    if name in BUILTIN_VARS:
        return f"{name}: int"
    if "type" in decl:
        ann = PY_TYPES[decl["type"]]
    elif "oneOf" in decl or "enum" in decl:
        kinds = {PY_TYPES.get(o.get("type"), "str") for o in decl.get("oneOf", [])} or {"str"}
        ann = " | ".join(sorted(kinds))
    else:
        ann = None
    head = f"{name}: {ann}" if ann else name
    return f"{head} = {literal(decl['default'])}" if _literal_default(decl) else head


def _composite_call(cls: str, block: Composite, in_shape: tuple, bound: dict, given: dict) -> str:
    args = [literal(in_shape[0])]
    args += [literal(bound[v]) for v in BUILTIN_VARS[1:] if v in _ctor_params(block)]
    for k, decl in block.params.items():
        if k in given or not _literal_default(decl):
            args.append(f"{k}={literal(bound[k])}")
    return f"{cls}({', '.join(args)})"


def _shape_comment(shape: tuple, in_shape: tuple | None, symbolic: bool = False, generic: bool = False) -> str:
    if len(shape) == 1:
        return f"(B, {shape[0]})"
    c, h, w = shape
    if not symbolic:
        return f"(B, {c}, {value_of(h)}, {value_of(w)})"
    if generic:
        same = value_of(h) == value_of(in_shape[1]) and value_of(w) == value_of(in_shape[2])
        return f"(B, {c}, H, W)" if same else f"(B, {c}, H', W')"
    return f"(B, {c}, {_rel(h, in_shape[1], 'H')}, {_rel(w, in_shape[2], 'W')})"


def _rel(n, ref, sym: str) -> str:
    """Spatial size relative to the block's input: H, H/2, 2H, or H' (some other size)."""
    n, ref = value_of(n), value_of(ref)
    if n == ref:
        return sym
    if n < ref and ref % n == 0:
        return f"{sym}/{ref // n}"
    if n > ref and n % ref == 0:
        return f"{n // ref}{sym}"
    return f"{sym}'"


def _docstring(*paragraphs: str) -> list[str]:
    """A class docstring, wrapped to fit 100 columns."""
    lines: list[str] = []
    for i, para in enumerate(paragraphs):
        text = " ".join(str(para).split()).replace(QUOTES, "'" * 3).replace(chr(92), "/")
        lines += [""] * bool(i) + textwrap.wrap(text, 92)
    lines[0] = QUOTES + lines[0]
    if len(lines) == 1:
        return [f"    {lines[0]}{QUOTES}"]
    return [f"    {line}" if line else "" for line in lines] + [f"    {QUOTES}"]
