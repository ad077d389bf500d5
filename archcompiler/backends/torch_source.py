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

import ast
import functools
import re
import textwrap
from dataclasses import dataclass, field

from archcompiler.ir.walk import AMBIGUOUS, Names, walk
from archcompiler.blocks.registry import CODE_GLOBALS
from archcompiler.diagnostics import Span
from archcompiler.ir.arith import condition_source, parse_condition
from archcompiler.ir.expr import Sym, is_symbolic, literal, render, value_of, variables
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
    forward: list[list]  # [code, node, its shape comment's parts: (C, H, W), (C,), or () for none]
    name: str = ""
    inputs: list[str] = field(default_factory=lambda: ["x"])  # forward's arguments
    returns: int = 1  # how many tensors forward returns


class Emitter:
    def __init__(self, registry):
        self.registry = registry
        self.classes: list[_Class] = []  # inner classes first
        self._by_key: dict[tuple, _Class] = {}
        self._by_instance: dict[tuple, _Class] = {}
        self._unions_tried: set[str] = set()
        self.instances: dict[str, list[Node]] = {}  # block type -> its composite instances
        self.repeats: dict[tuple, list] = {}  # (block type, node) -> its repeated nodes in every instance, with their parameters
        # what a variable of forward must not hide: the modules, built-ins and helpers it calls
        self.taken_globals = (*MODULE_NAMES, *SPATIAL, "self", *CODE_GLOBALS, *_helpers(registry))

    def collect(self, graph: Graph) -> None:
        """Every composite instance at any depth, by block type: a block with optional nodes
        becomes one class only if it fits all of them."""
        for _, node in graph.walk():
            if node.kind == "composite":
                self.instances.setdefault(node.type, []).append(node)
                for inner in node.body.nodes.values():
                    if inner.kind == "repeat":
                        self.repeats.setdefault((node.type, inner.name), []).append((inner, node.meta["env"]))

    # ---------------------------------------------------------------- composites
    def class_for(self, node: Node) -> _Class:
        """The class of one composite instance: shared by every instance that renders to the
        same code (normally all of them), or a variant of its own otherwise."""
        memo = _memo(node)
        if memo in self._by_instance:
            return self._by_instance[memo]
        block = self.registry.get(node.type)
        if node.body.optional and block.name not in self._unions_tried:
            self._unions_tried.add(block.name)
            cls = self._union(block, self.instances.get(block.name) or [node])
            if cls is not None:
                return cls
        init, forward, used, inputs = self._render(node.body, frame=True)
        params = _signature(block, used)
        init, forward = self._spell(node.body, params, init, forward, used)
        key = (block.name, tuple(params), tuple(c for c, _ in init), tuple(f[0] for f in forward))
        cls = self._by_key.get(key)
        if cls is None:
            cls = _Class(len(self.classes), block.name, block, params, init, forward, inputs=inputs)
            self._by_key[key] = cls
            self.classes.append(cls)
        else:
            _merge_comments(cls, forward)
        self._by_instance[memo] = cls
        return cls

    def _render(self, graph: Graph, frame: bool):
        """Constructor and forward lines of a graph, with variables still as markers."""
        w = walk(graph, reserved=self.taken_globals)
        in_shape = graph.input.meta["sym_shape"]
        init, forward = [], []
        loop = _loop_name(w)
        for step in w.steps:
            node = step.node
            ctor, expr = self._fragment(graph, node, step.args, step.refs)
            if ctor is not None:
                init.append((f"self.{node.name} = {ctor}", node))
            parts = _node_parts(node, in_shape, frame, _named_inputs(graph))
            forward.append([_assignment(step.var, node, expr, loop), node, parts])
        forward.append([f"return {w.output}", graph.nodes[graph.output], ()])
        init = _in_spec_order(init, graph)
        return init, forward, _used(init, forward), w.inputs

    def _fragment(self, graph: Graph, node: Node, args: list[str], refs: dict[str, str]) -> tuple[str | None, str]:
        """A node's module (None when it has none) and the expression computing its output."""
        if node.kind == "composite":
            return _composite_call(self.class_for(node), node), f"self.{node.name}({', '.join(args)})"
        if node.kind == "repeat" and node.body.outputs:  # chained outputs: a loop over an nn.ModuleList (see _assignment)
            return self._sequential(node, graph.name, "nn.ModuleList"), f"self.{node.name}[0]({', '.join(args)})"
        if node.kind == "repeat":
            return self._sequential(node, graph.name), f"self.{node.name}({args[0]})"
        block = self.registry.get(node.type)
        p = node.meta["sym_params"]
        ins = [graph.nodes[i].meta["sym_shape"] for i in node.inputs]
        ctor = block.torch_module(p, ins)
        return ctor, block.torch_call_at(p, args, f"self.{node.name}" if ctor else None, refs, ins)

    # ---------------------------------------------------------------- optional nodes
    def _union(self, block, instances: list[Node]) -> _Class | None:
        """One class for every instance of a block with optional nodes, as torchvision writes
        one Bottleneck: each optional node is built when its condition holds (`self.n = ... if
        cond else None`) and skipped in forward when absent. A node's code is taken from one
        instance and kept only if it computes the same thing in every other instance (equal
        text, or arithmetic that evaluates equal there); otherwise None, and the caller falls
        back to a class per variant."""
        first = instances[0].body
        fuller = sorted(instances, key=lambda i: -len(i.body.nodes))
        present = [n for n in first.written if any(n in i.body.nodes for i in instances)]
        gone = {n: first.optional[n][1] for n in first.written if n not in present}

        def resolve(n):
            while n in gone:
                n = gone[n]
            return n

        nodes = {n: first.nodes[n] for n in first.inputs}
        for n in present:
            rep = next(i.body.nodes[n] for i in fuller if n in i.body.nodes)
            refs = {k: resolve(r) for k, r in rep.meta["raw_refs"].items()}
            if n in first.optional:
                refs[_OTHERWISE] = resolve(first.optional[n][1])
            several = {k: rep.meta[k] for k in ("outputs", "index", "part_of") if k in rep.meta}  # a composite with several outputs, and its parts
            nodes[n] = Node(n, rep.kind, rep.type, inputs=[resolve(i) for i in rep.meta["raw_inputs"]], refs=refs, meta=several)
        union = Graph(block.name, nodes, resolve(first.raw_output), inputs=first.inputs,
                      outputs=[resolve(o) for o in first.raw_outputs], raw_outputs=first.raw_outputs)
        if _cyclic(union):  # nodes that stand in for each other (m1 otherwise m2, m2 otherwise m1): a class per variant
            return None
        w = walk(union, reserved=self.taken_globals)
        loop = _loop_name(w)
        attrs = Names(union.nodes)
        init, forward = [], []
        for step in w.steps:
            n = step.node.name
            refs = {k: v for k, v in step.refs.items() if k != _OTHERWISE}
            chosen = self._agreed(n, instances, fuller, step.args, refs)
            if chosen is None:
                return None
            (ctor, expr), inst = chosen
            node = inst.body.nodes[n]
            # the line's value in every instance: the node's, or where it is absent its stand-in's
            parts = functools.reduce(_merged, [_node_parts(_holder(i.body, n), i.body.input.meta["sym_shape"], True, _named_inputs(i.body))
                                               for i in instances])
            if n not in first.optional:
                if ctor is not None:
                    init.append((f"self.{n} = {ctor}", node))
                forward.append([_assignment(step.var, node, expr, loop), node, parts])
                continue
            sym_env = {k: Sym.var(k, v) for k, v in inst.meta["env"].items()}
            cond = condition_source(parse_condition(first.optional[n][0]), sym_env)
            stand_in = step.refs[_OTHERWISE]
            if ctor is not None:
                init.append(_Optional(f"self.{n}", ctor, cond, node))
                test = f"self.{n} is not None"
            else:
                flag = attrs.take(f"use_{n}")
                init.append((f"self.{flag} = {cond}", node))
                test = f"self.{flag}"
            forward.append([_either(step.var, expr, test, stand_in), node, parts])
        forward.append([f"return {w.output}", union.nodes[union.output], ()])
        init = _grouped(_in_spec_order(init, union))
        used = _used(init, forward)
        params = _signature(block, used)
        init, forward = self._spell(union, params, init, forward, used, taken=attrs.taken)
        cls = _Class(len(self.classes), block.name, block, params, init, forward, inputs=w.inputs)
        self.classes.append(cls)
        for inst in instances:
            self._by_instance[_memo(inst)] = cls
        return cls

    def _agreed(self, name: str, instances: list[Node], fuller: list[Node], args, refs):
        """The code of node `name` from the first instance (fullest first) whose code computes
        the same in every instance that has the node, with the instance it came from."""
        fragments = [(self._fragment(i.body, i.body.nodes[name], args, refs), i) for i in fuller if name in i.body.nodes]
        for candidate, source in fragments:
            if all(_agrees(c, o, i.meta["env"]) for (other, i) in fragments for c, o in zip(candidate, other)):
                return candidate, source
        return None

    def _sequential(self, node: Node, block: str, container: str = "nn.Sequential") -> str:
        """A repeated node as nn.Sequential, so its instances' keys are `name.0`, `name.1`;
        instances after the first that are built alike are written as one loop. A block with
        several outputs chained from instance to instance is an nn.ModuleList, looped over."""
        items = self._stack(node, block)
        if container == "nn.Sequential":
            return f"nn.Sequential({', '.join(items)})"
        if len(items) == 1 and items[0].startswith("*["):  # every instance alike: the comprehension itself
            return f"nn.ModuleList({items[0][1:]})"
        return f"nn.ModuleList([{', '.join(items)}])"

    def _stack(self, node: Node, block: str | None = None) -> list[str]:
        """The instances' constructors, in order: `*[Block(...) for _ in range(n)]` for those
        built alike after the first (or all of them)."""
        parts = self._instances(node)
        rest = parts[1:]
        count = node.meta.get("sym_repeat", len(parts))
        # `$index` (the instance number) is a variable the loop binds; written out, each its value
        loop = "index" if any(_INDEX_MARK in p for p in parts) else "_"
        first = parts[0].replace(_INDEX_MARK, "0")
        symbolic = is_symbolic(count) and bool(rest)  # the count is a block parameter
        if is_symbolic(count) and not rest:
            # one instance of a count that is a parameter: the loop that other counts write, so
            # that one class fits every count; the first instance of a use with more, where its
            # first is built as this one (a `first:`, or a width that changes after it)
            uses = self.repeats.get((block, node.name), [])
            longer = next((self._stack(other) for other, _ in uses if other.meta["repeat"] > 1), None)
            env = next((env for other, env in uses if other is node), None)
            if longer is not None and len(longer) == 2 and env is not None and _agrees(longer[0], first, env):
                return longer
            if not node.meta.get("has_first"):
                return [f"*[{parts[0]} for {loop} in range({literal(count)})]"]
        if (symbolic or len(rest) >= 2) and all(p == rest[0] for p in rest):
            n = literal(count) if symbolic else str(len(parts))
            if parts[0] == rest[0]:
                return [f"*[{rest[0]} for {loop} in range({n})]"]
            after = f"1, {n}" if loop == "index" else (literal(count - 1) if symbolic else str(len(rest)))
            return [first, f"*[{rest[0]} for {loop} in range({after})]"]
        return [p.replace(_INDEX_MARK, str(i)) for i, p in enumerate(parts)]

    def _instances(self, node: Node) -> list[str]:
        """The constructor of each instance of a repeated node, in order."""
        parts = []
        for inst in (n for n in node.body.layers() if n.kind != "part"):
            if inst.kind == "composite":
                parts.append(_composite_call(self.class_for(inst), inst))
                continue
            ins = [node.body.nodes[i].meta["sym_shape"] for i in inst.inputs]
            parts.append(self.registry.get(inst.type).torch_module(inst.meta["sym_params"], ins))  # check refused module-less ones
        return parts

    def _spell(self, body: Graph, params: list[str], init, forward, used, taken=()):
        """Write each variable where it is used: a constructor argument in __init__, an
        attribute in forward (stored by __init__), or a size read off the input tensor."""
        _, fwd_used = used
        attrs = Names(set(body.nodes) | set(taken))
        stored = {p: attrs.take(p) for p in params if p in fwd_used and p not in SPATIAL}
        lines = [(f"self.{a} = {argument(p)}", body.input) for p, a in stored.items()]
        lines += [(render(code, argument), node) for code, node in init]
        fwd = []
        spatial = [v for v in SPATIAL if v in fwd_used]
        if spatial:  # sizes that depend on the input are read from it, never baked in
            read = "in_height, in_width = x.shape[-2:]" if len(spatial) == 2 else f"{spatial[0]} = x.shape[{-2 if spatial[0] == 'in_height' else -1}]"
            fwd.append([read, body.input, ()])

        def spell(name):
            return name if name in SPATIAL else f"self.{stored[name]}"

        for code, node, parts in forward:
            fwd.append([render(code, spell), node, _rendered(parts)])
        return lines, fwd

    # ---------------------------------------------------------------- the model
    def model_class(self, graph: Graph, name: str) -> _Class:
        init, forward, _, _ = self._render(graph, frame=False)
        cls = _Class(len(self.classes), name, None, [], [(render(c), n) for c, n in init],
                     [[render(c), n, _rendered(parts)] for c, n, parts in forward], returns=len(graph.results))
        return cls


def emit(graph: Graph, registry, *, name: str, summary: str, totals: dict, header: list[str]) -> Emitted:
    e = Emitter(registry)
    e.collect(graph)
    model = e.model_class(graph, name)
    classes = e.classes + [model]
    helpers = _helpers(registry)
    _name_classes(model, e.classes, helpers)
    names = {c.id: c.name for c in e.classes}
    for c in classes:
        c.init = [(_CLASS_REF.sub(lambda m: names[int(m.group(1))], code), node) for code, node in c.init]

    chunks = []
    for c in e.classes:
        sig = ", ".join(["self"] + [_param_sig(p, c.block) for p in c.params])
        doc = _docstring(c.block.summary)
        chunks.append(_class_lines(c, sig, doc))
    shapes = [_shape_comment(graph.nodes[o].shape, None) for o in graph.results]
    returned = f"output {shapes[0]}" if len(shapes) == 1 else f"outputs {', '.join(shapes[:-1])} and {shapes[-1]}"
    facts = (
        f"Input {_shape_comment(graph.input.shape, None)}, {returned}; "
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


_INDEX_MARK = "\x01index\x02"  # `$index` inside a block, a Sym variable (passes/build.py)
_OTHERWISE = "\x00otherwise"  # an optional node's stand-in, a dependency of the node in the walk


def _memo(node: Node) -> tuple:
    return (node.type, tuple(sorted((k, repr(v)) for k, v in node.meta["env"].items())))


def _cyclic(graph: Graph) -> bool:
    """Whether some node depends on itself: in a union of variants, two optional nodes that
    are each other's `otherwise:` do, though each variant has only one of them."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str) -> bool:
        if state.get(name) == 2 or name not in graph.nodes:
            return False
        if state.get(name) == 1:
            return True
        state[name] = 1
        if any(visit(d) for d in graph.nodes[name].dependencies()):
            return True
        state[name] = 2
        return False

    return any(visit(n) for n in graph.nodes)


def _used(init, forward) -> tuple[set, set]:
    """The block parameters that the constructor's and forward's code use."""
    used, fwd_used = set(), set()
    for code, _ in init:
        used |= variables(code)
    for code, *_ in forward:
        fwd_used |= variables(code)
    return used, fwd_used


@dataclass
class _Optional:
    """An optional module: `target = ctor` when `cond` holds, else None."""

    target: str
    ctor: str
    cond: str
    node: Node


def _grouped(items: list) -> list[tuple[str, Node]]:
    """Constructor lines, with consecutive optional modules built under the same condition
    sharing one `if` (a projection's conv and its batch norm)."""
    out, i = [], 0
    while i < len(items):
        item = items[i]
        if not isinstance(item, _Optional):
            out.append(item)
            i += 1
            continue
        j = i + 1
        while j < len(items) and isinstance(items[j], _Optional) and items[j].cond == item.cond:
            j += 1
        group = items[i:j]
        if len(group) == 1:
            out.append((_either(item.target, item.ctor, item.cond, "None"), item.node))
        else:
            out.append((" = ".join(g.target for g in group) + " = None", item.node))
            out.append((f"if {item.cond}:", item.node))
            out += [(f"    {g.target} = {g.ctor}", g.node) for g in group]
        i = j
    return out


def _either(target: str, value: str, test: str, otherwise: str) -> str:
    """`target = value if test else otherwise`, as an if statement when that reads better
    (the target keeps its value otherwise) or the line would not fit."""
    line = f"{target} = {value} if {test} else {otherwise}"
    if target == otherwise:
        return f"if {test}:\n    {target} = {value}"
    if len(render(line)) + 8 <= LINE_LENGTH:
        return line
    # not `target = otherwise` first: `value` may read the variable `target` names (x = x + y)
    return f"if {test}:\n    {target} = {value}\nelse:\n    {target} = {otherwise}"


_NO_VALUE = object()


def _agrees(a: str | None, b: str | None, env: dict) -> bool:
    """Whether two renderings of a node are the same code in an instance whose parameters are
    `env`: equal up to arithmetic sub-expressions that evaluate equal there
    (`in_channels * expand` and `in_channels` where expand is 1)."""
    if a == b:
        return True
    if a is None or b is None:
        return False
    bound = {f"_p_{k}": value_of(v) for k, v in env.items()}
    return _same_ast(_parsed(a), _parsed(b), bound)


def _parsed(code: str) -> ast.AST:
    text = _CLASS_REF.sub(lambda m: f"_class_{m.group(1)}", render(code, lambda n: f"_p_{n}"))
    return ast.parse(text, mode="eval").body


def _same_ast(a, b, env: dict) -> bool:
    if ast.dump(a) == ast.dump(b):
        return True
    va, vb = _value(a, env), _value(b, env)
    if va is not _NO_VALUE and vb is not _NO_VALUE:
        return type(va) is type(vb) and va == vb
    if type(a) is not type(b):
        return False
    for f in a._fields:
        fa, fb = getattr(a, f), getattr(b, f)
        if isinstance(fa, list) and isinstance(fb, list):
            if len(fa) != len(fb) or not all(_same_ast(x, y, env) if isinstance(x, ast.AST) else x == y for x, y in zip(fa, fb)):
                return False
        elif isinstance(fa, ast.AST) and isinstance(fb, ast.AST):
            if not _same_ast(fa, fb, env):
                return False
        elif fa != fb:
            return False
    return True


_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}


def _value(node, env: dict):
    """The value of an arithmetic expression over the instance's parameters, if it is one."""
    try:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return env.get(node.id, _NO_VALUE)
        if isinstance(node, ast.Tuple):
            items = tuple(_value(e, env) for e in node.elts)
            return _NO_VALUE if _NO_VALUE in items else items
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = _value(node.operand, env)
            return _NO_VALUE if v is _NO_VALUE else -v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            a, b = _value(node.left, env), _value(node.right, env)
            return _NO_VALUE if _NO_VALUE in (a, b) else _BINARY[type(node.op)](a, b)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max") and not node.keywords:
            args = [_value(x, env) for x in node.args]
            return _NO_VALUE if _NO_VALUE in args else (min if node.func.id == "min" else max)(args)
    except (ArithmeticError, TypeError):
        pass
    return _NO_VALUE


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
        lines += [(text, info) for text in _statement(code, 8)]
    args = ", ".join(f"{a}: torch.Tensor" for a in c.inputs)
    n = len(c.block.outputs) if c.block is not None else c.returns
    returns = "torch.Tensor" if n == 1 else f"tuple[{', '.join(['torch.Tensor'] * n)}]" if n <= 4 else "tuple[torch.Tensor, ...]"
    lines += [("", None)] + [(text, None) for text in wrap(f"def forward(self, {args}) -> {returns}:", 4)]
    for code, node, parts in c.forward:
        comment = _comment(parts)
        info = LineInfo(c.name, node.name, node.span)
        *head, last = code.split("\n")  # the comment belongs to the last row (a chained repeat's loop body)
        if parts and isinstance(parts[0], tuple) and len(last) + len(comment) + 12 > LINE_LENGTH:  # several outputs: a line each, above
            pad = 8 + len(last) - len(last.lstrip(" "))
            targets = last.strip().split(" = ", 1)[0].split(", ")
            lines += [(text, info) for text in _statement("\n".join(head), 8)] if head else []
            lines += [(f"{' ' * pad}# {t}: {_comment(p)}", info) for t, p in zip(targets, parts)]
            code, comment = last, ""
            lines += [(text, info) for text in _statement(code.lstrip(" "), pad)]
            continue
        lines += [(text, info) for text in _statement(code, 8, f"  # {comment}" if comment else "")]
    return lines


def _statement(code: str, indent: int, comment: str = "") -> list[str]:
    """Lay out code of one or more lines (an `if` and its body), the comment on the last."""
    rows = code.split("\n")
    out = []
    for i, row in enumerate(rows):
        stripped = row.lstrip(" ")
        out += wrap(stripped, indent + len(row) - len(stripped), comment if i == len(rows) - 1 else "")
    return out


def _loop_name(w) -> str:
    """The loop variable over a chained repeat's instances: `layer`, unless forward uses it."""
    return Names({v for s in w.steps for v in s.var.split(", ")} | set(w.inputs) | set(MODULE_NAMES) | set(CODE_GLOBALS)).take("layer")


def _assignment(target: str, node: Node, expr: str, loop: str) -> str:
    """`target = expr`; for a repeated block whose outputs feed the next instance's inputs,
    the first instance's call, then a loop over the others that rebinds the same variables."""
    if node.kind != "repeat" or not node.body.outputs or node.meta["repeat"] == 1:
        return f"{target} = {expr}"
    return f"{target} = {expr}\nfor {loop} in self.{node.name}[1:]:\n    {target} = {loop}({target})"


def _in_spec_order(init: list, graph: Graph) -> list:
    """Constructor lines in the order the spec writes the nodes (forward runs them in dataflow
    order): modules register, and state_dict lists them, as written, as a reference model
    that declares a node before the one it reads does (timm's FasterNet block)."""
    order = {name: i for i, name in enumerate(graph.nodes)}
    return sorted(init, key=lambda line: order.get(_line_node(line).name, len(order)))


def _line_node(line) -> Node:
    return line.node if isinstance(line, _Optional) else line[1]


def _holder(body: Graph, name: str) -> Node:
    """The node whose value a line for `name` holds in this instance: `name`, or when it is
    left out, the node standing in for it (following stand-ins that are left out too)."""
    seen = set()
    while name not in body.nodes and name in body.optional and name not in seen:
        seen.add(name)
        name = body.optional[name][1]
    return body.nodes.get(name, body.input)


def _merge_comments(kept: _Class, forward: list) -> None:
    """Instances that share a class may differ in H x W (a stride given by a parameter): the
    shared comment keeps what they all agree on and says H' or W' for the rest."""
    for mine, theirs in zip(kept.forward, forward):
        if mine[2] != theirs[2]:
            mine[2] = _merged(mine[2], theirs[2])


def _merged(a: tuple, b: tuple) -> tuple:
    """Two instances' comment parts: each where they agree, else C', H' or W'."""
    if a and isinstance(a[0], tuple):  # a composite's several outputs, each merged
        return tuple(_merged(x, y) for x, y in zip(a, b))
    if len(a) != len(b):  # a map in one instance, a vector in another
        return ("...",)
    primes = ("C'", "H'", "W'") if len(a) == 3 else ("C'",)
    return tuple(x if x == y else prime for x, y, prime in zip(a, b, primes))


def _signature(block, used) -> list[str]:
    """The constructor's parameters: those its code uses, built-ins first, then required, then
    those with a default. A size read in forward only is taken from the input, not passed."""
    init_used, fwd_used = used
    need = init_used | (fwd_used - set(SPATIAL))
    builtins = [v for v in block.builtin_vars if v in need]
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
        value = tuple(args[p]) if isinstance(args[p], list) else args[p]  # a list of the spec goes as a tuple, as its default does
        if p in child.block.builtin_vars:
            parts.append(literal(value))
        elif p in given or not _literal_default(child.block.params[p]):
            parts.append(f"{argument(p)}={literal(value)}")
    return f"\x03{child.id}\x04({', '.join(parts)})"


def _literal_default(decl: dict) -> bool:
    d = decl.get("default")
    return "default" in decl and not (isinstance(d, str) and "$" in d)


def _annotation(decl: dict) -> str:
    """A declared type as Python writes it; an array as a tuple (`tuple[int, int]` for a pair),
    which is how the emitted code passes a list of the spec."""
    if decl.get("type") != "array":
        return PY_TYPES[decl["type"]]
    item = _annotation(decl["items"]) if isinstance(decl.get("items"), dict) and "type" in decl["items"] else "object"
    n = decl.get("minItems")
    return f"tuple[{', '.join([item] * n)}]" if n is not None and n == decl.get("maxItems") and 1 <= n <= 4 else f"tuple[{item}, ...]"


def argument(name: str) -> str:
    """A block parameter as the constructor's argument: its own name, but `l_` for `l` (and `O`,
    `I`), names pycodestyle refuses (E741). The spec, the state_dict and attributes keep `l`."""
    return f"{name}_" if name in AMBIGUOUS else name


def _param_sig(name: str, block) -> str:
    decl = block.params.get(name, {})
    if name in block.builtin_vars:
        return f"{name}: int"
    if "type" in decl:
        ann = _annotation(decl)
    elif "oneOf" in decl or "enum" in decl:
        kinds = {_annotation(o) if "type" in o else "str" for o in decl.get("oneOf", [])} or {"str"}
        ann = " | ".join(sorted(kinds))
    else:
        ann = None
    arg = argument(name)
    if not _literal_default(decl):
        return f"{arg}: {ann}" if ann else arg
    default = decl["default"]
    default = tuple(default) if isinstance(default, list) else default  # a pair: never a mutable default
    return f"{arg}: {ann} = {literal(default)}" if ann else f"{arg}={literal(default)}"  # as ruff format spaces them


# -------------------------------------------------------------------- layout

LINE_LENGTH = 120


def wrap(code: str, indent: int, comment: str = "") -> list[str]:
    """Lay out one statement as ruff/black format would at LINE_LENGTH: on one line if it
    fits, else its outermost call split after "(", else one argument per line."""
    pad = " " * indent
    if len(pad) + len(code) + len(comment) <= LINE_LENGTH:
        return [pad + code + comment]
    if comment.lstrip().startswith("#"):  # a shape comment that does not fit goes on a line of its own, above
        return [pad + comment.strip(), *wrap(code, indent)]
    lhs, _, rhs = code.partition(" = ")
    targets = re.fullmatch(r"[A-Za-z_]\w*(, [A-Za-z_]\w*)+", lhs)
    if rhs and targets and len(pad) + len(lhs) + len(rhs.split("(")[0]) + 4 > LINE_LENGTH:  # the outputs a call unpacks into
        value = wrap(f"_ = {rhs}", indent, comment)
        return [pad + "(", *(f"{pad}    {t}," for t in lhs.split(", ")), pad + ") = " + value[0][len(pad) + 4 :], *value[1:]]
    if rhs and re.fullmatch(r"[A-Za-z_]\w*", lhs) and len(pad) + len(lhs) + 3 + len(rhs.split("(")[0]) + 1 > LINE_LENGTH \
            and len(pad) + 4 + len(rhs) <= LINE_LENGTH:  # a long name: the value in parentheses, on a line of its own
        return [f"{pad}{lhs} = (", f"{pad}    {rhs}", f"{pad}){comment}"]
    if code.startswith("return ") and len(_split_top(code[7:], ", ")) > 1:  # a block's several outputs
        return [pad + "return (", *(f"{pad}    {t}," for t in _split_top(code[7:], ", ")), pad + ")" + comment]
    open_at, close_at = _def_parameters(code) if code.startswith("def ") else _outer_call(code)
    if open_at is None:
        return _parenthesized(code, indent, comment)
    head, inner, tail = code[: open_at + 1], code[open_at + 1 : close_at], code[close_at:]
    args = _split_args(inner)
    one_line = pad + "    " + ", ".join(args)
    if not code.startswith("def ") and len(one_line) <= LINE_LENGTH:
        return [pad + head, one_line, pad + tail + comment]
    return [pad + head, *(line for a in args for line in _argument(a, indent + 4)), pad + tail + comment]


def _argument(arg: str, indent: int, comma: str = ",") -> list[str]:
    """One argument of a call laid out one per line, as ruff format writes it when the line
    is too long: a call is split in turn, a list comprehension (`*[Block(...) for _ in
    range(n)]`) before its `for`, and an expression before its outermost operators: a
    conditional before `if` and `else`, then `+` and `-`, then `*`, `//` and `/`."""
    pad = " " * indent
    if len(pad) + len(arg) + len(comma) <= LINE_LENGTH:
        return [f"{pad}{arg}{comma}"]
    open_at, _ = _outer_call(arg)
    if open_at is not None and re.fullmatch(r"[\w.]+(=[\w.]+)?", arg[:open_at]):
        return wrap(arg, indent, comma)
    star = "*" if arg.startswith("*[") else ""
    if arg.startswith(("[", "*[")) and arg.endswith("]"):
        inner = arg[len(star) + 1 : -1]
        if fors := _top_level(inner, " for "):  # a comprehension: its element, then its clause
            element, clause = inner[: fors[0]], inner[fors[0] + 1 :]
            return [f"{pad}{star}[", *_argument(element, indent + 4, ""), f"{pad}    {clause}", f"{pad}]{comma}"]
        return [f"{pad}{star}[", *(line for item in _split_args(inner) for line in _argument(item, indent + 4)), f"{pad}]{comma}"]
    lines = [pad + piece for piece in _operator_pieces(arg, LINE_LENGTH - indent - len(comma))]
    return lines[:-1] + [lines[-1] + comma]


def _operator_pieces(expr: str, width: int) -> list[str]:
    """`expr` broken before its outermost operators until each piece fits `width` (or no
    operator is left): `a if c else b` into "a", "if c", "else b"; `a + b` into "a", "+ b"."""
    if len(expr) <= width:
        return [expr]
    word, rest = expr.split(" ", 1) if expr.startswith(("if ", "else ")) else ("", expr)
    lead = f"{word} " if word else ""
    for split in (_conditional_pieces, _split_comparison, _split_terms, _split_factors):
        pieces = split(rest)
        if len(pieces) > 1:
            pieces[0] = lead + pieces[0]
            return [q for piece in pieces for q in _operator_pieces(piece, width)]
    open_at, _ = _outer_call(rest)
    if open_at is not None and re.fullmatch(r"[\w.]+", rest[:open_at]):  # a call (max(...)): one argument a line
        return [lead + rest[: open_at + 1], *("    " + a + "," for a in _split_args(rest[open_at + 1 : -1])), ")"]
    op, _, group = rest.partition(" ") if rest[:2] in ("+ ", "- ", "* ", "/ ") or rest[:3] == "// " else ("", "", rest)
    if _bracketed(group):  # a bracketed operand: opened
        opener = f"{lead}{op} (" if op else f"{lead}("
        return [opener, *("    " + q for q in _operator_pieces(group[1:-1], width - 4)), ")"]
    return [expr]


def _bracketed(expr: str) -> bool:
    """Whether `expr` is one parenthesised group, `( ... )`, its first bracket closed last."""
    return expr.startswith("(") and _closing(expr, 0) == len(expr) - 1


def _conditional_pieces(expr: str) -> list[str]:
    """`a if c else b` as ["a", "if c", "else b"] where the conditional is outermost (a nested
    one in `b` is split too, as ruff format chains them); [expr] otherwise."""
    at_if = _top_level(expr, " if ")
    if not at_if:
        return [expr]
    i = at_if[0]
    at_else = [j for j in _top_level(expr, " else ") if j > i]
    if not at_else:
        return [expr]
    j = at_else[0]
    rest = _conditional_pieces(expr[j + 6:])
    return [expr[:i], "if " + expr[i + 4:j], "else " + rest[0], *rest[1:]]


def _split_terms(expr: str) -> list[str]:
    """`a + b - c` as ["a", "+ b", "- c"] at its outermost level."""
    return _split_at(expr, (" + ", " - "))


def _split_comparison(expr: str) -> list[str]:
    return _split_at(expr, (" < ", " <= ", " > ", " >= ", " == ", " != "))


def _split_factors(expr: str) -> list[str]:
    return _split_at(expr, (" * ", " // ", " / "))


def _split_at(expr: str, tokens: tuple) -> list[str]:
    cuts = sorted(c for t in tokens for c in _top_level(expr, t))
    if not cuts:
        return [expr]
    out, start = [expr[: cuts[0]]], cuts[0]
    for c in cuts[1:] + [len(expr)]:
        out.append(expr[start + 1 : c])
        start = c
    return out


def _top_level(expr: str, token: str) -> list[int]:
    """Where `token` occurs in `expr` outside brackets and strings."""
    out, at = [], 0
    for piece in _split_top(expr, token)[:-1]:
        at += len(piece)
        out.append(at)
        at += len(token)
    return out


def _parenthesized(code: str, indent: int, comment: str) -> list[str]:
    """A statement with no call to split (a long condition), as ruff format writes it: the
    right-hand side of `=`, or the test of an `if`, in parentheses on lines of its own, split
    before each `or` (else each `and`) when one line is still too long."""
    pad = " " * indent
    if code.startswith("if ") and code.endswith(":"):
        head, body, tail = "if (", code[3:-1], "):"
    elif " = " in code:
        lhs, body = code.split(" = ", 1)
        head, tail = f"{lhs} = (", ")"
    else:
        return [pad + code + comment]
    inner = pad + "    "
    if len(inner) + len(body) <= LINE_LENGTH:
        return [pad + head, inner + body, pad + tail + comment]
    for op in ("or", "and"):
        pieces = _split_top(body, f" {op} ")
        if len(pieces) > 1:
            return [pad + head, inner + pieces[0], *(f"{inner}{op} {p}" for p in pieces[1:]), pad + tail + comment]
    # a long sum or product (an add of many outputs): one operand a line, before its operator
    return [pad + head, *(inner + p for p in _operator_pieces(body, LINE_LENGTH - len(inner))), pad + tail + comment]


def _def_parameters(code: str):
    """A `def`'s parentheses, a return annotation after them (`-> tuple[...]:`) or not."""
    opened = code.index("(")
    closed = _closing(code, opened)
    return (opened, closed) if closed is not None else (None, None)


def _closing(code: str, opened: int) -> int | None:
    """Where the bracket opened at `opened` closes (brackets of both kinds counted)."""
    depth = 0
    for i in range(opened, len(code)):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(code[i], 0)
        if depth == 0:
            return i
    return None


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
    return [a.strip() for a in _split_top(inner, ",") if a.strip()]


def _split_top(text: str, sep: str) -> list[str]:
    """`text` split at `sep` where it stands outside brackets and string literals."""
    pieces, depth, start, quote, i = [], 0, 0, None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            pieces.append(text[start:i])
            i = start = i + len(sep)
            continue
        i += 1
    return pieces + [text[start:]]


def _shape_comment(shape: tuple, in_shape: tuple | None, symbolic: bool = False) -> str:
    return _comment(_shape_parts(shape, in_shape, symbolic))


MAX_COMMENT_EXPR = 40  # a channel count in a shape comment: longer expressions are C'
MAX_COMMENT_NAME = 16  # a named input a size is relative to (H_skip): longer names are H'


def _shape_parts(shape: tuple, in_shape: tuple | None, symbolic: bool, others: tuple = ()) -> tuple:
    """A shape comment's parts after B: (C,) or (C, H, W), in a block relative to its input,
    or to the named input (`others`: (name, shape) pairs) it is sized by: H_skip, H_c5/2."""
    if len(shape) == 1:
        return (f"{shape[0]}",)
    c, h, w = shape
    if not symbolic:
        return (f"{c}", f"{value_of(h)}", f"{value_of(w)}")
    if len(f"{c}") > MAX_COMMENT_EXPR:  # a width rule (torchvision's _make_divisible) is read where it is computed
        c = "C'"
    return (f"{c}", _rel(h, in_shape[1], "H", [(n, s[1]) for n, s in others if len(s) == 3]),
            _rel(w, in_shape[2], "W", [(n, s[2]) for n, s in others if len(s) == 3]))


def _named_inputs(graph: Graph) -> tuple:
    return tuple((n, graph.nodes[n].meta["sym_shape"]) for n in graph.inputs[1:])


def _node_parts(node: Node, in_shape: tuple | None, symbolic: bool, others: tuple = ()) -> tuple:
    """A line's comment parts: its node's shape's, or for a composite with several outputs a
    tuple of each output's."""
    if "sym_shapes" in node.meta:
        return tuple(_shape_parts(s, in_shape, symbolic, others) for s in node.meta["sym_shapes"])
    return _shape_parts(node.meta["sym_shape"], in_shape, symbolic, others)


def _rendered(parts: tuple) -> tuple:
    return tuple(_rendered(p) if isinstance(p, tuple) else render(p) for p in parts)


def _comment(parts: tuple) -> str:
    if parts and isinstance(parts[0], tuple):  # several outputs: (B, 256, H, W), (B, 256, H/2, W/2)
        return ", ".join(_comment(p) for p in parts)
    return f"(B, {', '.join(parts)})" if parts else ""


def _rel(n, ref, sym: str, others: list = ()) -> str:
    """Spatial size relative to the block's input: H, H/2, 2H, or H' (some other size); a size
    computed from a named input's instead, relative to that one's (H_skip)."""
    if not (variables(n) & set(SPATIAL)) and variables(ref) & set(SPATIAL):
        for name, size in others:
            if variables(n) & variables(size):  # a long input name would not fit a comment: H'
                return _rel(n, size, f"{sym}_{name}") if len(name) <= MAX_COMMENT_NAME else f"{sym}'"
        return render(n.expr) if isinstance(n, Sym) else str(n)  # a fixed size (an adaptive pool's), not the input's
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


def docstring_text(text: str) -> str:
    """Text from the spec (a summary, the spec's path) made safe inside a docstring: each
    backslash doubled (the docstring reads `C:\\data` as written), no closing quotes, and each
    character that is not printable (a NUL, a lone surrogate) written as <U+XXXX>."""
    text = str(text).replace(chr(92), chr(92) * 2).replace(QUOTES, "'" * 3)
    text = "".join(c if c.isprintable() or c == " " else f"<U+{ord(c):04X}>" for c in text)
    return text[:-1] + "'" if text.endswith('"') else text  # `..."` would run into the closing quotes


def _docstring(*paragraphs: str) -> list[str]:
    """A class docstring, wrapped to fit 100 columns."""
    lines: list[str] = []
    for i, para in enumerate(paragraphs):
        text = docstring_text(" ".join(str(para).split()))
        lines += [""] * bool(i) + textwrap.wrap(text, 92)
    lines[0] = QUOTES + lines[0]
    if len(lines) == 1:
        return [f"    {lines[0]}{QUOTES}"]
    return [f"    {line}" if line else "" for line in lines] + [f"    {QUOTES}"]
