"""The composite standard library: the paper's blocks, written as YAML graphs."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def files() -> list[Path]:
    return sorted(HERE.glob("*.yaml"))


def load_into(registry) -> None:
    """Register every stdlib composite; any diagnostic here is a bug in archc itself."""
    from archcompiler.blocks.registry import RegistryError
    from archcompiler.passes.definitions import register_blocks
    from archcompiler.spec.diagnostics import Diagnostics
    from archcompiler.spec.loader import load_file

    diags = Diagnostics()
    docs = []
    for path in files():
        doc = load_file(str(path), diags, display=f"<stdlib>/{path.name}")
        if doc is not None:
            docs.append(doc)
    from archcompiler.spec.schema import validate_structure

    docs = [doc for doc in docs if validate_structure(doc, diags)[0]]
    for doc in docs:
        register_blocks(doc, registry, diags, origin=doc.file)
    if diags:
        raise RegistryError("the block standard library is broken:\n" + "\n".join(d.concise() for d in diags))
