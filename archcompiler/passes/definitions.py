"""Composite block definitions: register them, refuse recursion, check each body once."""
from __future__ import annotations

from archcompiler.blocks.composite import BUILTIN_VARS, Composite
from archcompiler.blocks.registry import CODE_GLOBALS, Registry
from archcompiler.diagnostics import Diagnostics, did_you_mean
from archcompiler.frontend.loader import Document
from archcompiler.frontend.schema import NODE_KEYS, declared_rules, report_schema_errors, validator
from archcompiler.ir.arith import ExprError, is_expression, parse_value, variables
from archcompiler.ir.graph import stable_topological_order
from archcompiler.passes.build import INDEX, Scope, build_graph
from archcompiler.passes.rules import check_rules, simple_cycles


def register_blocks(doc: Document, registry: Registry, diags: Diagnostics, origin: str, broken=frozenset()) -> None:
    """Register a document's `blocks:`. Blocks in `broken` (already reported) are registered
    so that their uses are not reported as unknown, but are never checked or expanded."""
    defs = doc.data.get("blocks") or {}
    new: list[Composite] = []
    for name, definition in defs.items():
        if name in registry:
            existing = registry.get(name)
            diags.error("E207", f"block '{name}' is already defined ({existing.origin}); choose another name", doc.span(("blocks", name), key=True))
            continue
        if not isinstance(definition, dict):  # reported by the structure check
            definition = {}
        block = Composite(name=name, definition=definition, doc=doc, path=("blocks", name), origin=origin, broken=name in broken)
        registry.register(block)
        new.append(block)
    recursive = _check_recursion([b for b in new if not b.broken], registry, diags)
    for block in new:
        block.broken = block.broken or block.name in recursive
        if not block.broken:
            block.broken = not _check_definition(block, registry, diags)


def _check_recursion(new: list[Composite], registry: Registry, diags: Diagnostics) -> set[str]:
    uses: dict[str, list[str]] = {}
    for block in registry:
        if block.is_composite and not block.broken:
            targets = [u for u in block.uses() if (t := registry.get(u)) is not None and t.is_composite and not t.broken]
            uses[block.name] = list(dict.fromkeys(targets))
    if len(stable_topological_order(uses)) == len(uses):
        return set()  # no recursion: the common case, without importing networkx
    broken: set[str] = set()
    new_names = [b.name for b in new]
    for cycle in simple_cycles(uses):
        mine = [n for n in new_names if n in cycle]
        if not mine:
            continue
        start = mine[0]
        i = cycle.index(start)
        chain = " -> ".join(cycle[i:] + cycle[:i] + [start])
        block = registry.get(start)
        diags.error("E203", f"block '{start}' is recursive ({chain}); a composite cannot contain itself", block.doc.span(block.path, key=True))
        broken.update(cycle)
    return broken


def _default_cycle(block: Composite, start: str) -> list[str] | None:
    """The chain by which `start`'s default reads itself (padding -> kernel -> padding), or None."""
    def reads(name: str) -> list[str]:
        d = (block.params.get(name) or {}).get("default")
        if not is_expression(d):
            return []
        try:
            return [v for v, _ in variables(parse_value(d)) if v in block.params]
        except ExprError:
            return []

    path, stack = [start], [iter(reads(start))]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            path.pop()
        elif nxt == start:
            return path + [start]
        elif nxt not in path:
            path.append(nxt)
            stack.append(iter(reads(nxt)))
    return None


def _string_choices(decl) -> list | None:
    """The strings a parameter may hold, for checking `$p == 'x'` where the block is defined:
    its enum's strings (also inside oneOf), or None when any string goes or it is untyped."""
    if not isinstance(decl, dict):
        return None
    members = [decl] + [m for m in decl.get("oneOf") or [] if isinstance(m, dict)]
    if any(m.get("type") == "string" for m in members) or not any("type" in m or "enum" in m for m in members):
        return None
    return [v for m in members for v in (m.get("enum") if isinstance(m.get("enum"), list) else []) if isinstance(v, str)]


def _check_definition(block: Composite, registry: Registry, diags: Diagnostics) -> bool:
    """Check a definition's defaults and body once; False when its own parameters are bad
    (its uses are then skipped: every instance would repeat the same error)."""
    declared = tuple(block.params) + block.builtin_vars
    sound = True
    helpers = {h for b in registry for h in b.torch_helpers()}
    for pname in block.params:
        if pname in BUILTIN_VARS:  # a named input's own ($skip_channels) are reported at the input
            diags.error("E211", f"parameter '{pname}' of block '{block.name}' has the name of a built-in, bound from an input's shape; rename it", block.doc.span(block.path + ("params", pname), key=True))
            sound = False
        elif pname in NODE_KEYS:  # `repeat`, `first`, `when`, `otherwise` at a use are the node's own keys
            diags.error("E211", f"parameter '{pname}' of block '{block.name}' has the name of a node's own key ({', '.join(NODE_KEYS)}): "
                        f"a use could never set it; rename it", block.doc.span(block.path + ("params", pname), key=True))
            sound = False
        elif pname == INDEX:
            diags.error("E211", f"parameter '{pname}' of block '{block.name}' has the name of the built-in $index, a repeated node's instance number; rename it",
                        block.doc.span(block.path + ("params", pname), key=True))
            sound = False
        elif pname in CODE_GLOBALS or pname in helpers:
            what = "Python's built-in" if pname in CODE_GLOBALS else "the emitted helper"
            diags.error("E211", f"parameter '{pname}' of block '{block.name}' would hide {what} '{pname}' in the emitted constructor; rename it",
                        block.doc.span(block.path + ("params", pname), key=True))
            sound = False
    if len(block.outputs) > 1 and "outputs" in block.params:  # a use's `outputs:` names its outputs
        diags.error("E211", f"parameter 'outputs' of block '{block.name}' has the name of the key that names the block's outputs where it is used; rename it",
                    block.doc.span(block.path + ("params", "outputs"), key=True))
        sound = False
    for i, n in enumerate(block.extra_inputs):
        clash = "node" if n in block.nodes else "parameter" if n in block.params else None
        bound = [v for v in block.builtin_vars[len(BUILTIN_VARS):] if v.startswith(f"{n}_") and v in block.params]
        if clash or bound:
            what = f"has the name of one of its {clash}s" if clash else f"binds ${bound[0]}, which is also a parameter's name"
            diags.error("E211", f"input '{n}' of block '{block.name}' {what}; rename one", block.doc.span(block.path + ("inputs", i)))
            sound = False
    if not sound:
        return False
    for pname, decl in block.params.items():
        at = block.path + ("params", pname, "default")
        d = decl.get("default")
        if is_expression(d) and decl.get("type") == "array":  # an expression computes one number, never a list
            diags.error("E102", f"the default of '{pname}' must be a list, got '{d}'", block.doc.span(at))
            sound = False
        elif is_expression(d):
            try:
                names = variables(parse_value(d))
            except ExprError as e:
                diags.error("E208", f"bad expression in the default of '{pname}': {e}", block.doc.span(at))
                sound = False
                continue
            for var, _ in names:
                if var not in declared:
                    hint = did_you_mean(f"${var}", [f"${v}" for v in declared])
                    diags.error("E206", f"the default of '{pname}' may use the block's parameters and ${', $'.join(block.builtin_vars)}, "
                                f"got '{d}'{hint}", block.doc.span(at))
                    sound = False
                    break
            else:
                if cycle := _default_cycle(block, pname):
                    diags.error("E206", f"the default of '{pname}' depends on itself: {' -> '.join('$' + c for c in cycle)}", block.doc.span(at))
                    sound = False
        elif "default" in decl:
            errors = list(validator(declared_rules(decl)).iter_errors(d))
            sound = sound and not errors
            report_schema_errors(errors, block.doc, diags, base=at)
    choices = {p: c for p, c in ((p, _string_choices(d)) for p, d in block.params.items()) if c is not None}
    scope = Scope(doc=block.doc, path=block.path, registry=registry, diags=diags, declared=declared, choices=choices)
    graph, _ = build_graph(block.name, scope)
    check_rules(graph, scope)
    return sound
