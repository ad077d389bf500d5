"""`archc schema`: print the spec language's JSON Schema (2020-12), for editors and tools."""
from __future__ import annotations

import json

from archcompiler.driver import builtin_registry
from archcompiler.frontend.schema import editor_schema
from runtime import argtypes


def schema_text() -> str:
    return json.dumps(editor_schema(builtin_registry()), indent=2) + "\n"


def parser() -> argtypes.Parser:
    p = argtypes.Parser(prog="archc schema", description="Print the JSON Schema of the spec language.")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    return p


def check_args(args) -> None:
    if args.output:
        from runtime.paths import output_file

        output_file(args.output, "-o")


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    text = schema_text()
    if args.output:
        from runtime.files import write_text

        write_text(args.output, text)
    else:
        print(text, end="")
    return 0
