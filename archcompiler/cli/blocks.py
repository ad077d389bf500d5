"""`archc blocks`: list the registered block types and their parameters."""
from __future__ import annotations

from archcompiler.blocks.registry import FAMILIES
from archcompiler.driver import builtin_registry
from runtime import argtypes


def main(argv: list[str]) -> int:
    argtypes.Parser(prog="archc blocks", description="List the built-in block types (docs/blocks.md has the full reference).").parse_args(argv)
    reg = builtin_registry()
    for family, fam in FAMILIES.items():
        title = fam.title
        blocks = [b for b in reg if b.family == family]
        print(f"{title}:")
        for b in blocks:
            params = ", ".join(b.params) or "-"
            print(f"  {b.name:<20} {params}")
    return 0
