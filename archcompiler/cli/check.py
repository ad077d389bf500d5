"""`archc check SPEC...`: validate specs, print diagnostics and the layer table."""
from __future__ import annotations

import argparse
import json
import sys

from archcompiler.backends.table import render_table, rows
from archcompiler.cli.common import NO_MODEL, block_names, print_diagnostics
from archcompiler.driver import CheckResult, check_file
from archcompiler.passes.memory import AMPS, MODES, OPTIMIZERS, Memory, predict
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
    m = p.add_argument_group("memory (docs/memory.md)")
    m.add_argument("--batch-size", type=argtypes.positive, metavar="N", help="predict a step's memory at this batch size: saved activations per layer and the peak")
    m.add_argument("--mode", choices=MODES, help="with --batch-size: a training step (default) or a forward pass")
    m.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="with --batch-size: the optimizer (default: the spec's train.optimizer, else sgd)")
    m.add_argument("--amp", choices=AMPS, help="with --batch-size: bf16 autocast or off (default)")
    m.add_argument("--device", choices=("cpu", "cuda"), help="with --batch-size: where it runs (dropout and the optimizer differ; default cpu)")
    return p


def memory_of(r: CheckResult, args) -> Memory | None:
    """The predicted memory of a sound spec, when --batch-size asks for it."""
    if args.batch_size is None or not r.ok:
        return None
    recipe = r.train.get("optimizer")
    optimizer = args.optimizer or (recipe if recipe in OPTIMIZERS else "sgd")
    return predict(r.graph, r.registry, args.batch_size, args.mode or "train", optimizer, args.amp or "off", args.device or "cpu")


def check(paths: list[str]) -> list[CheckResult]:
    return [check_file(p) for p in paths]


def to_json(results: list[CheckResult], expand: bool = False, depth: int | None = None, memories: list | None = None) -> dict:
    files, diagnostics = [], []
    for r, memory in zip(results, memories or [None] * len(results)):
        entry = {"path": r.file, "ok": r.valid, "name": r.name if isinstance(r.name, str) else None}
        if r.ok:
            keys = ("name", "type", "shape", "params", "flops", "activation_bytes") + (("saved_activations_bytes",) if memory else ())
            entry["layers"] = [
                {k: row[k] for k in keys} | ({"depth": row["depth"]} if expand else {})
                for row in rows(r.graph, expand, depth)
            ]
            entry["totals"] = dict(r.totals)  # flops count a multiply-add as 2; macs = flops // 2
            # what the model returns, in order: one entry, or one per output of a model with several
            entry["outputs"] = [{"name": name, "shape": list(r.graph.nodes[o].shape)} for name, o in zip(r.graph.result_names, r.graph.results)]
            if memory:
                entry["memory"] = memory.to_json()
        files.append(entry)
        diagnostics.extend(d.to_json() for d in r.diagnostics)
    return {"files": files, "diagnostics": diagnostics}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.depth is not None and args.depth < 0:
        parser().error("--depth must be 0 or more")
    if args.batch_size is not None and args.batch_size < 1:
        parser().error("--batch-size must be 1 or more")
    if args.batch_size is None and any(v is not None for v in (args.mode, args.optimizer, args.amp, args.device)):
        parser().error("--mode, --optimizer, --amp and --device describe the step of --batch-size N; give it too")
    results = check(args.specs)
    if args.format == "json":
        json.dump(to_json(results, args.expand, args.depth, [memory_of(r, args) for r in results]), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            print_diagnostics(r, args.concise)
            if r.ok and not args.quiet:
                print(render_table(f"{r.name}  ({r.file})", r.graph, r.totals, args.expand, args.depth, macs=args.macs, memory=memory_of(r, args)))
                print()
            elif r.valid and r.graph is None and not args.quiet:  # a file of blocks only: say what was checked
                blocks = block_names(r)
                print(f"{r.file}: {_count(len(blocks), 'block')} checked ({', '.join(blocks)}); {NO_MODEL}")
                print()
        bad = sum(not r.valid for r in results)
        if len(results) > 1 or bad:
            errors = sum(1 for r in results for d in r.diagnostics if d.is_error)
            warnings = sum(1 for r in results for d in r.diagnostics if not d.is_error)
            print(f"{len(results) - bad} of {len(results)} specs ok; {_count(errors, 'error')}, {_count(warnings, 'warning')}", file=sys.stderr)
    return 1 if any(not r.valid for r in results) else 0
