"""Shape inference, with composite expansion.

A composite's body can only be instantiated once its input shape is known ($in_channels),
so expansion happens here, node by node in topological order. Each composite node keeps its
expanded body graph (`node.body`), so tables and diagrams can nest.

Inside a body, every node also gets its parameters and shape as expressions in the block's
own parameters (`meta["sym_params"]`, `meta["sym_shape"]`; see archcompiler.ir.expr), and
each composite node the arguments its caller passes (`meta["call_args"]`), written in the
caller's parameters. This is what code generation reads: one class per block, honest about
which arguments it uses, with no shape rule run a second time.
"""
from __future__ import annotations

from dataclasses import replace

from archcompiler.blocks.composite import EXTRA_DIMS, DefaultError
from archcompiler.blocks.registry import ShapeError
from archcompiler.ir.arith import is_expression
from archcompiler.ir.expr import Sym, rebind, substitute, value_of
from archcompiler.ir.graph import Graph, Node, topological_order
from archcompiler.passes.build import INDEX, Scope, build_graph

SPATIAL_VARS = ("in_channels", "in_height", "in_width")


def infer_shapes(graph: Graph, input_shape: tuple, scope: Scope, sym_input: tuple | None = None, others: tuple = (),
                 index_step: bool = False, sym_others: tuple | None = None) -> bool:
    """Fill meta['shape'] everywhere. Returns False if any node failed (others still run).
    `sym_input`: the input's shape in the frame's parameters, when it is not the frame's own
    input (a repeated node's body). `others`: the shapes of a composite's named inputs."""
    graph.input.meta["shape"] = tuple(input_shape)
    graph.input.meta["sym_shape"] = sym_input if sym_input is not None else _sym_input(input_shape, scope)
    for k, (name, shape) in enumerate(zip(graph.inputs[1:], others)):
        graph.nodes[name].meta["shape"] = tuple(shape)
        names = [f"{name}_{d}" for d in EXTRA_DIMS[: len(shape)]]
        if sym_others is not None:  # a repeated node's body: its inputs in the frame's own parameters
            graph.nodes[name].meta["sym_shape"] = tuple(sym_others[k])
        else:
            graph.nodes[name].meta["sym_shape"] = tuple(scope.sym_env[v] for v in names) if scope.sym_env is not None else tuple(shape)
    ok = True
    said: set[str] = set()
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
            if node.kind == "part":  # one output of a composite with several
                source = graph.nodes[node.inputs[0]]
                node.meta["shape"] = source.meta["shapes"][node.meta["index"]]
                node.meta["sym_shape"] = source.meta["sym_shapes"][node.meta["index"]]
            elif node.kind == "composite":
                node.meta["shape"] = _expand(node, graph, ins, scope)
            elif node.kind == "repeat":
                node.meta["shape"] = _repeat(node, graph, ins, scope)
            else:
                block = scope.registry.get(node.type)
                node.meta["shape"] = tuple(block.infer(node.params, ins, refs, node.inputs))
                _infer_symbolic(node, graph, block, scope)
            if index_step and "sym_shape" in node.meta:  # a repeat's instance: seen by the next one
                node.meta["sym_shape"] = tuple(rebind(d, INDEX, Sym.var(INDEX, 0) - 1) for d in node.meta["sym_shape"])
        except _Reported:
            ok = False
        except ShapeError as e:
            # Blame the parameter (or the `in:` list of a merge) where the spec wrote one.
            blamed = bool(e.param) and (e.param in node.params or e.param == "in")
            rel = node.meta["source_path"] + ((e.param,) if blamed else ())
            span = scope.doc.span(rel) if blamed else node.span  # inside an instance: where in the body (Diagnostic.inner)
            message = f"node '{node.meta.get('split', node.name)}' ({node.type}): {e}"  # a split's parts fail alike: once
            if message not in said:
                said.add(message)
                scope.error(e.code, message, span)
            ok = False
    return ok


def _sym_input(shape: tuple, scope: Scope) -> tuple:
    if scope.sym_env is None:
        return tuple(shape)
    return tuple(scope.sym_env[v] for v in SPATIAL_VARS[: len(shape)])


def _infer_symbolic(node: Node, graph: Graph, block, scope: Scope) -> None:
    """The node's parameters and shape in its block's parameters (plain values at top level)."""
    if scope.sym_env is None:
        node.meta["sym_params"], node.meta["sym_shape"] = node.params, node.shape
        return
    p = block.with_defaults(node.meta["sym_given"])
    ins = [graph.nodes[i].meta["sym_shape"] for i in node.inputs]
    refs = {k: graph.nodes[r].meta["sym_shape"] for k, r in node.refs.items()}
    node.meta["sym_params"] = p
    node.meta["sym_shape"] = tuple(block.infer(p, ins, refs, node.inputs))


# Blocks within blocks: real CNNs nest a handful (stage > unit > branch); each level is three
# Python frames when the emitted model runs, so a few hundred overflow the recursion limit.
# torch.compile traces 64 levels on CPU (measured), well within it.
MAX_DEPTH = 64


def _expand(node: Node, graph: Graph, ins: list, scope: Scope) -> tuple:
    """Instantiate the composite for these input shapes and infer its body."""
    block = scope.registry.get(node.type)
    if any(t == node.type for _, t in scope.trail):
        raise ShapeError(f"block '{node.type}' contains itself", code="E203")
    if len(scope.trail) >= MAX_DEPTH:  # named once, at the outermost use: the chain itself is 64 links long
        outer, outer_type = scope.trail[0]
        scope.diags.error("E213", f"node '{outer}' ({outer_type}) nests blocks more than {MAX_DEPTH} deep (down to '{node.name}' ({node.type})); "
                          "the emitted model would outgrow Python's recursion limit, and real networks nest a handful", scope.blame).inner = node.span
        raise _Reported()
    in_shape, others = ins[0], tuple(ins[1:])
    try:
        env = block.bind(node.params, in_shape, others)
    except DefaultError as e:
        scope.error("E208", f"node '{node.name}' ({node.type}): the default of '{e.param}' = {e.text}: {e}", node.span)
        raise _Reported() from None
    if not _defaults_fit(block, env, node, scope):
        raise _Reported()
    inner = Scope(
        doc=block.doc,
        path=block.path,
        registry=scope.registry,
        diags=scope.diags,
        env=env,
        sym_env={k: Sym.var(k, v) for k, v in env.items()},
        blame=scope.blame or node.span,
        defaults=scope.defaults,
        trail=scope.trail + [(node.name, node.type)],
        budget=scope.budget,
    )
    before = len(scope.diags)
    body, complete = build_graph(node.type, inner)
    if complete and body.optional:  # with nodes left out here, what stands in for one may close a loop
        from archcompiler.passes.rules import report_cycles

        complete = report_cycles(body, inner)
    if not complete or not infer_shapes(body, in_shape, inner, others=others):
        if len(scope.diags) == before and scope.budget[0] >= 0:  # never silent (past the budget, E213 said why)
            scope.error("E400", f"node '{node.name}' ({node.type}) could not be expanded", node.span)
        raise _Reported()
    node.body = body
    node.params = {k: env[k] for k in block.params}  # every declared parameter, bound
    node.meta["env"] = env  # plus $in_channels & co.: what the body was built from
    # The caller's side, in the caller's parameters: what it passes, and the shape it gets.
    given = node.meta.get("sym_given", node.meta["given"])
    sym_ins = [graph.nodes[i].meta["sym_shape"] for i in node.inputs]
    call_args = block.bind(given, sym_ins[0], tuple(sym_ins[1:]))
    node.meta["call_args"] = call_args
    node.meta["sym_params"] = {k: call_args[k] for k in block.params}
    sym_shapes = [tuple(substitute(d, call_args) for d in body.nodes[o].meta["sym_shape"]) for o in body.results]
    node.meta["sym_shape"] = sym_shapes[0]
    if body.outputs:  # several: each is read through a `part` node; `shape` is the first, for passes that ask any node
        node.meta["shapes"] = [body.nodes[o].shape for o in body.results]
        node.meta["sym_shapes"] = sym_shapes
    return body.nodes[body.output].shape


def _defaults_fit(block, env: dict, node: Node, scope: Scope) -> bool:
    """A value a default computed for this use (`padding: $kernel // 2`, `width: $in_channels // 4`)
    is held to its parameter's declaration (type, minimum, maximum, enum), as a given one is."""
    from archcompiler.frontend.schema import _show, declared_rules, validator

    ok = True
    for k, decl in block.params.items():
        d = decl.get("default")
        if k in node.params or not is_expression(d):
            continue
        for err in validator(declared_rules(decl)).iter_errors(value_of(env[k])):
            scope.error("E103", f"node '{node.name}' ({node.type}): the default of '{k}' = {d} gives {_show(value_of(env[k]))} here, "
                        f"but {_rule(err)}", node.span)
            ok = False
            break
    return ok


def _rule(err) -> str:
    """What the declaration wants, from a jsonschema error."""
    from archcompiler.frontend.schema import _show as schema_show

    v, limit = err.validator, err.validator_value
    wants = {"minimum": f"it must be at least {limit}", "maximum": f"it must be at most {limit}",
             "exclusiveMinimum": f"it must be above {limit}", "exclusiveMaximum": f"it must be below {limit}",
             "type": f"it must be {'an' if str(limit)[0] in 'aeiou' else 'a'} {limit}",
             "enum": "it must be one of " + ", ".join(map(schema_show, limit)) if isinstance(limit, list) else "it is not allowed"}
    return wants.get(v, f"it fails its declaration ({err.message})")


def _repeat(node: Node, graph: Graph, ins: list, scope: Scope) -> tuple:
    """A repeated node's instances, inline in the same frame: their parameters are written in
    the same block parameters as the node's. Inside a block `$index` is a variable of the
    emitted loop, so an instance's output shape is handed on in the next instance's `index`
    (`8 + index` becomes `8 + (index - 1)`) and out of the loop in its count."""
    sym_in = graph.nodes[node.inputs[0]].meta["sym_shape"]
    sym_others = [graph.nodes[i].meta["sym_shape"] for i in node.inputs[1:]]
    inner = replace(scope, blame=scope.blame or node.span, trail=scope.trail + [(node.name, node.display_type)])
    if not infer_shapes(node.body, ins[0], inner, sym_input=sym_in, others=tuple(ins[1:]), sym_others=sym_others,
                        index_step=scope.sym_env is not None):
        raise _Reported()
    for inst in node.body.layers():  # stacked in an nn.Sequential: each must be a module
        if inst.kind == "part":
            continue
        block = scope.registry.get(inst.type)
        # the emitter builds each from its parameters as written (a window of $in_height // 4 is
        # a function call sized in forward, not a module), so ask as it will
        ins = [node.body.nodes[i].meta.get("sym_shape", node.body.nodes[i].shape) for i in inst.inputs]
        if not block.is_composite and block.torch_module(inst.meta.get("sym_params", inst.params), ins) is None:
            raise ShapeError(f"'{inst.type}' computes without a module of its own here and cannot be repeated; write its instances out", param="repeat", code="E209")
    out = node.body.nodes[node.body.output]
    count = node.meta.get("sym_repeat", node.meta["repeat"])
    node.meta["sym_params"] = node.params
    node.meta["sym_shape"] = tuple(rebind(d, INDEX, count) for d in out.meta["sym_shape"])
    if node.body.outputs:  # a block with several outputs, chained: the last instance's
        node.meta["shapes"] = [node.body.nodes[o].shape for o in node.body.results]
        node.meta["sym_shapes"] = [tuple(rebind(d, INDEX, count) for d in node.body.nodes[o].meta["sym_shape"]) for o in node.body.results]
    return out.shape


class _Reported(ShapeError):
    """A failure inside a composite body, already reported there."""

    def __init__(self):
        super().__init__("reported")
