"""`archc bench SPEC...`: throughput, step time, memory and MFU of specs, eager and compiled.

The glue between the compiler and runtime.bench: compile each spec, describe its emitted
module (and with --reference, the hand-written reference module from the test suite) as
workloads with their analytic FLOPs, run them, print, save and compare. runtime.bench does
the measuring and knows nothing of specs.
"""
from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from pathlib import Path

from archcompiler.errors import ArchcError, UsageError
from runtime import argtypes
from runtime.vocab import AMP, COMPILE_MODES, OPTIMIZERS  # names only: imports no torch

ROOT = Path(__file__).resolve().parents[2]  # a checkout's root, where tests/ lives
REFERENCE_FILE = ROOT / "tests" / "reference_models.py"
RESULTS_DIR = "bench/results"


def parser() -> argparse.ArgumentParser:
    p = argtypes.Parser(prog="archc bench", description="Benchmark specs: images/s, step time, peak memory, "
                                "achieved FLOP/s and MFU against the device's measured peak. Inputs are synthetic.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (.yaml)")
    p.add_argument("--mode", choices=("train", "infer", "both"), default="both",
                   help="time a training step (zero_grad, forward, loss, backward, optimizer step), inference, or both")
    p.add_argument("--batch-size", default="32", metavar="N[,N...]|auto",
                   help="batch sizes, comma-separated (default 32); auto: the largest whose predicted peak fits free memory (docs/memory.md)")
    p.add_argument("--compile", choices=("both", "on", "off"), default="both", help="eager, torch.compile, or both (default)")
    p.add_argument("--compile-mode", choices=COMPILE_MODES, default="default", help="torch.compile mode (reduce-overhead: CUDA graphs on CUDA)")
    p.add_argument("--compile-backend", default="inductor", metavar="NAME", help="torch.compile backend (default inductor)")
    p.add_argument("--freeze", action="store_true",
                   help="compiled inference with inductor freezing: weights become constants, conv+bn fold (no effect on train)")
    p.add_argument("--cold-compile", action="store_true",
                   help="bypass inductor's on-disk caches, so compile time is that of a first run (default: caches on)")
    p.add_argument("--amp", choices=AMP, default="off", help="autocast to bfloat16")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="model and inputs in channels_last (NHWC), or NCHW (default: archc train's layout for the device, channels_last, "
                        "except NCHW for a spec whose training step oneDNN crashes in channels_last on the CPU)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda[:N]", help="default auto: cuda when available")
    p.add_argument("--warmup", type=argtypes.non_negative, default=3, metavar="N", help="untimed steps per row; the first compiles (default 3)")
    p.add_argument("--iters", type=argtypes.positive, default=10, metavar="N", help="timed steps per row (default 10)")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=None,
                   help="of the training step (default: the spec's train.optimizer, else sgd)")
    p.add_argument("--predict", action="store_true",
                   help="also print each row's step time as a roofline predicts it from FLOPs and bytes per layer against the measured peak FLOP/s and bandwidth")
    p.add_argument("--breakdown", action="store_true",
                   help="after timing, profile each row's step and report the share of conv, matmul, norm, optimizer and other ops")
    p.add_argument("--threads", type=argtypes.positive, default=None, metavar="N", help="torch.set_num_threads(N) first (CPU)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (json is a stable contract)")
    p.add_argument("--reference", action="store_true",
                   help="add rows for the hand-written reference modules (tests/reference_models.py, in a checkout)")
    p.add_argument("--save", nargs="?", const="", default=None, metavar="NAME",
                   help=f"save the run as {RESULTS_DIR}/NAME.json (default NAME: archc-bench-<machine>); a path ending in .json is used as is")
    p.add_argument("--compare", nargs="?", const="", default=None, metavar="NAME",
                   help="compare with a saved run (same naming as --save) on the per-step times; exit 1 if a row regressed or no row matches")
    p.add_argument("--threshold", type=argtypes.positive_float, default=0.05, metavar="F",
                   help="with --compare, a row is a regression when its speed is shown to be below 1 - F of the saved one (default 0.05)")
    p.add_argument("--results-dir", default=RESULTS_DIR, metavar="DIR", help=f"where --save and --compare names live (default {RESULTS_DIR}; --save creates it)")
    p.add_argument("--peak-refresh", action="store_true", help="probe the device's peak again; the cache keeps the higher of the old and new peak")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    return p


def parse_batch_sizes(text: str) -> tuple[int, ...] | str:
    if text == "auto":
        return text
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UsageError(f"--batch-size takes comma-separated integers, e.g. 32,256; got '{text}'") from None
    if not sizes or any(b < 1 or b > argtypes.COUNT_MAX for b in sizes):
        raise UsageError(f"--batch-size takes positive integers, e.g. 32,256; got '{text}'")
    return sizes


def workloads(paths: list[str], reference: bool, optimizer: str | None = None) -> list:
    """The emitted module of each spec, and with `reference` its hand-written counterpart.
    A training step uses `optimizer`, else the spec's own recipe's (train.optimizer), else SGD."""
    from archcompiler.cli.common import compile_or_report
    from archcompiler.passes.costs import train_flops
    from runtime.bench import Workload

    refs = load_reference_models() if reference else None
    out = []
    for path in paths:
        net = compile_or_report(path)
        if net is None:
            raise ArchcError(f"{path} has errors (above); nothing was benchmarked")
        recipe = net.train.get("optimizer")
        classifier = len(net.output_shapes) == 1 and len(net.output_shape) == 1  # else a stand-in loss (runtime/bench/steps.py)
        common = {"spec": net.name, "input_shape": tuple(net.input_shape), "num_classes": net.output_shape[0] if classifier else None,
                  "flops_per_image": net.totals["flops"], "train_flops_per_image": train_flops(net.graph),
                  "optimizer": optimizer or (recipe if recipe in OPTIMIZERS else "sgd")}
        out.append(Workload(model="emitted", build=lambda n=net: n.module(seed=0), **common))
        if refs is not None:
            try:
                refs.reference(net.name)
            except KeyError:
                raise ArchcError(f"--reference: no hand-written reference for '{net.name}' in {REFERENCE_FILE}") from None
            out.append(Workload(model="reference", build=lambda n=net: _reference(refs, n), **common))
    return out


def _reference(refs, net):
    """The reference module with the emitted module's weights, so both compute the same thing."""
    ref = refs.reference(net.name)
    refs.copy_by_order(net.module(seed=0), ref)
    return ref


def auto_batch_sizes(args, loads) -> int:
    """--batch-size auto: one batch for every row, the smallest of each spec's and mode's
    largest batch predicted to fit (a training step needs more than a forward pass)."""
    from archcompiler.cli.autobatch import auto_batch
    from runtime.bench.device import resolve_device

    device = resolve_device(args.device)
    return min(auto_batch(net, mode, w.optimizer, args.amp, device) for w, net, mode in _spec_modes(args, loads))


def _specs(args, loads):
    """(workload, compiled spec) for each spec's emitted workload."""
    from archcompiler.cli.common import compile_or_report

    for w, path in zip([w for w in loads if w.model == "emitted"], args.specs):
        yield w, compile_or_report(path)


def _spec_modes(args, loads):
    """(workload, compiled spec, mode) for each spec's emitted workload and each --mode."""
    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    for w, net in _specs(args, loads):
        for mode in modes:
            yield w, net, mode


def decide_layouts(args, loads) -> bool:
    """Give each workload archc train's layout (runtime.train.setup.safe_layout): --[no-]channels-last,
    else the device's default, except that on the CPU a spec whose training step oneDNN would crash
    in channels_last trains in NCHW, and an explicit --channels-last is refused for it.
    Returns the run's layout, which rows of a spec that gave way differ from."""
    from runtime.bench.device import resolve_device
    from runtime.errors import RuntimeUsageError
    from runtime.train.config import TrainConfig
    from runtime.train.setup import channels_last_for, safe_layout

    kind = resolve_device(args.device).type
    asked = TrainConfig(channels_last=args.channels_last)
    layout = channels_last_for(asked, kind)
    for w, net in _specs(args, loads):
        chosen = layout
        if layout and args.mode != "infer":  # the hazard is in the backward pass
            try:
                safe, hazard = safe_layout(net.module(seed=None, device="meta"), asked, kind)
            except RuntimeUsageError as e:
                raise RuntimeUsageError(f"{e} (or time --mode infer only)") from None
            chosen = safe.channels_last
            if hazard:
                print(f"note: {w.spec} runs in NCHW, not the CPU's default channels_last: oneDNN crashes in the backward pass of "
                      f"{hazard} in channels_last", file=sys.stderr)
        for same in (x for x in loads if x.spec == w.spec):  # its reference has the same layers
            same.channels_last = chosen
    return layout


def check_batches_fit(args, loads, batch_sizes: tuple) -> None:
    """On the CPU, a batch whose predicted peak is far over the free memory is refused before
    anything is built: the kernel would kill the process (or the machine's other work) before
    any step-down could. On a GPU out of memory is an exception, and the bench steps down.
    "Far": autobatch.FAR times, beyond the model's error and margin."""
    from archcompiler.cli.autobatch import far_over_free
    from runtime.bench.device import resolve_device

    if resolve_device(args.device).type != "cpu":
        return  # out of memory on a GPU is an exception, and the bench steps the batch down
    for w, net, mode in _spec_modes(args, loads):
        for batch in batch_sizes:
            over = far_over_free(net.graph, net.result.registry, batch, mode, w.optimizer or "sgd", args.amp)
            if over is not None:
                peak, free, source = over
                raise UsageError(f"--batch-size {batch}: {'a training' if mode == 'train' else 'an inference'} step of {w.spec} is predicted to need {peak / 2**30:,.1f} GiB, "
                                 f"and {free / 2**30:.1f} GiB is free ({source}); give a smaller batch, or --batch-size auto")


def predict_rows(result, paths: list[str], optimizers: dict) -> None:
    """Fill each measured row's roofline prediction (passes/roofline.py)."""
    from archcompiler.cli.common import compile_or_report
    from archcompiler.passes.roofline import predict_seconds, step_costs

    nets = {net.name: net for net in map(compile_or_report, paths)}
    flops, bandwidth = result.peak["flops_per_s"], result.peak.get("bytes_per_s", 0)
    for r in result.rows:
        if r.step_ms_median is None or not bandwidth:
            continue
        net = nets[r.spec]
        costs = step_costs(net.graph, net.result.registry, r.batch_run, r.mode, r.amp, optimizers[r.spec])
        seconds, _ = predict_seconds(costs, flops, bandwidth)
        r.predicted_step_ms = round(1000 * seconds, 3)
        r.measured_to_predicted = round(r.step_ms_median / (1000 * seconds), 3)


def prediction_lines(result) -> str:
    peak = result.peak
    lines = ["", f"Roofline (--predict): per layer the longer of FLOPs at {peak['flops_per_s'] / 1e12:.3f} TFLOP/s and bytes "
                 f"at {peak.get('bytes_per_s', 0) / 1e9:.1f} GB/s (the measured peaks), summed over the step; docs/benchmarks.md says why it differs"]
    for r in result.rows:
        if r.predicted_step_ms is not None:
            lines.append(f"  {r.spec} {r.model} {r.mode} {'compiled' if r.compiled else 'eager'} batch {r.batch_run}: measured "
                         f"{r.step_ms_median:.1f} ms, predicted {r.predicted_step_ms:.1f} ms, measured/predicted {r.measured_to_predicted:.2f}")
    return "\n".join(lines) + "\n"


def load_reference_models():
    """tests/reference_models.py, imported by path: it ships with a checkout, not the package."""
    if not REFERENCE_FILE.is_file():
        raise ArchcError(f"--reference needs the hand-written models of an archc checkout, {REFERENCE_FILE}, which is not there")
    spec = importlib.util.spec_from_file_location("archc_reference_models", REFERENCE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result_path(name: str, results_dir: str, machine: str) -> Path:
    from runtime.bench.device import machine_slug

    if not name:
        name = f"archc-bench-{machine_slug(machine)}"
    return Path(name) if name.endswith(".json") or "/" in name else Path(results_dir) / f"{name}.json"


def check_outputs(args) -> tuple[Path | None, tuple | None]:
    """The --save path, checked writable (or None), and the --compare baseline as (path, result), read (or None)."""
    from runtime.bench import load
    from runtime.bench.device import device_name, resolve_device
    from runtime.paths import output_dir, output_file

    if args.save is None and args.compare is None:
        return None, None
    machine = device_name(resolve_device(args.device))  # the default names carry the machine
    save_path = baseline = None
    if args.compare is not None:
        path = result_path(args.compare, args.results_dir, machine)
        if path.is_dir():
            raise UsageError(f"--compare {path}: is a folder; give a saved run's name or .json file")
        baseline = (path, load(path))
    if args.save is not None:
        save_path = result_path(args.save, args.results_dir, machine)
        if save_path.parent == Path(args.results_dir) and not save_path.parent.exists():
            output_dir(args.results_dir, "--results-dir", may_create=True)  # created at the first save, as its help says
        else:
            if save_path.parent == Path(args.results_dir):
                output_dir(args.results_dir, "--results-dir")
            output_file(save_path, "--save")
        if save_path.exists():
            _may_replace(save_path, machine)
    return save_path, baseline


def _may_replace(path: Path, machine: str) -> None:
    """--save replaces a saved run of this machine (refreshing a baseline), never one of another
    machine (its figures may be all there is of it) nor a file that is not a saved run."""
    from runtime.bench import load
    from runtime.errors import RuntimeUserError

    try:
        saved = load(path)
    except RuntimeUserError as e:
        raise ArchcError(f"--save {path}: the file exists and is not a run archc bench saved ({e}); not replacing it") from None
    if saved.machine != machine:
        raise ArchcError(f"--save {path}: holds the figures of {saved.machine}, and this is {machine}; "
                         "save under another name (the default names the machine)")
    print(f"archc bench: replacing {path}, this machine's run of {saved.date}", file=sys.stderr)


def check_comparable(baseline: tuple, loads, config) -> None:
    """--compare: the rows this run will have are known before any is timed (a row keeps the
    batch asked for as its key, even when it steps down), so a baseline none can match is
    refused now, not after minutes of timing."""
    from runtime.bench.device import resolve_device
    from runtime.bench.report import nothing_compared
    from runtime.bench.runner import planned_row

    path, saved = baseline
    device = resolve_device(config.device)
    planned = {planned_row(w, compiled, mode, batch, device, config).key()
               for w in loads for mode in config.modes for compiled in config.compiled for batch in config.batch_sizes}
    if not planned & {r.key() for r in saved.rows}:
        raise ArchcError(nothing_compared(str(path)))


def check_args(args) -> tuple[int, ...]:
    """The flags' values, before torch is imported; returns the batch sizes."""
    if args.threshold <= 0 or args.threshold >= 1:
        raise UsageError("--threshold is a fraction between 0 and 1, e.g. 0.05 for 5%")
    return parse_batch_sizes(args.batch_size)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    batch_sizes = check_args(args)

    import torch

    from runtime.bench import BenchConfig, compare, run, save
    from runtime.bench.report import render, render_changes
    from runtime.bench.runner import stderr_progress

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    save_path, baseline = check_outputs(args)  # before minutes of timing, not after
    loads = workloads(args.specs, args.reference, args.optimizer)
    channels_last = decide_layouts(args, loads)
    if batch_sizes == "auto":
        batch_sizes = (auto_batch_sizes(args, loads),)
    else:
        check_batches_fit(args, loads, batch_sizes)
    compile_kwargs = {"backend": args.compile_backend}
    if args.compile_mode != "default":
        compile_kwargs["mode"] = args.compile_mode
    config = BenchConfig(
        modes=("train", "infer") if args.mode == "both" else (args.mode,),
        batch_sizes=batch_sizes,
        compiled={"both": (False, True), "on": (True,), "off": (False,)}[args.compile],
        compile_kwargs=compile_kwargs, freeze=args.freeze, cold_compile=args.cold_compile, device=args.device, amp=args.amp, channels_last=channels_last,
        warmup=args.warmup, iters=args.iters, peak_refresh=args.peak_refresh, breakdown=args.breakdown,
    )
    if baseline is not None:
        check_comparable(baseline, loads, config)
    command = "archc bench " + " ".join(shlex.quote(a) for a in argv)
    # With --save, the file is rewritten after each group of rows (marked incomplete until the
    # end), so a run stopped part-way, by a deadline or Ctrl-C, keeps the rows it measured.
    def keep(result) -> Path:
        save_path.parent.mkdir(parents=True, exist_ok=True)  # --results-dir, checked creatable above
        return save(result, save_path)

    # Not over the baseline being compared with: a stopped run would leave a part in its place.
    same = save_path is not None and baseline is not None and Path(baseline[0]).resolve() == save_path.resolve()
    partial = keep if save_path is not None and not same else None
    result = run(loads, config, command=command, progress=None if args.quiet else stderr_progress, on_group=partial)
    if args.predict:
        predict_rows(result, args.specs, {w.spec: w.optimizer for w in loads})
    sys.stdout.write(render(result, args.format))
    if args.predict and args.format == "table":
        sys.stdout.write(prediction_lines(result))

    status = 1 if any(r.error for r in result.rows) else 0
    if baseline is not None:
        path, saved = baseline
        changes = compare(result, saved, args.threshold)
        out = sys.stderr if args.format != "table" else sys.stdout
        if saved.complete is False:
            print(f"warning: {path} is a run that was stopped part-way: rows it lacks show as new", file=out)
        if saved.machine != result.machine:
            print(f"warning: {path} was measured on {saved.machine}, this run on {result.machine}", file=out)
        loads = (saved.load_average[0], result.load_average[0]) if saved.load_average and result.load_average else None
        out.write(render_changes(changes, args.threshold, str(path), loads))
        if any(c.verdict in ("regression", "failed") for c in changes) or all(c.verdict in ("new", "gone") for c in changes):
            status = 1  # a regression, or nothing comparable: neither is a pass
    if save_path is not None:
        path = keep(result)
        print(f"saved {path}", file=sys.stderr)
    return status

