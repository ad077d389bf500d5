"""Block types: the registry and the primitives, one file per family.

Composite block types are written in YAML (`stdlib/*.yaml` here, or a spec's `blocks:`);
the driver loads them through the front-end, so this package imports nothing above `ir`.
"""
from __future__ import annotations

PRIMITIVE_MODULES = ("conv", "norm", "activation", "pooling", "merge", "head")


def primitives() -> list:
    """Every primitive block type, in family order."""
    import importlib

    return [b for m in PRIMITIVE_MODULES for b in importlib.import_module(f"archcompiler.blocks.{m}").BLOCKS]


def stdlib_files() -> list:
    """The composite standard library's YAML files."""
    from pathlib import Path

    return sorted((Path(__file__).parent / "stdlib").glob("*.yaml"))
