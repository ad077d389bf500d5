"""`archc check SPEC...`: validate specs, print diagnostics and the layer table."""
from __future__ import annotations

import argparse
import json
import sys

from archcompiler.backends.table import render_table, rows
from archcompiler.cli.common import print_diagnostics
from archcompiler.driver import CheckResult, check_file
from runtime import argtypes


def parser() -> argparse.ArgumentParser:
    p = argtypes.Parser(prog="archc check", description="Validate specs; print shapes, parameters and FLOPs per layer.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (.yaml)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (json is a stable contract)")
    p.add_argument("--expand", action="store_true", help="nest the rows of composite blocks")
    p.add_argument("--depth", type=argtypes.non_negative, default=None, metavar="N", help="with --expand, nest at most N levels")
    p.add_argument("--concise", action="store_true", help="diagnostics on one line each, without the source snippet")
    p.add_argument("--quiet", "-q", action="store_true", help="print diagnostics only, no tables")
    p.add_argument("--macs", action="store_true",
                   help="count multiply-adds (MACs) instead of FLOPs: half the figure, as torchvision's GFLOPS and ptflops count")
    return p


def check(paths: list[str]) -> list[CheckResult]:
    return [check_file(p) for p in paths]


def to_json(results: list[CheckResult], expand: bool = False, depth: int | None = None) -> dict:
    files, diagnostics = [], []
    for r in results:
        entry = {"path": r.file, "ok": r.valid, "name": r.name if isinstance(r.name, str) else None}
        if r.ok:
            entry["layers"] = [
                {k: row[k] for k in ("name", "type", "shape", "params", "flops", "activation_bytes")} | ({"depth": row["depth"]} if expand else {})
                for row in rows(r.graph, expand, depth)
            ]
            entry["totals"] = dict(r.totals)  # flops count a multiply-add as 2; macs = flops // 2
        files.append(entry)
        diagnostics.extend(d.to_json() for d in r.diagnostics)
    return {"files": files, "diagnostics": diagnostics}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.depth is not None and args.depth < 0:
        parser().error("--depth must be 0 or more")
    results = check(args.specs)
    if args.format == "json":
        json.dump(to_json(results, args.expand, args.depth), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            print_diagnostics(r, args.concise)
            if r.ok and not args.quiet:
                print(render_table(f"{r.name}  ({r.file})", r.graph, r.totals, args.expand, args.depth, macs=args.macs))
                print()
        bad = sum(not r.valid for r in results)
        if len(results) > 1 or bad:
            errors = sum(1 for r in results for d in r.diagnostics if d.is_error)
            warnings = sum(1 for r in results for d in r.diagnostics if not d.is_error)
            print(f"{len(results) - bad} of {len(results)} specs ok; {_count(errors, 'error')}, {_count(warnings, 'warning')}", file=sys.stderr)
    return 1 if any(not r.valid for r in results) else 0
