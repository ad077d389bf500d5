"""`make figures`: SVG diagrams of every spec and every built-in composite block.

    python -m archcompiler.tools.figures docs/figures [--specs specs]

Writes, for each spec `specs/[SUB/]NAME.yaml`, `[SUB/]NAME.svg` (composites collapsed) and
`[SUB/]NAME.expanded.svg` (composites as nested clusters), and for each composite of the standard
library `block_NAME.svg`, drawn where the paper uses it (the paper's Figures 1-4; Figure 5 is
`attn_reduction.svg`). Files are written atomically; the run stops at the first failure.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

from archcompiler.driver import builtin_registry
from archcompiler.cli.render import SpecError, render


def figures(out_dir: str, specs_dir: str = "specs") -> list[str]:
    """Write every figure; returns their paths in the order written."""
    written = []
    for spec in sorted(glob.glob(os.path.join(specs_dir, "**", "*.yaml"), recursive=True)):
        stem = os.path.splitext(os.path.relpath(spec, specs_dir))[0]  # 'examples/resnet18'
        for suffix, expand in (("", False), (".expanded", True)):
            path = os.path.join(out_dir, f"{stem}{suffix}.svg")
            render(spec, path, expand=expand)
            written.append(path)
    for block in builtin_registry():
        if block.is_composite:
            path = os.path.join(out_dir, f"block_{block.name}.svg")
            render(None, path, block=block.name)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m archcompiler.tools.figures", description=__doc__.split("\n")[0])
    p.add_argument("out_dir", help="folder to write the SVGs into (docs/figures)")
    p.add_argument("--specs", default="specs", help="folder of specs to draw (default: specs)")
    args = p.parse_args(argv)
    try:
        for path in figures(args.out_dir, args.specs):
            print(f"wrote {path}")
    except SpecError as e:
        print("\n".join(d.pretty({e.result.file: e.result.text or ""}) for d in e.result.diagnostics), file=sys.stderr)
        return e.exit_code
    except Exception as e:  # report errors meant for users as archc does, without a traceback
        if getattr(e, "exit_code", None) is None:
            raise
        print(f"figures: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
