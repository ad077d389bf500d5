"""Imports flow one way, down the pipeline (docs/architecture.md draws it).

Every `import` statement of every module is read with `ast`, at module level and inside
functions alike, and checked against the table below: a stage may import only the stages
under it. The runtime trains any nn.Module and never imports the compiler.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# stage -> the stages it may import (besides itself). Lower stages come first.
ALLOWED = {
    "archcompiler.errors": set(),
    "archcompiler.diagnostics": set(),
    "archcompiler.ir": {"archcompiler.diagnostics"},
    "archcompiler.blocks": {"archcompiler.ir", "archcompiler.diagnostics"},
    "archcompiler.frontend": {"archcompiler.blocks", "archcompiler.ir", "archcompiler.diagnostics", "runtime.vocab"},
    "archcompiler.passes": {"archcompiler.frontend", "archcompiler.blocks", "archcompiler.ir", "archcompiler.diagnostics", "runtime.vocab"},
    "archcompiler.driver": {"archcompiler.passes", "archcompiler.frontend", "archcompiler.blocks", "archcompiler.ir", "archcompiler.diagnostics"},
    "archcompiler.backends": {"archcompiler.blocks", "archcompiler.ir", "archcompiler.diagnostics", "runtime.table"},
    "archcompiler.api": {"archcompiler", "archcompiler.backends", "archcompiler.driver", "archcompiler.errors", "archcompiler.ir", "archcompiler.diagnostics"},
    "runtime": {"runtime.vocab", "runtime.table"},
    # Two leaves of the runtime that the compiler may read: the vocabulary (optimizer names
    # for the schema) and the table renderer (check's table). Neither imports torch.
    "runtime.vocab": {"runtime"},
    "runtime.table": set(),
}
# The top of the pipeline may import everything: the CLI, tools and the package's own entry.
TOP = ("archcompiler.cli", "archcompiler.tools", "archcompiler.__main__", "archcompiler")


def stage_of(module: str) -> str | None:
    for stage in sorted(ALLOWED, key=len, reverse=True):
        if module == stage or module.startswith(stage + "."):
            return stage
    return None


def modules():
    for pkg in ("archcompiler", "runtime"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imports(path: Path, module: str) -> list[str]:
    out = []
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            out += [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]
    return [m for m in out if m.split(".")[0] in ("archcompiler", "runtime")]


def _is_module(name: str) -> bool:
    p = ROOT / Path(*name.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


CASES = [(m, p) for m, p in modules() if not any(m == t or m.startswith(t + ".") for t in TOP[:-1]) and m != "archcompiler"]


@pytest.mark.parametrize("module, path", CASES, ids=[m for m, _ in CASES])
def test_imports_flow_down_the_pipeline(module, path):
    stage = stage_of(module)
    assert stage is not None, f"{module} belongs to no stage: add it to docs/architecture.md and ALLOWED"
    allowed = ALLOWED[stage] | {stage}
    bad = sorted({m for m in imports(path, module) if stage_of(m) not in allowed and m != "archcompiler"} - {module})
    assert not bad, f"{module} ({stage}) imports {bad}; it may import only {sorted(allowed)}"


def test_no_import_cycles_between_modules():
    """Module-level imports form no cycle (the registry's registration is data, not an import)."""
    graph = {}
    for module, path in modules():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:  # module level only: imports inside functions run later
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("archcompiler", "runtime"):
                deps |= {f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] in ("archcompiler", "runtime")}
        graph[module] = deps
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen or m not in graph:
            return
        seen.add(m)
        stack.append(m)
        for d in graph[m]:
            visit(d)
        stack.pop()

    for m in graph:
        visit(m)
    assert not cycles, cycles[:3]
