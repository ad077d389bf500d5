"""`archc emit SPEC -o model.py`: write standalone PyTorch source for a spec."""
from __future__ import annotations

import os
import sys

from archcompiler.cli.common import compile_or_report
from runtime import argtypes


def check_args(args) -> None:
    """Both outputs are checked before compiling, so a bad --line-map never follows a written .py."""
    from runtime.errors import RuntimeUsageError
    from runtime.paths import output_file

    if args.output:
        output_file(args.output, "-o", reads=[args.spec])
    if args.line_map:
        output_file(args.line_map, "--line-map", reads=[args.spec])
        if args.output and os.path.abspath(args.output) == os.path.abspath(args.line_map):
            raise RuntimeUsageError(f"-o and --line-map both name {args.output}; the map would overwrite the source")


def parser() -> argtypes.Parser:
    p = argtypes.Parser(prog="archc emit", description="Write one standalone Python file (needs only torch) for a spec.")
    p.add_argument("spec", metavar="SPEC", help="spec file (.yaml)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default: standard output)")
    p.add_argument("--line-map", metavar="FILE", help="also write the generated-line -> spec-line map as JSON")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    check_args(args)
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
