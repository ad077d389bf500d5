"""Document -> graph IR: resolve block types, check and fill parameters, wire inputs.

The same function builds a spec's top-level graph, checks a composite definition (where
`$param` values are left in place), and instantiates a composite for one call site (where
they are substituted and any error is blamed on the call site).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import re

from archcompiler.blocks.registry import IDENTIFIER, Registry, reserved_name
from archcompiler.diagnostics import Diagnostics, Span, did_you_mean
from archcompiler.frontend.loader import Document
from archcompiler.frontend.schema import MAX_OUTPUTS, NODE_KEYS, first_node_key, report_schema_errors, validator
from archcompiler.ir.arith import ExprError, compared_strings, evaluate, holds, is_expression, parse_condition, parse_value, variables
from archcompiler.ir.expr import Sym
from archcompiler.ir.graph import INPUT, Graph, Node

INDEX = "index"  # a repeated node's instance number, `$index`
CHAIN = "\x00outputs"  # a repeated use of a block with several outputs: their names, for _build_repeat
MAX_REPEAT = 1000  # the deepest real stages repeat a few dozen times; more is a typo or an attack
# Layers a whole model may expand to, blocks within blocks and repeats included. The largest
# real CNNs have a few thousand; nested repeats multiply (40 x 40 x 40 is 64,000 and would
# take check minutes), so past this the spec is refused rather than expanded.
MAX_LAYERS = 20_000


@dataclass
class Scope:
    """Where a graph is being built, and to whom its errors belong."""

    doc: Document
    path: tuple  # path of the mapping that holds `nodes` (() for a spec, ('blocks', name) for a block)
    registry: Registry
    diags: Diagnostics
    env: dict | None = None  # parameter values of a composite instance; None elsewhere
    sym_env: dict | None = None  # the same as Sym variables: the instance's class is written in them
    declared: tuple | None = None  # parameter names a definition may substitute; None elsewhere
    blame: Span | None = None  # call-site span: errors inside an instance are reported there
    trail: list = field(default_factory=list)  # [(node, type), ...] from the call site inwards
    broken: set = field(default_factory=set)  # nodes whose structure errors were reported already
    defaults: dict = field(default_factory=dict)  # the spec's `defaults:`, block type -> parameter values
    budget: list = field(default_factory=lambda: [MAX_LAYERS])  # layers left to build, shared by every scope of a model
    choices: dict = field(default_factory=dict)  # in a definition: an enum parameter's values, to check `$mode == 'x'`

    def spend(self, span: Span) -> bool:
        """Count one more layer of the model; False (reported once) past MAX_LAYERS."""
        self.budget[0] -= 1
        if self.budget[0] == -1:
            self.diags.error("E213", f"the model expands to more than {MAX_LAYERS:,} layers (blocks within blocks, repeated); "
                             f"no real network needs that many: look for nested repeats that multiply", self.blame or span)
        return self.budget[0] >= 0

    def error(self, code: str, message: str, span: Span) -> None:
        if self.blame is None:
            self.diags.error(code, message, span)
        else:
            self.diags.error(code, f"{self.prefix()}{message.removeprefix('node ')}", self.blame).inner = span

    def error_at(self, code: str, message: str, span: Span) -> None:
        """An error at a precise place even inside an instance (a character of an expression),
        naming the instance it came from."""
        self.diags.error(code, (self.prefix() if self.blame is not None else "") + message, span)

    def prefix(self) -> str:
        """"node 'red3' (reduction) > 'pool' (maxpool) > " for errors inside composites."""
        return "node " + "".join(f"'{n}' ({t}) > " for n, t in self.trail)

    def span(self, *rel, key=False) -> Span:
        return self.doc.span(self.path + rel, key=key)


def build_graph(name: str, scope: Scope) -> tuple[Graph, bool]:
    """Build the graph under scope.path. Returns the graph of the nodes that could be built,
    and whether every node and reference could (graph rules can still run on a partial one)."""
    body = scope.doc.data if not scope.path else _get(scope.doc.data, scope.path)
    spec_nodes: dict = body["nodes"]
    nodes: dict[str, Node] = {INPUT: Node(INPUT, "input", "input", span=scope.span(key=True))}
    extra = body.get("inputs") if scope.path and isinstance(body.get("inputs"), list) else []
    for i, n in enumerate(extra):  # a composite's named inputs (a skip connection)
        nodes[n] = Node(n, "input", "input", span=scope.span("inputs", i))
    ok = True
    previous = INPUT
    absent: dict[str, str] = {}  # optional nodes left out -> the node that stands in for each
    optional: dict[str, tuple] = {}  # every node with a `when:` condition -> (condition, stand-in)
    splits: dict[str, list] = {}  # split nodes -> the names of their parts, which are the graph's nodes
    failed_parts: set[str] = set()
    multi: dict[str, list] = {}  # composites with several outputs -> the names of their parts
    for node_name, raw in spec_nodes.items():
        if _several_outputs(raw, scope):  # the composite, then a node per output
            built = _build_multi(node_name, raw, previous, spec_nodes, nodes, scope) if node_name not in scope.broken else None
            if built is None:
                listed = raw.get("outputs") if isinstance(raw.get("outputs"), list) else []  # `outputs: 1` is the schema's to report
                failed_parts.update(p for p in listed if isinstance(p, str))
                ok = False
            else:
                multi[node_name] = built
            previous = node_name
            continue
        if node_name not in scope.broken and "when" in raw:
            present = _present(node_name, raw, previous, scope)
            if present is None:
                ok = False
            elif is_expression(raw["when"]) or present is False:  # `when: false` too: a class over instances finds its stand-in here
                optional[node_name] = (raw["when"], raw.get("otherwise") or _single_input(raw, previous))
            if present is False:
                absent[node_name] = raw.get("otherwise") or _single_input(raw, previous)
                if not scope.path and not _is_split(raw) and not _checks_as_written(node_name, raw, previous, spec_nodes, extra, scope):
                    ok = False
                    absent[node_name] = INPUT  # reported; its readers are not blamed for what it reads
                previous = node_name
                continue
        if node_name not in scope.broken and _is_split(raw):  # one node per named part
            parts = _split_parts(node_name, raw, spec_nodes, nodes, scope)
            for part in parts or []:
                node = _build_node(part, {**raw, "take": part}, previous, scope, here=("nodes", node_name))
                if node is None:
                    break
                node.meta["split"] = node_name
                nodes[part] = node
            else:
                if parts is not None:
                    splits[node_name] = parts
            if node_name not in splits:  # reported: its parts exist, so readers are not reported again
                failed_parts.update(p for p in raw["outputs"] if isinstance(p, str))
            ok = ok and node_name in splits
            previous = node_name
            continue
        node = None if node_name in scope.broken else _build_node(node_name, raw, previous, scope)
        previous = node_name
        if node is None:
            ok = False
            continue
        nodes[node_name] = node
    written_output = body.get("output")
    outputs = list(written_output) if isinstance(written_output, list) else [written_output or list(spec_nodes)[-1]]
    raw_outputs = list(outputs)
    output = raw_output = outputs[0]
    for node in nodes.values():  # as written, before any stand-in: what a class with conditions reads
        node.meta["raw_inputs"], node.meta["raw_refs"] = list(node.inputs), dict(node.refs)
    if absent:  # the data flow reconnects around what is left out
        stand_in = _stand_ins(absent, scope)
        if stand_in is None:
            ok = False
            stand_in = {}
        for node in nodes.values():
            node.inputs = [stand_in.get(i, i) for i in node.inputs]
            node.refs = {k: stand_in.get(r, r) for k, r in node.refs.items()}
        outputs = [stand_in.get(o, o) for o in outputs]
        output = outputs[0]
    several = len(raw_outputs) > 1
    graph = Graph(name, nodes, output, span=scope.span(key=True), inputs=[INPUT, *extra], optional=optional, raw_output=raw_output,
                  written=[part for n in spec_nodes for part in (splits.get(n) or [n, *multi.get(n, [])])],  # a split is its parts
                  outputs=outputs if several else [], raw_outputs=raw_outputs if several else [])
    refs_ok = _check_references(graph, spec_nodes, scope, skip=(set(spec_nodes) - set(nodes) - set(splits) - set(multi)) | failed_parts,
                                splits={**splits, **multi})
    graph.partial = not (ok and refs_ok)
    return graph, not graph.partial


# PyTorch's and other tools' names for archc's blocks, which a new user writes first (when no
# name of ours is close enough for a "did you mean").
_OTHER_NAMES = {"linear": "affine", "fc": "affine", "dense": "affine", "conv2d": "conv", "bn": "batchnorm",
                "batch_norm": "batchnorm", "batchnorm2d": "batchnorm", "layer_norm": "layernorm", "group_norm": "groupnorm",
                "cat": "concat", "interpolate": "upsample", "adaptive_avg_pool": "adaptive_avgpool", "subtract": "sub", "minus": "sub",
                "zeropad2d": "pad", "reflectionpad2d": "pad", "zero_padding": "pad", "space_to_depth": "pixel_unshuffle",
                "depth_to_space": "pixel_shuffle", "focus": "pixel_unshuffle", "zeropadding2d": "pad", "zero_padding2d": "pad",
                "reflection_pad": "pad", "reflection_pad2d": "pad", "replication_pad": "pad", "replication_pad2d": "pad",
                "replicationpad2d": "pad", "circularpad2d": "pad", "circular_pad": "pad", "constantpad2d": "pad", "padding": "pad",
                "spacetodepth": "pixel_unshuffle", "depthtospace": "pixel_shuffle", "pixelshuffle": "pixel_shuffle",
                "pixelunshuffle": "pixel_unshuffle", "sub_pixel": "pixel_shuffle", "subtraction": "sub", "softmax2d": "softmax"}


def _type_hint(type_name, registry: Registry) -> str:
    """What to write instead of an unknown type: an activation's function is a parameter, and
    PyTorch's names map to ours; otherwise the closest name, if any."""
    from archcompiler.blocks.activation import MODULES

    key = str(type_name).lower()
    if key in MODULES and "activation" in registry.names():
        return f"; {key} is a function of the activation block: write {{type: activation, fn: {key}}}"
    if _OTHER_NAMES.get(key) in registry.names():  # another tool's name, before a merely similar one (reflection_pad, not reduction)
        return f"; archc calls it '{_OTHER_NAMES[key]}'"
    return did_you_mean(type_name, registry.names())


def _build_node(name: str, raw: dict, previous: str, scope: Scope, here: tuple | None = None) -> Node | None:
    """One node; `here` is where it is written (a repeated node's instances share their node's)."""
    here = here or ("nodes", name)
    if scope.declared is None and not scope.spend(scope.span(*here, key=True)):
        return None
    type_name = raw["type"]
    block = scope.registry.get(type_name)
    if block is None:
        scope.error("E200", f"unknown block type '{type_name}'{_type_hint(type_name, scope.registry)}", scope.span(*here, "type"))
        return None
    if getattr(block, "broken", False):
        return None  # its definition's errors are reported where it is defined
    if "first" in raw and "repeat" not in raw:
        scope.error("E209", f"'first' gives the first instance of a repeated node its own parameters, but node '{name}' has no 'repeat'", scope.span(*here, "first", key=True))
        return None
    if "outputs" in raw and "outputs" not in block.param_schema()["properties"]:  # a split's parts, a block's several outputs
        scope.error("E212", f"'{type_name}' returns one output, but node '{name}' names outputs: 'outputs' names the outputs of a block "
                    f"that returns several (output: [a, b] in its definition), or a split's parts", scope.span(*here, "outputs", key=True))
        return None
    if "otherwise" in raw and "when" not in raw:
        scope.error("E210", f"'otherwise' names the stand-in of an optional node, but node '{name}' has no 'when'", scope.span(*here, "otherwise", key=True))
        return None
    if "repeat" in raw:
        return _build_repeat(name, raw, previous, block, scope)
    raw_given = {k: v for k, v in raw.items() if k not in NODE_KEYS}
    if scope.declared is None:  # in a model and its instances, not in a definition being checked
        defaults = {k: v for k, v in scope.defaults.get(type_name, {}).items() if block.takes_default(k, raw_given)}
        raw_given = {**defaults, **raw_given}
    given = _substitute(raw_given, here, scope)
    if given is None:
        return None
    if not _check_params(block, given, here, scope, exprs={k: v for k, v in raw_given.items() if holds_expression(v)}):
        return None
    sym_given = _substitute(raw_given, here, scope, symbolic=True) if scope.sym_env is not None else None
    inputs = raw.get("in", previous)
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    if block.arity == 1 and len(inputs) != 1:
        scope.error("E304", f"'{type_name}' takes one input, but node '{name}' lists {len(inputs)}", scope.span(*here, "in"))
        return None
    if block.arity is not None and block.arity > 1 and len(inputs) != block.arity:
        scope.error("E304", _takes(block, name, len(inputs)), scope.span(*here, "in", key="in" not in raw))
        return None
    if block.arity is None and len(inputs) < 2:
        scope.error("E304", f"'{type_name}' merges two or more inputs, but node '{name}' lists 1; give them as a list, e.g. in: [a, b]", scope.span(*here, "in", key=True))
        return None
    # a composite's defaults may depend on its input shape ($in_channels): bound at expansion
    params = given if block.is_composite else block.with_defaults(given)
    refs = {k: params[k] for k in block.refs if k in params}
    kind = "composite" if block.is_composite else "call"
    meta = {"source_path": scope.path + here, "given": given}
    if sym_given is not None:  # inside a composite: the parameters as expressions in its own parameters
        meta["sym_given"] = sym_given
    return Node(name, kind, type_name, params, inputs, refs, span=scope.span(*here, key=True), meta=meta)


def _checks_as_written(name: str, raw: dict, previous: str, spec_nodes: dict, extra: list, scope: Scope) -> bool:
    """A spec's node switched off by hand (`when: false`) is still checked as written: its
    type, its parameters and the nodes it reads, so that switching it on cannot surprise."""
    node = _build_node(name, {k: v for k, v in raw.items() if k not in ("when", "otherwise")}, previous, scope)
    if node is None:
        return False
    parts = [p for r in spec_nodes.values() if isinstance(r, dict) and (_is_split(r) or _several_outputs(r, scope))
             for p in (r.get("outputs") if isinstance(r.get("outputs"), list) else []) if isinstance(p, str)]
    known = [INPUT, *extra, *spec_nodes, *parts]
    raw_in = raw.get("in")
    for i, ref in enumerate(node.inputs):
        if ref not in known:
            at = ("nodes", name, "in") + ((i,) if isinstance(raw_in, list) else ())
            scope.error("E300", f"node '{name}' reads '{ref}', which is not defined{did_you_mean(ref, known)}", scope.span(*at))
            return False
    return True


def _several_outputs(raw: dict, scope: Scope) -> bool:
    """A use of a composite block with several outputs (`output: [a, b]` in its definition)."""
    block = scope.registry.get(raw["type"]) if isinstance(raw, dict) and isinstance(raw.get("type"), str) else None
    return block is not None and block.is_composite and len(block.outputs) > 1


def _build_multi(name: str, raw: dict, previous: str, spec_nodes: dict, nodes: dict, scope: Scope) -> list | None:
    """A use of a block with several outputs: the composite node, then one `part` node per
    output, named by the use's `outputs: [a, b]` as a split names its parts. None after an error."""
    block = scope.registry.get(raw["type"])
    if block.broken:
        return None  # its definition's errors are reported where it is defined; its outputs' readers are not blamed
    here = ("nodes", name)
    count = len(block.outputs)
    listed = ", ".join(block.outputs)
    parts = raw.get("outputs")
    if "when" in raw:
        scope.error("E210", f"'{block.name}' has {count} outputs ({listed}) and cannot be optional: nothing could stand in for each of its outputs",
                    scope.span(*here, "when", key=True))
        return None
    if "repeat" in raw and block.arity != count:  # each instance's outputs are the next one's inputs, in order
        reads = ", ".join(("input",) + block.extra_inputs)
        scope.error("E209", f"'{block.name}' has {count} outputs ({listed}) but reads {block.arity} input{'s' * (block.arity > 1)} ({reads}), "
                    f"so it cannot be repeated: each instance's outputs are the next one's inputs, in order", scope.span(*here, "repeat", key=True))
        return None
    if not (isinstance(parts, list) and len(parts) == count and all(isinstance(p, str) for p in parts)):
        example = ", ".join(block.outputs)
        at = scope.span(*here, "outputs") if "outputs" in raw else scope.span(*here, key=True)
        scope.error("E212", f"'{block.name}' has {count} outputs ({listed}): node '{name}' names each where it is used, "
                    f"in that order, e.g. outputs: [{example}]", at)
        return None
    ok = True
    for i, part in enumerate(parts):
        taken = ("named twice" if part in parts[:i] else "an input of the block" if part in nodes and nodes[part].kind == "input"
                 else "a node" if part in spec_nodes or part in nodes else "reserved" if reserved_name(part) or "$" in part else None)
        if taken or not re.match(IDENTIFIER, part):
            what = taken or "not an ASCII identifier (ASCII letters, digits and _, not starting with a digit)"
            scope.error("E212", f"node '{name}' names an output '{part}', which is {what}; choose another", scope.span(*here, "outputs", i))
            ok = False
    plain = {k: v for k, v in raw.items() if k != "outputs"}
    node = _build_node(name, {**plain, CHAIN: list(parts)} if "repeat" in raw else plain, previous, scope) if ok else None
    if node is None:
        return None
    node.meta["outputs"] = list(parts)
    nodes[name] = node
    for i, part in enumerate(parts):
        nodes[part] = _part(part, i, node, block, scope.span(*here, "outputs", i), scope.path + here + ("outputs", i))
    return list(parts)


def _part(name: str, index: int, of: Node, block, span: Span, source_path: tuple) -> Node:
    """Output `index` of composite `of`: a node that reads it and computes nothing."""
    meta = {"source_path": source_path, "index": index, "part_of": of.name, "output": block.outputs[index]}
    return Node(name, "part", block.name, {}, [of.name], span=span, meta=meta)


def _takes(block, name: str, listed: int) -> str:
    """E304's message: how many inputs `block` reads, and in which order a use lists them."""
    names = ("input",) + block.extra_inputs
    example = ", ".join("abcdefgh"[: len(names)])
    return (f"'{block.name}' takes {len(names)} inputs ({', '.join(names)}), but node '{name}' lists {listed}; "
            f"give them in that order, e.g. in: [{example}]")


def _is_split(raw: dict) -> bool:
    """A split as written (`outputs:` and no `take:`), to be built as one node per part."""
    return raw.get("type") == "split" and isinstance(raw.get("outputs"), list) and "take" not in raw


def _split_parts(name: str, raw: dict, spec_nodes: dict, nodes: dict, scope: Scope) -> list | None:
    """The part names of split `name`, if none is taken: each becomes a node of the graph."""
    parts = [p for p in raw["outputs"] if isinstance(p, str)]  # the schema reports the rest
    if "when" in raw or "repeat" in raw:
        key = "when" if "when" in raw else "repeat"
        scope.error("E212", f"split '{name}' cannot take '{key}': its parts are nodes of their own", scope.span("nodes", name, key, key=True))
        return None
    for i, part in enumerate(parts):
        if "$" in part:
            scope.error("E212", f"split '{name}' names a part '{part}': parts are nodes, named where they are written, not by a $parameter", scope.span("nodes", name, "outputs", i))
            return None
        taken = "a node" if part in spec_nodes or part in nodes else "reserved" if reserved_name(part) else None
        if taken:
            what = "the name of a node" if taken == "a node" else "a reserved name (it becomes a variable of forward)"
            scope.error("E212", f"split '{name}' names a part '{part}', which is {what}; choose another", scope.span("nodes", name, "outputs", i))
            return None
    return parts


def _present(name: str, raw: dict, previous: str, scope: Scope) -> bool | None:
    """Whether an optional node (`when:`) is there in this instance; None after an error.
    In a definition, where the parameters are not known yet, it is checked as present."""
    here = ("nodes", name)
    cond = raw["when"]
    inputs = raw.get("in", previous)
    if isinstance(inputs, list) and len(inputs) > 1 and "otherwise" not in raw:
        scope.error("E210", f"optional node '{name}' reads {len(inputs)} inputs: say which one stands in when it is left out, with otherwise: NODE", scope.span(*here, "when", key=True))
        return None
    if isinstance(cond, bool):
        return cond
    if not is_expression(cond):
        scope.error("E210", f"'when' of node '{name}' must be true, false or a condition over $parameters, got {cond!r}", scope.span(*here, "when"))
        return None
    try:
        tree = parse_condition(cond)
    except ExprError as e:
        scope.error_at("E210", f"bad condition in 'when' of node '{name}': {e}", char_span(scope, here + ("when",), e.offset))
        return None
    if scope.env is None:
        if scope.declared is None:
            scope.error("E206", f"'when' of node '{name}' uses a block parameter, but the node is not inside a block definition", scope.span(*here, "when"))
            return None
        unknown = [(v, at) for v, at in variables(tree) if v not in scope.declared]
        for v, at in unknown:
            scope.error("E206", f"'${v}' is not a parameter of this block{did_you_mean(v, scope.declared)}", char_span(scope, here + ("when",), at))
        strays = [(v, text, at) for v, text, at in compared_strings(tree) if v in scope.choices and text not in scope.choices[v]]
        for v, text, at in strays:  # a typo would leave the node out of every instance, silently
            listed = ", ".join(f"'{c}'" for c in scope.choices[v])
            why = (f"'{text}' is not one of ${v}'s values ({listed}){did_you_mean(text, scope.choices[v])}" if scope.choices[v]
                   else f"${v} holds no strings, so it never equals '{text}'")
            scope.error("E210", why, char_span(scope, here + ("when",), at))
        return None if unknown or strays else True
    try:
        return holds(tree, scope.env)
    except ExprError as e:
        scope.error_at("E210", f"'{name}': when = {cond}: {e}", char_span(scope, here + ("when",), e.offset))
        return None


def _single_input(raw: dict, previous: str) -> str:
    inputs = raw.get("in", previous)
    return inputs if isinstance(inputs, str) else inputs[0]


def _stand_ins(absent: dict[str, str], scope: Scope) -> dict[str, str] | None:
    """Each absent node -> the present node that stands in for it (following chains)."""
    out = {}
    for name in absent:
        seen, n = [name], absent[name]
        while n in absent:
            if n in seen:
                scope.error("E210", f"optional nodes stand in for each other in a loop: {' -> '.join(seen + [n])}", scope.span("nodes", name, "otherwise"))
                return None
            seen.append(n)
            n = absent[n]
        out[name] = n  # an unknown name is reported with the other references
    return out


def check_defaults(doc, registry: Registry, diags: Diagnostics) -> dict:
    """The spec's `defaults:` that are sound: known block types, known and well-typed
    parameters (each reported once, here, rather than at every node that would use it)."""
    out = {}
    for type_name, values in (doc.data.get("defaults") or {}).items():
        block = registry.get(type_name)
        if block is None:
            diags.error("E200", f"unknown block type '{type_name}' in defaults{_type_hint(type_name, registry)}", doc.span(("defaults", type_name), key=True))
            continue
        if getattr(block, "broken", False):
            continue  # its definition's errors (a parameter declared with an unknown type) are reported where it is defined
        schema = dict(block.param_schema(), required=[])
        errors = list(validator(schema).iter_errors(values))
        if errors:
            report_schema_errors(errors, doc, diags, base=("defaults", type_name))
            continue
        exprs = [k for k, v in values.items() if holds_expression(v)]
        for k in exprs:
            diags.error("E206", f"defaults hold values, not $parameters: '{values[k]}'", doc.span(("defaults", type_name, k)))
        per_use = [k for k in values if k in block.per_use]  # accepted, it would be overridden or misbuilt without a word
        for k in per_use:
            diags.error("E212", f"{type_name}'s '{k}' cannot be a spec-wide default: {block.per_use[k]}", doc.span(("defaults", type_name, k), key=True))
        if not exprs and not per_use:
            out[type_name] = dict(values)
    return out


def _build_repeat(name: str, raw: dict, previous: str, block, scope: Scope) -> Node | None:
    """`repeat: N` stacks N instances of the block, each reading the one before; `first:`
    gives the first instance's own parameters (a stride, a width). The node's body holds the
    instances, named `0`, `1`, ...: their paths, `name.0`, read as their state_dict keys."""
    here = ("nodes", name)
    count = sym_count = raw["repeat"]
    if is_expression(count) and scope.sym_env is not None:
        sym_count = (_substitute({"repeat": count}, here, scope, symbolic=True) or {}).get("repeat")
    if is_expression(count):
        count = (_substitute({"repeat": count}, here, scope) or {}).get("repeat")
        if count is None:
            return None
        if scope.env is None:  # a definition: the count is known per instance; check one
            count = 1
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_REPEAT:
        scope.error("E209", f"'repeat' of node '{name}' must be an integer from 1 to {MAX_REPEAT}, got {count!r}", scope.span(*here, "repeat"))
        return None
    chain = raw.get(CHAIN)  # a block with several inputs and as many outputs: each instance's outputs feed the next
    if block.arity != 1 and chain is None:
        what = "merges several inputs" if block.arity is None else f"takes {block.arity} inputs ({', '.join(('input',) + block.extra_inputs)})"
        scope.error("E209", f"'{block.name}' {what} and cannot be repeated; repeat a block that reads one input, "
                    f"or one that returns as many outputs as it reads", scope.span(*here, "repeat"))
        return None
    first = raw.get("first") or {}
    for key in first:
        if key in NODE_KEYS:
            scope.error("E209", first_node_key(key), scope.span(*here, "first", key, key=True))
            return None
    if not _first_fits(block, first, here, scope):
        return None
    shared = {k: v for k, v in raw.items() if k not in ("repeat", "first", "in", CHAIN)}
    formal = [INPUT, *(block.extra_inputs if chain else ())]  # the body's inputs: the block's own
    instances: dict[str, Node] = {n: Node(n, "input", "input", span=scope.span(*here, key=True)) for n in formal}
    prev = list(formal)
    for i in range(count):
        inst_name = str(i)
        inst = _build_node(inst_name, {**shared, **(first if i == 0 else {}), "in": prev if chain else prev[0]}, prev[0], _with_index(scope, i), here=here)
        if inst is None:
            return None
        instances[inst_name] = inst
        prev = [inst_name]
        if chain:  # its outputs, `p3_0`, `p4_0`, ...: what the next instance reads
            inst.meta["outputs"] = prev = [f"{o}_{i}" for o in chain]
            for j, part in enumerate(prev):
                instances[part] = _part(part, j, inst, block, scope.span(*here, key=True), scope.path + here)
    inputs = raw.get("in", previous)
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    if len(inputs) != len(formal):
        message = _takes(block, name, len(inputs)) if chain else f"a repeated node reads one input, but node '{name}' lists {len(inputs)}"
        scope.error("E304", message, scope.span(*here, "in"))
        return None
    body = Graph(block.name, instances, prev[0], span=scope.span(*here, key=True), inputs=formal,
                 outputs=prev if chain else [], raw_outputs=prev if chain else [])
    meta = {"source_path": scope.path + here, "given": {}, "repeat": count, "sym_repeat": sym_count, "has_first": bool(first)}
    return Node(name, "repeat", block.name, {"repeat": count}, inputs, {}, span=scope.span(*here, key=True), meta=meta, body=body)


def _first_fits(block, first: dict, here: tuple, scope: Scope) -> bool:
    """`first:`'s own keys and plain values against the block's parameters, reported where
    `first:` writes them (the instance's own check would point at the node)."""
    if scope.blame is not None:
        return True  # inside an instance, errors go to its call site
    plain = {k: v for k, v in first.items() if not holds_expression(v)}
    schema = dict(block.param_schema(), required=[])
    errors = list(validator(schema).iter_errors(plain))
    if errors:
        report_schema_errors(errors, scope.doc, scope.diags, base=scope.path + here + ("first",), allowed_extra=NODE_KEYS)
    return not errors


def _with_index(scope: Scope, i: int) -> Scope:
    """The scope of a repeated node's instance `i`: its parameters may use `$index` (0, 1, ...),
    a plain number at top level and, inside a block, a Sym variable that the emitted loop binds."""
    if scope.declared is not None:  # a definition being checked: any instance will do
        return replace(scope, declared=scope.declared + (INDEX,))
    # inside a block, a variable the emitted loop binds: `[Res(sd=0.1 * index / n) for index in range(n)]`
    sym_env = {**scope.sym_env, INDEX: Sym.var(INDEX, i)} if scope.sym_env is not None else None
    return replace(scope, env={**(scope.env or {}), INDEX: i}, sym_env=sym_env)


def _substitute(given: dict, here: tuple, scope: Scope, symbolic: bool = False) -> dict | None:
    """Replace `$name` values and evaluate expressions over them (with Sym variables when
    `symbolic`), whole values and list items alike (`kernel: [1, $k]`). In a definition,
    only check that each is well formed and declared."""
    out = {}
    ok = True
    for k, v in given.items():
        if isinstance(v, list) and holds_expression(v):
            items = [_expression(k, x, here + (k, i), scope, symbolic) if is_expression(x) else (True, x) for i, x in enumerate(v)]
            ok = ok and all(good for good, _ in items)
            out[k] = [x for _, x in items]
        elif is_expression(v):
            good, out[k] = _expression(k, v, here + (k,), scope, symbolic)
            ok = ok and good
        else:
            out[k] = v
    return out if ok else None


def holds_expression(v) -> bool:
    """A `$` expression, or a list with one among its items."""
    return is_expression(v) or (isinstance(v, list) and any(is_expression(x) for x in v))


def _expression(k: str, v: str, rel: tuple, scope: Scope, symbolic: bool) -> tuple[bool, object]:
    """(ok, value) of the expression `v` written at `rel` (parameter `k`)."""
    here = rel[:2]
    try:
        tree = parse_value(v)
    except ExprError as e:
        # YAML's { } cut an unquoted `max($a, 8)` at its comma: what is left never closes
        cut = v.count("(") > v.count(")") and not _quoted(scope, rel)
        hint = "; in { } quote an expression that holds a comma, e.g. out: \"max($a, 8)\"" if cut else ""
        scope.error_at("E208", f"bad expression in '{k}': {e}{hint}", char_span(scope, rel, e.offset))
        return False, v
    if scope.env is not None:
        unknown = [(var, at) for var, at in variables(tree) if var not in scope.env]
        if unknown:  # at top level, only a repeated node's $index is bound
            var, at = unknown[0]
            where = "is not a parameter of this block" if scope.blame is not None else "is not bound here: outside blocks, only a repeated node's parameters may use $index"
            scope.error_at("E206", f"'${var}' {where}", char_span(scope, rel, at))
            return False, v
        try:
            return True, evaluate(tree, scope.sym_env if symbolic else scope.env)
        except ExprError as e:
            scope.error_at("E208", f"'{here[1]}': {k} = {v}: {e}", char_span(scope, rel, e.offset))
            return False, v
    if scope.declared is not None:
        ok = True
        for var, at in variables(tree):
            if var not in scope.declared:
                hint = did_you_mean(var, scope.declared)
                scope.error("E206", f"'${var}' is not a parameter of this block{hint}", char_span(scope, rel, at))
                ok = False
        return ok, v
    var, at = variables(tree)[0]
    if var == INDEX:
        scope.error("E206", f"'$index' numbers the instances of a repeated node, but node '{here[1]}' has no 'repeat'", char_span(scope, rel, at))
    else:
        scope.error("E206", f"'{v}' substitutes a block parameter, but node '{here[1]}' is not inside a block definition", char_span(scope, rel, at))
    return False, v


def _quoted(scope: Scope, rel: tuple) -> bool:
    """Whether the value at `rel` is written in quotes."""
    span = scope.span(*rel)
    lines = scope.doc.text.splitlines() if scope.doc.text else []
    line = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
    return span.column - 1 < len(line) and line[span.column - 1] in "\"'"


def char_span(scope: Scope, rel: tuple, offset: int) -> Span:
    """The span of character `offset` of the string value at `rel` (past an opening quote)."""
    span = scope.span(*rel)
    lines = scope.doc.text.splitlines() if scope.doc.text else []
    line = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
    quoted = span.column - 1 < len(line) and line[span.column - 1] in "\"'"
    return Span(span.file, span.line, span.column + offset + quoted)


def _check_params(block, given: dict, here: tuple, scope: Scope, exprs: dict | None = None) -> bool:
    """Check parameter values against the block's schema. Inside an instance, a value that an
    expression computed is blamed on the expression; any other on the call site."""
    schema = block.param_schema()
    if scope.declared is not None:  # a definition: `$param` values are checked when bound
        pending = {k for k, v in given.items() if holds_expression(v)}
        given = {k: v for k, v in given.items() if k not in pending}
        schema = dict(schema, required=[r for r in schema["required"] if r not in pending])
    errors = list(validator(schema).iter_errors(given))
    if not errors:
        return True
    if scope.blame is None and not exprs:
        report_schema_errors(errors, scope.doc, scope.diags, base=scope.path + here, allowed_extra=NODE_KEYS)
    else:  # a value an expression computed is blamed on the expression (a repeated node's $index)
        inner = Diagnostics()
        report_schema_errors(errors, scope.doc, inner, base=scope.path + here, allowed_extra=NODE_KEYS)
        at_expr = {scope.span(*here, k): v for k, v in (exprs or {}).items()}
        for d in inner:
            if d.span in at_expr:
                expr = at_expr[d.span]
                hint = "; // divides to an integer" if "must be an integer" in d.message and "/" in str(expr).replace("//", "") else ""
                scope.error_at(d.code, f"{d.message}, from {expr}{hint}", d.span)
            elif scope.blame is None:
                scope.diags.error(d.code, d.message, d.span, d.notes)
            else:
                scope.error(d.code, d.message, scope.blame)
    return False


def _check_references(graph: Graph, spec_nodes: dict, scope: Scope, skip: set, splits: dict | None = None) -> bool:
    """Every `in:` and node-valued parameter names a node. Nodes in `skip` failed to build:
    they exist, so references to them are not reported again. A split is read by its parts."""
    ok = True
    splits = splits or {}
    known = list(graph.nodes) + sorted(skip)
    for node in graph.layers():
        if node.kind == "part":
            continue  # reads the composite it belongs to, by construction
        written = node.meta.get("split", node.name)  # a split's part is written as the split
        raw_in = spec_nodes[written].get("in")
        for i, ref in enumerate(node.inputs):
            rel = ("nodes", written, "in") + ((i,) if isinstance(raw_in, list) else ())
            if ref in splits:
                scope.error("E300", f"node '{node.name}' reads '{ref}', {_whole(ref, graph, splits, 'read')}", scope.span(*rel))
                ok = False
            elif ref not in known:
                scope.error("E300", f"node '{node.name}' reads '{ref}', which is not defined{did_you_mean(ref, known)}", scope.span(*rel))
                ok = False
            elif ref == node.name:
                scope.error("E301", f"node '{node.name}' reads itself", scope.span(*rel))
                ok = False
        for param, ref in node.refs.items():
            if ref in splits:
                scope.error("E300", f"'{param}' of node '{node.name}' names '{ref}', {_whole(ref, graph, splits)}", scope.span("nodes", node.name, param))
                ok = False
            elif isinstance(ref, str) and ref.startswith("$"):
                scope.error("E300", f"'{param}' of node '{node.name}' names a node, which cannot be a $parameter: a block's wiring is fixed "
                            f"where it is written; write the node's name, or make the choice an optional node (when:)", scope.span("nodes", node.name, param))
                ok = False
            elif ref not in known:
                scope.error("E300", f"node '{node.name}' refers to '{ref}', which is not defined{did_you_mean(ref, known)}", scope.span("nodes", node.name, param))
                ok = False
            elif ref == node.name:
                scope.error("E301", f"node '{node.name}' refers to itself in '{param}'", scope.span("nodes", node.name, param))
                ok = False
    for name, raw in spec_nodes.items():
        other = raw.get("otherwise") if isinstance(raw, dict) else None
        if isinstance(other, str) and other in splits:
            scope.error("E300", f"'otherwise' of node '{name}' names '{other}', {_whole(other, graph, splits)}", scope.span("nodes", name, "otherwise"))
            ok = False
        elif isinstance(other, str) and other not in known:
            scope.error("E300", f"'otherwise' of node '{name}' names '{other}', which is not defined{did_you_mean(other, known)}", scope.span("nodes", name, "otherwise"))
            ok = False
    several = bool(graph.outputs)
    what = "a block" if scope.path else "a model"
    if len(graph.raw_outputs) > MAX_OUTPUTS:  # checked here, where the message can say how many
        scope.error("E302", f"{what} returns at most {MAX_OUTPUTS} outputs; this one lists {len(graph.raw_outputs)}", scope.span("output"))
        return False
    for i, (output, raw_output) in enumerate(zip(graph.results, graph.raw_outputs or [graph.raw_output])):
        at = ("output", i) if several else ("output",)
        if several and raw_output in graph.raw_outputs[:i]:
            scope.error("E302", f"the output '{raw_output}' is listed twice; {what} returns each node once", scope.span(*at))
            ok = False
        elif several and not scope.path and output in graph.results[:i]:  # a model's two names, one value (a block may return x, x)
            other = graph.raw_outputs[graph.results.index(output)]
            scope.error("E302", f"the outputs '{other}' and '{raw_output}' are the same node here ('{output}': a node switched off "
                        f"by when: stands for the one it reads); {what} returns each node once", scope.span(*at))
            ok = False
        elif output in splits:
            written = "output" in (scope.doc.data if not scope.path else _get(scope.doc.data, scope.path))
            every = f"; output: [{', '.join(splits[output])}] returns them all" if not several else ""
            scope.error("E302", f"the output '{output}' is {_whole(output, graph, splits)}{every}",
                        scope.span(*at) if written else scope.span("nodes", output, key=True))
            ok = False
        elif output == INPUT and (raw_output not in (None, INPUT) or several):
            pass  # every optional node on the way is absent (the identity), or one of several outputs passes the input on
        elif output not in known or output == INPUT:
            choices = [n for n in known if n != INPUT]
            scope.error("E302", f"the output '{output}' is not a node{did_you_mean(output, choices)}", scope.span(*at))
            ok = False
    return ok


def _whole(name: str, graph: Graph, splits: dict, verb: str = "name") -> str:
    """What a reference to a split, or to a block with several outputs, should name instead."""
    what = f"a split: {verb} one of its parts" if name not in graph.nodes else f"a block with several outputs: {verb} one of them"
    return f"{what} ({', '.join(splits[name])})"


def _get(data, path):
    for k in path:
        data = data[k]
    return data
