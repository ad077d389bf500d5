"""Generate docs/blocks.md, the block reference, from the registry.

    python -m archcompiler.tools.blockdocs docs/blocks.md
"""
from __future__ import annotations

import json
import sys

from archcompiler.blocks.registry import FAMILIES
from archcompiler.driver import builtin_registry


def _default(frag: dict) -> str:
    if "default" not in frag:
        return "-"
    d = frag["default"]
    return f"`{json.dumps(d) if not isinstance(d, str) else d}`"


def _type(frag: dict) -> str:
    if "enum" in frag:
        return " \\| ".join(f"`{e}`" for e in frag["enum"])
    if "x-expected" in frag:
        return frag["x-expected"]
    if "oneOf" in frag:
        return " or ".join(_type(f) for f in frag["oneOf"])
    t = frag.get("type", "any")
    bounds = []
    for k, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if k in frag:
            bounds.append(f"{sym} {frag[k]}")
    return t + (f" ({', '.join(bounds)})" if bounds else "")


def render() -> str:
    reg = builtin_registry()
    out = [
        "# Block reference",
        "",
        "Generated from the block registry by `make docs` (`python -m archcompiler.tools.blockdocs`);",
        "do not edit by hand. Every node may also take `in:` (a node name, or a list for merges).",
        "",
    ]
    for family, fam in FAMILIES.items():
        title = fam.title
        blocks = [b for b in reg if b.family == family]
        if not blocks:
            continue
        out += [f"## {title.capitalize()}", ""]
        for b in blocks:
            arity = "two or more inputs (a list in `in:`)" if b.arity is None else "one input"
            out += [f"### `{b.name}`", "", b.summary, "", f"Takes {arity}. Defined in {b.origin}.", ""]
            if b.params:
                out += ["| parameter | type | default | meaning |", "|---|---|---|---|"]
                for name, frag in b.params.items():
                    req = "required" if name in b.required else _default(frag)
                    out.append(f"| `{name}` | {_type(frag)} | {req} | {frag.get('description', '')} |")
                out.append("")
            if b.is_composite:
                body = ", ".join(f"`{n}` ({spec['type']})" for n, spec in b.nodes.items())
                outs = ", ".join(f"`{o}`" for o in b.outputs)
                out += [f"Body: {body}; output{'s' if len(b.outputs) > 1 else ''} {outs}.", ""]
    return "\n".join(out)


def main() -> None:
    from runtime.files import write_text

    target = sys.argv[1] if len(sys.argv) > 1 else "docs/blocks.md"
    write_text(target, render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
