"""The compiler driver: YAML text -> checked, shaped, costed graph IR.

    text -> positioned document -> schema check -> block definitions -> graph IR
         -> graph rules -> shape inference (expanding composites) -> costs

Every stage adds diagnostics instead of raising; a stage runs only if the one before it
produced something sound to work on.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from archcompiler.blocks import primitives, stdlib_files
from archcompiler.blocks.registry import Registry, RegistryError
from archcompiler.diagnostics import Diagnostics
from archcompiler.frontend.loader import MAX_TEXT, Document, load_file, load_text
from archcompiler.frontend.schema import validate_structure
from archcompiler.ir.graph import Graph
from archcompiler.passes.build import Scope, build_graph, check_defaults
from archcompiler.passes.costs import annotate_costs
from archcompiler.passes.definitions import register_blocks
from archcompiler.passes.rules import check_rules
from archcompiler.passes.shapes import infer_shapes


@dataclass
class CheckResult:
    file: str
    text: str | None = None
    doc: Document | None = None
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    graph: Graph | None = None  # set when the spec is sound
    registry: Registry | None = None
    totals: dict | None = None

    @property
    def ok(self) -> bool:
        """A model without errors: its graph is built, shaped and costed."""
        return not self.diagnostics.has_errors and self.graph is not None

    @property
    def is_library(self) -> bool:
        """A file of `blocks:` only, with no model of its own."""
        return self.doc is not None and "nodes" not in self.doc.data

    @property
    def valid(self) -> bool:
        """What `archc check` exits 0 for: a model that is ok, or a library without errors."""
        return self.ok or (self.is_library and not self.diagnostics.has_errors)

    @property
    def name(self) -> str | None:
        return self.doc.data.get("name") if self.doc else None

    @property
    def data(self) -> dict:
        return self.doc.data if self.doc else {}

    @property
    def input_shape(self) -> tuple | None:
        return tuple(self.data["input"]) if "input" in self.data else None

    @property
    def train(self) -> dict:
        return dict(self.data.get("train") or {})


_BUILTIN: Registry | None = None


def builtin_registry() -> Registry:
    """Primitives plus the composite standard library, loaded once."""
    global _BUILTIN
    if _BUILTIN is None:
        reg = Registry()
        for block in primitives():
            reg.register(block)
        _load_stdlib(reg)
        _BUILTIN = reg
    return _BUILTIN


def _load_stdlib(registry: Registry) -> None:
    """Register every stdlib composite; any diagnostic here is a bug in archc itself."""
    diags = Diagnostics()
    docs = []
    for path in stdlib_files():
        doc = load_file(str(path), diags, display=f"<stdlib>/{path.name}")
        if doc is not None and validate_structure(doc, diags)[0]:
            docs.append(doc)
    for doc in docs:
        register_blocks(doc, registry, diags, origin=doc.file)
    if diags:
        raise RegistryError("the block standard library is broken:\n" + "\n".join(d.concise() for d in diags))


def check_text(text: str, file: str = "<string>", registry: Registry | None = None) -> CheckResult:
    """Check a spec given as text. `registry`: the block types it may use (default: the built-ins)."""
    result = CheckResult(file, text)
    result.doc = load_text(text, file, result.diagnostics)
    _analyse(result, registry)
    return result


def check_file(path: str, registry: Registry | None = None) -> CheckResult:
    result = CheckResult(path)
    result.doc = load_file(path, result.diagnostics)
    result.text = result.doc.text if result.doc is not None else _read_for_display(path)
    _analyse(result, registry)
    return result


def _read_for_display(path: str) -> str | None:
    """The text of a file that failed to load, so diagnostics can still quote its lines."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(MAX_TEXT + 1).decode("utf-8", "replace")
    except OSError:
        return None


def _analyse(result: CheckResult, base: Registry | None = None) -> None:
    doc, diags = result.doc, result.diagnostics
    if doc is None:
        return
    sound, broken_nodes, broken_blocks = validate_structure(doc, diags)
    if not sound:
        _sort(diags)
        return
    registry = (base or builtin_registry()).child()
    register_blocks(doc, registry, diags, origin=f"{doc.file}", broken=broken_blocks)
    result.registry = registry
    if "nodes" not in doc.data:
        _sort(diags)  # a block library: its definitions are all there is to check
        return
    defaults = check_defaults(doc, registry, diags)
    scope = Scope(doc=doc, path=(), registry=registry, diags=diags, broken=broken_nodes, defaults=defaults)
    graph, complete = build_graph(doc.data["name"], scope)
    if check_rules(graph, scope) and complete and not diags.has_errors:
        if infer_shapes(graph, tuple(doc.data["input"]), scope):
            result.totals = annotate_costs(graph, registry)
            result.graph = graph
    _sort(diags)


def _sort(diags: Diagnostics) -> None:
    diags.sort(key=lambda d: (d.span.file, d.span.line, d.span.column) if d.span else ("", 0, 0))
