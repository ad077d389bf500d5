"""`archc emit SPEC -o model.py`: write standalone PyTorch source for a spec."""
from __future__ import annotations

import argparse
import sys

from archcompiler.cli.common import compile_or_report


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="archc emit", description="Write one standalone Python file (needs only torch) for a spec.")
    p.add_argument("spec", metavar="SPEC", help="spec file (.yaml)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: standard output)")
    p.add_argument("--line-map", metavar="FILE", help="also write the generated-line -> spec-line map as JSON")
    args = p.parse_args(argv)
    compiled = compile_or_report(args.spec)
    if compiled is None:
        return 1
    if args.output:
        from runtime.files import write_text

        write_text(args.output, compiled.source)
        print(f"wrote {args.output}: class {compiled.class_name}, {compiled.totals['params']:,} parameters", file=sys.stderr)
    else:
        sys.stdout.write(compiled.source)
    if args.line_map:
        import json

        from runtime.files import write_text

        table = {
            str(line): {"class": i.cls, "node": i.node, "file": i.span.file if i.span else None, "line": i.span.line if i.span else None}
            for line, i in compiled.emitted.line_map.items()
        }
        write_text(args.line_map, json.dumps(table, indent=1) + "\n")
    return 0
