"""`make figures`: SVG diagrams of every spec and every built-in composite block.

    python -m archcompiler.tools.figures docs/figures [--specs specs]

Writes, for each spec `specs/[SUB/]NAME.yaml`, `[SUB/]NAME.svg` (composites collapsed) and
`[SUB/]NAME.expanded.svg` (composites as nested clusters), and for each composite of the standard
library `block_NAME.svg`, drawn where the paper uses it (the paper's Figures 1-4; Figure 5 is
`attn_reduction.svg`). The specs in VIEWER also get their interactive page, NAME.html, and a
screenshot of it, NAME.html.png. Files are written atomically; the run stops at the first failure.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

from archcompiler.driver import builtin_registry
from archcompiler.cli.render import SpecError, render


# Specs whose interactive page (`archc render -o x.html`) is committed too; the README links
# to it, with a screenshot taken by `screenshots` when a headless browser is installed.
# Each with what the screenshot shows: the soft-attention block opened, and selected so the
# side panel shows its numbers and spec lines.
VIEWER = {"attn_reduction": "archcViewer.toggle('attn'); archcViewer.select('attn')"}


def figures(out_dir: str, specs_dir: str = "specs") -> list[str]:
    """Write every figure; returns their paths in the order written."""
    written = []
    for spec in sorted(glob.glob(os.path.join(specs_dir, "**", "*.yaml"), recursive=True)):
        stem = os.path.splitext(os.path.relpath(spec, specs_dir))[0]  # 'examples/resnet18'
        for suffix, expand in (("", False), (".expanded", True)):
            path = os.path.join(out_dir, f"{stem}{suffix}.svg")
            render(spec, path, expand=expand)
            written.append(path)
        if stem in VIEWER:
            path = os.path.join(out_dir, f"{stem}.html")
            render(spec, path)
            written.append(path)
    return written + _blocks(out_dir)


def screenshots(out_dir: str) -> list[str]:
    """A 1280x800 PNG of each committed page as it opens, or [] (with the reason on stderr)
    when no headless browser can run. Pixels vary between browser versions: no test compares them."""
    from archcompiler.tools import browser

    if (why := browser.missing()) is not None:
        print(f"figures: no screenshots of the viewer: {why}", file=sys.stderr)
        return []
    written = []
    for stem, script in VIEWER.items():
        html, png = os.path.join(out_dir, f"{stem}.html"), os.path.join(out_dir, f"{stem}.html.png")
        browser.screenshot(html, png, script)
        written.append(png)
    return written


def _blocks(out_dir: str) -> list[str]:
    written = []
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
        for path in figures(args.out_dir, args.specs) + screenshots(args.out_dir):
            print(f"wrote {path}")
    except SpecError as e:
        print("\n".join(d.pretty(e.sources) for d in e.result.diagnostics), file=sys.stderr)
        return e.exit_code
    except Exception as e:  # report errors meant for users as archc does, without a traceback
        if getattr(e, "exit_code", None) is None:
            raise
        print(f"figures: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
