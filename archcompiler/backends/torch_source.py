"""Graph IR -> standalone PyTorch source.

The output is one Python file that imports only torch: a class per composite block (its
constructor takes the block's parameters that its code uses), and a class for the model
whose attribute names are the spec's node names, so `state_dict` keys mirror the spec.
`forward` has one line per node with a shape comment. The emitter also returns a map from
each generated line to its node and YAML position, so errors at run time can be traced back
to the spec.

Everything here is read off the IR the passes produced: each composite node's body, with
its parameters and shapes as expressions in the block's parameters (`sym_params`,
`sym_shape`) and the arguments its caller passes (`call_args`). No shape rule runs again
and no YAML is read. Each instance body is rendered once; instances that render to the
same code share one class, so the cost is linear in the number of nodes.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from archcompiler.backends.walker import Names, walk
from archcompiler.blocks.composite import BUILTIN_VARS
from archcompiler.diagnostics import Span
from archcompiler.ir.expr import is_symbolic, literal, render, value_of, variables
from archcompiler.ir.graph import Graph, Node

QUOTES = '"' * 3
PY_TYPES = {"integer": "int", "number": "float", "boolean": "bool", "string": "str"}
SPATIAL = ("in_height", "in_width")
MODULE_NAMES = ("torch", "nn", "F")
# A class reference inside rendered code, resolved once every class has its final name.
_CLASS_REF = re.compile("\x03([0-9]+)\x04")


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
class _Class:
    """One generated class: its signature and rendered lines (class references unresolved)."""

    id: int
    base: str  # the block (or model) name it is named after
    block: object  # the Composite, or None for the model class
    params: list[str]  # constructor parameters, in signature order
    init: list[tuple[str, Node]]
    forward: list[list]  # [code, comment, node, comment without H x W relations]
    name: str = ""


class Emitter:
    def __init__(self, registry):
        self.registry = registry
        self.classes: list[_Class] = []  # inner classes first
        self._by_key: dict[tuple, _Class] = {}
        self._by_instance: dict[tuple, _Class] = {}

    # ---------------------------------------------------------------- composites
    def class_for(self, node: Node) -> _Class:
        """The class of one composite instance: shared by every instance that renders to the
        same code (normally all of them), or a variant of its own otherwise."""
        memo = (node.type, tuple(sorted((k, repr(v)) for k, v in node.meta["env"].items())))
        if memo in self._by_instance:
            return self._by_instance[memo]
        block = self.registry.get(node.type)
        init, forward, used = self._render(node.body, frame=True)
        params = _signature(block, used)
        init, forward = self._spell(node.body, params, init, forward, used)
        key = (block.name, tuple(params), tuple(c for c, _ in init), tuple(f[0] for f in forward))
        cls = self._by_key.get(key)
        if cls is None:
            cls = _Class(len(self.classes), block.name, block, params, init, forward)
            self._by_key[key] = cls
            self.classes.append(cls)
        else:
            _merge_comments(cls, forward)
        self._by_instance[memo] = cls
        return cls

    def _render(self, graph: Graph, frame: bool):
        """Constructor and forward lines of a graph, with variables still as markers."""
        w = walk(graph, reserved=MODULE_NAMES + SPATIAL + ("self",))
        in_shape = graph.input.meta["sym_shape"]
        init, forward = [], []
        for step in w.steps:
            node = step.node
            if node.kind == "composite":
                child = self.class_for(node)
                init.append((f"self.{node.name} = {_composite_call(child, node)}", node))
                expr = f"self.{node.name}({step.args[0]})"
            elif node.kind == "repeat":
                init.append((f"self.{node.name} = {self._sequential(node)}", node))
                expr = f"self.{node.name}({step.args[0]})"
            else:
                block = self.registry.get(node.type)
                p = node.meta["sym_params"]
                ins = [graph.nodes[i].meta["sym_shape"] for i in node.inputs]
                ctor = block.torch_module(p, ins)
                if ctor is not None:
                    init.append((f"self.{node.name} = {ctor}", node))
                expr = block.torch_call(p, step.args, f"self.{node.name}" if ctor else None, step.refs)
            shape = node.meta["sym_shape"]
            forward.append([f"{step.var} = {expr}", _shape_comment(shape, in_shape, frame), node, _shape_comment(shape, in_shape, frame, True)])
        forward.append([f"return {w.output}", "", graph.nodes[graph.output], ""])
        used = set()
        for code, _ in init:
            used |= variables(code)
        fwd_used = set()
        for code, *_ in forward:
            fwd_used |= variables(code)
        return init, forward, (used, fwd_used)

    def _sequential(self, node: Node) -> str:
        """A repeated node as nn.Sequential, so its instances' keys are `name.0`, `name.1`;
        instances after the first that are built alike are written as one loop."""
        parts = []
        for inst in node.body.layers():
            if inst.kind == "composite":
                parts.append(_composite_call(self.class_for(inst), inst))
                continue
            ins = [node.body.nodes[i].meta["sym_shape"] for i in inst.inputs]
            parts.append(self.registry.get(inst.type).torch_module(inst.meta["sym_params"], ins))  # check refused module-less ones
        rest = parts[1:]
        count = node.meta.get("sym_repeat", len(parts))
        if is_symbolic(count) and rest and all(p == rest[0] for p in rest):  # the count is a block parameter
            return f"nn.Sequential({parts[0]}, *[{rest[0]} for _ in range({literal(count - 1)})])"
        if len(rest) >= 2 and all(p == rest[0] for p in rest):
            if parts[0] == rest[0]:
                return f"nn.Sequential(*[{rest[0]} for _ in range({len(parts)})])"
            return f"nn.Sequential({parts[0]}, *[{rest[0]} for _ in range({len(rest)})])"
        return f"nn.Sequential({', '.join(parts)})"

    def _spell(self, body: Graph, params: list[str], init, forward, used):
        """Write each variable where it is used: a constructor argument in __init__, an
        attribute in forward (stored by __init__), or a size read off the input tensor."""
        _, fwd_used = used
        attrs = Names(body.nodes)
        stored = {p: attrs.take(p) for p in params if p in fwd_used and p not in SPATIAL}
        lines = [(f"self.{a} = {p}", body.input) for p, a in stored.items()]
        lines += [(render(code), node) for code, node in init]
        fwd = []
        spatial = [v for v in SPATIAL if v in fwd_used]
        if spatial:  # sizes that depend on the input are read from it, never baked in
            read = "in_height, in_width = x.shape[-2:]" if len(spatial) == 2 else f"{spatial[0]} = x.shape[{-2 if spatial[0] == 'in_height' else -1}]"
            fwd.append([read, "", body.input, ""])

        def spell(name):
            return name if name in SPATIAL else f"self.{stored[name]}"

        for code, comment, node, generic in forward:
            fwd.append([render(code, spell), render(comment), node, render(generic)])
        return lines, fwd

    # ---------------------------------------------------------------- the model
    def model_class(self, graph: Graph, name: str) -> _Class:
        init, forward, _ = self._render(graph, frame=False)
        cls = _Class(len(self.classes), name, None, [], [(render(c), n) for c, n in init],
                     [[render(c), m, n, g] for c, m, n, g in forward])
        return cls


def emit(graph: Graph, registry, *, name: str, summary: str, totals: dict, header: list[str]) -> Emitted:
    e = Emitter(registry)
    model = e.model_class(graph, name)
    classes = e.classes + [model]
    helpers = _helpers(registry)
    _name_classes(model, e.classes, helpers)
    names = {c.id: c.name for c in e.classes}
    for c in classes:
        c.init = [(_CLASS_REF.sub(lambda m: names[int(m.group(1))], code), node) for code, node in c.init]

    chunks = []
    for c in e.classes:
        sig = ", ".join(["self"] + [_param_sig(p, c.block.params.get(p, {})) for p in c.params])
        doc = _docstring(c.block.summary)
        chunks.append(_class_lines(c, sig, doc))
    facts = (
        f"Input {_shape_comment(graph.input.shape, None)}, output {_shape_comment(graph.nodes[graph.output].shape, None)}; "
        f"{totals['params']:,} parameters, {totals['flops'] / 1e9:.3f} GFLOPs per image (forward)."
    )
    chunks.append(_class_lines(model, "self", _docstring(summary or name, facts)))

    code = "\n".join(text for chunk in chunks for text, _ in chunk)
    used_helpers = [h for h in helpers if re.search(rf"\b{h}\(", code)]
    imports = ["import torch"]
    if "F." in code or any("F." in helpers[h] for h in used_helpers):
        imports.append("import torch.nn.functional as F")
    imports.append("from torch import nn")
    out: list[tuple[str, LineInfo | None]] = [(h, None) for h in header]
    out += [("", None)] + [(i, None) for i in imports] + [("", None), (f'__all__ = ["{model.name}"]', None)]
    for h in used_helpers:
        out += [("", None), ("", None)] + [(line, None) for line in helpers[h].splitlines()]
    for chunk in chunks:
        out += [("", None), ("", None)] + chunk
    text = "\n".join(code for code, _ in out) + "\n"
    line_map = {i: info for i, (_, info) in enumerate(out, start=1) if info is not None}
    return Emitted(text, model.name, line_map)


def _helpers(registry) -> dict[str, str]:
    """Module-level functions and classes that block types ask for (an activation chosen by name, LayerNorm2d)."""
    out = {}
    for block in registry:
        out.update(block.torch_helpers())
    return out


def _name_classes(model: _Class, classes: list[_Class], helpers: dict) -> None:
    """CamelCase names, unique by construction: the model's first, then each block's, with a
    number for a second variant or a clash. Constructor arguments and helpers are never shadowed."""
    reserved = set(MODULE_NAMES) | set(helpers) | {p for c in classes for p in c.params}
    names = Names(reserved)
    model.name = names.take(class_name(model.base), sep="")
    for c in classes:
        c.name = names.take(class_name(c.base), sep="")


def _class_lines(c: _Class, sig: str, doc: list[str]) -> list:
    lines = [(f"class {c.name}(nn.Module):", None), *((d, None) for d in doc), ("", None)]
    lines += [(text, None) for text in wrap(f"def __init__({sig}):", 4)]
    lines.append(("        super().__init__()", None))
    for code, node in c.init:
        info = LineInfo(c.name, node.name, node.span)
        lines += [(text, info) for text in wrap(code, 8)]
    lines += [("", None), ("    def forward(self, x: torch.Tensor) -> torch.Tensor:", None)]
    for code, comment, node, _ in c.forward:
        info = LineInfo(c.name, node.name, node.span)
        lines += [(text, info) for text in wrap(code, 8, f"  # {comment}" if comment else "")]
    return lines


def _merge_comments(kept: _Class, forward: list) -> None:
    """Instances that share a class may differ in H x W: keep only what they agree on."""
    for mine, theirs in zip(kept.forward, forward):
        if mine[1] != theirs[1]:
            mine[1] = mine[3]


def _signature(block, used) -> list[str]:
    """The constructor's parameters: those its code uses, built-ins first, then required, then
    those with a default. A size read in forward only is taken from the input, not passed."""
    init_used, fwd_used = used
    need = init_used | (fwd_used - set(SPATIAL))
    builtins = [v for v in BUILTIN_VARS if v in need]
    required = [k for k in block.params if k in need and not _literal_default(block.params[k])]
    optional = [k for k in block.params if k in need and _literal_default(block.params[k])]
    return builtins + required + optional


def _composite_call(child: _Class, node: Node) -> str:
    """`Child(in_channels, out=..., ...)`: arguments in the caller's parameters, each one the
    child uses; a parameter with a default is passed when the spec gives it."""
    args = node.meta["call_args"]
    given = node.meta["given"]
    parts = []
    for p in child.params:
        if p in BUILTIN_VARS:
            parts.append(literal(args[p]))
        elif p in given or not _literal_default(child.block.params[p]):
            parts.append(f"{p}={literal(args[p])}")
    return f"\x03{child.id}\x04({', '.join(parts)})"


def _literal_default(decl: dict) -> bool:
    d = decl.get("default")
    return "default" in decl and not (isinstance(d, str) and "$" in d)


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


# -------------------------------------------------------------------- layout

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
    if n == 1:
        return "1"
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
