"""Benchmark any nn.Module: warm-up (and compilation), interleaved timed steps, memory, MFU.

The runtime knows nothing of specs. A caller describes each model as a `Workload`: how to
build it, its input shape, and its analytic FLOPs per image. Workloads with the same `spec`
are benchmarked together: for each mode and batch size, every (workload, eager/compiled)
candidate is built, warmed up (stepping the batch down on out-of-memory), and then all of them
are timed in alternation, so their ratios are measured under the same conditions.
"""
from __future__ import annotations

import os
import random
import statistics
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import torch

from runtime import allocator, vocab
from runtime.bench.breakdown import profile_step
from runtime.bench.device import device_name, resolve_device
from runtime.bench.memory import measure_peak
from runtime.bench.peak import Peak, cached_peak, device_peak
from runtime.bench.rows import BenchResult, Row
from runtime.bench.stepdown import fit_batch, free_memory
from runtime.bench.steps import make_step
from runtime.bench.timing import Timing, clock, time_interleaved
from runtime.errors import RuntimeUsageError


@dataclass
class Workload:
    """One model to benchmark. `build` returns a fresh eager module on the CPU, with the same
    weights every call."""

    spec: str  # the name rows carry; workloads with the same spec are timed together
    model: str  # "emitted", "reference", ...
    build: Callable[[], torch.nn.Module]
    input_shape: tuple  # one image, e.g. (3, 64, 64)
    num_classes: int | None  # for the synthetic labels of a training step; None: no class scores, a stand-in loss
    flops_per_image: int  # forward, analytic
    train_flops_per_image: int  # forward + backward, analytic
    optimizer: str | None = None  # of its training step; None: the config's
    channels_last: bool | None = None  # its layout; None: the config's (archc bench decides it per spec, as archc train does)


@dataclass
class BenchConfig:
    modes: tuple = ("train", "infer")  # which steps to time
    batch_sizes: tuple = (32,)  # asked for; each may step down on out-of-memory
    compiled: tuple = (False, True)  # eager, torch.compile, or both
    compile_kwargs: dict = field(default_factory=dict)  # torch.compile(mode=..., backend=...)
    freeze: bool = False  # compiled inference: inductor freezing (weights constant, conv+bn folded)
    cold_compile: bool = False  # bypass inductor's on-disk caches, so compile time is a first run's
    device: str = "auto"  # cuda when available
    amp: str = "off"  # "bf16": autocast to bfloat16
    channels_last: bool = False  # model and inputs in NHWC, where a workload names no layout of its own
    warmup: int = 3  # untimed steps, the first of which compiles
    iters: int = 10  # timed steps per row, interleaved with the group's other rows
    optimizer: str = "sgd"  # of a training step, unless the workload names one: a name in runtime.vocab.OPTIMIZERS
    lr: float = 1e-3  # irrelevant to speed; keeps weights finite over many steps
    peak_refresh: bool = False  # measure the device's peak again instead of reading the cache
    breakdown: bool = False  # profile each row's step (untimed) and share its time out by op family


def run(workloads: list[Workload], config: BenchConfig, command: str = "",
        progress: Callable[[str], None] | None = None,
        on_group: Callable[[BenchResult], None] | None = None) -> BenchResult:
    """Benchmark every workload under every mode, batch size and compile setting of `config`.
    `on_group` gets the result so far (`complete` False) after each group of rows, so a run
    stopped part-way can keep what it measured (archc bench --save writes it each time)."""
    if config.warmup < 1 or config.iters < 1:
        raise RuntimeUsageError("--warmup and --iters must be at least 1 (the first warm-up step compiles)")
    say = progress or (lambda msg: None)
    device = resolve_device(config.device)
    if "train" in config.modes and device.type == "cpu":  # before any row, not after some
        for w in workloads:  # a workload that names its layout had it checked by its caller (archc bench: safe_layout)
            if w.channels_last is None and config.channels_last and (hazard := vocab.channels_last_hazard(w.build(), device.type)):
                raise RuntimeUsageError(vocab.channels_last_refusal(hazard) + " (or time --mode infer only)")
    memory_source = allocator.for_device(device.type)  # as archc train does: CPU steps reuse warm pages
    vocab.fast_device_settings(device.type)  # as archc train runs CUDA
    load_before = _load()
    dtype = "bf16" if config.amp == "bf16" else "fp32"
    cached = None if config.peak_refresh else cached_peak(device, dtype)
    say(f"reading the cached peak of {device_name(device)} ({dtype}, measured {cached.measured[:10]}) ..." if cached
        else f"measuring the peak of {device_name(device)} ({dtype}) ...")
    peak = device_peak(device, dtype, refresh=config.peak_refresh)
    say(peak.describe())
    rows: list[Row] = []
    memory_method = ""
    # What the training steps used: the config's only where a workload names none. None where
    # the workloads' own differ (specs with different recipes); each train row names its own.
    used = {w.optimizer or config.optimizer for w in workloads}
    optimizer = used.pop() if len(used) == 1 else None

    def result(complete: bool) -> BenchResult:
        return BenchResult(
            machine=device_name(device),
            date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            torch=torch.__version__,
            command=command,
            device=device.type,
            threads=torch.get_num_threads(),
            peak=asdict(peak),
            memory_method=memory_method,
            config={**{k: v for k, v in asdict(config).items() if k not in ("peak_refresh",)}, "optimizer": optimizer},
            rows=list(rows),
            load_average=None if load_before is None else [load_before, _load()],
            allocator=memory_source,
            pooled=pooled_ratio(rows),
            complete=complete,
        )

    specs = list(dict.fromkeys(w.spec for w in workloads))
    groups = [(spec, mode, batch) for spec in specs for mode in config.modes for batch in config.batch_sizes]
    for i, (spec, mode, batch) in enumerate(groups):
        got, method = _run_group([w for w in workloads if w.spec == spec], mode, batch, device, config, peak, say)
        rows += got
        memory_method = method or memory_method
        if on_group is not None and i < len(groups) - 1:
            on_group(result(complete=False))
    return result(complete=True)


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


@dataclass
class _Candidate:
    workload: Workload
    compiled: bool
    row: Row
    step: Callable[[], None] | None = None
    warm_times: list[float] = field(default_factory=list)
    cudagraphs: bool = False  # compiled with mode="reduce-overhead" on CUDA
    cudagraph_skips: int = 0  # times inductor declined to capture a CUDA graph while warming up


def _run_group(group, mode, batch, device, config, peak: Peak, say) -> tuple[list[Row], str]:
    cands = [_Candidate(w, c, planned_row(w, c, mode, batch, device, config)) for w in group for c in config.compiled]
    timed = clock(device)
    for cand in cands:
        label = _label(cand.row)
        say(f"{label}: warming up ({config.warmup} step{'s' * (config.warmup > 1)}"
            f"{', compiling' if cand.compiled else ''}) ...")
        try:
            fitted = fit_batch(lambda b, c=cand: _warm(c, mode, b, device, config, timed), batch, device)
        except Exception as e:  # noqa: BLE001 - one failing row must not lose the others' results
            cand.row.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            say(f"{label}: failed: {cand.row.error}")
            free_memory(device)
            continue
        cand.step, cand.warm_times = fitted.value
        cand.row.batch_run = fitted.batch_size
        cand.row.note = "; ".join(filter(None, [fitted.note(), _cudagraph_note(cand)]))
    live = [c for c in cands if c.step is not None]
    memory_method = ""
    try:
        if live:
            say(f"{cands[0].row.spec} {mode} batch {batch}: timing {len(live)} row(s), {config.iters} interleaved steps each ...")
            timings = time_interleaved({str(i): c.step for i, c in enumerate(live)}, config.iters, device)
            for i, cand in enumerate(live):
                _fill(cand, timings[str(i)], peak)
        for cand in live:
            if cand.cudagraphs:  # a replayed graph allocates nothing the allocator sees: no figure beats a wrong one
                continue
            mem = measure_peak(cand.step, device)
            cand.row.peak_mem_bytes, cand.row.step_mem_bytes, memory_method = mem.peak_bytes, mem.step_bytes, mem.method
        if config.breakdown and live:
            say(f"{cands[0].row.spec} {mode} batch {batch}: profiling {len(live)} row(s) for --breakdown ...")
            for cand in live:
                cand.row.breakdown = {k: round(v, 4) for k, v in profile_step(cand.step, device).shares.items()}
    except Exception as e:  # noqa: BLE001 - e.g. out of memory with every row of the group resident at once
        for cand in live:
            cand.row.error = f"{type(e).__name__} while timing the group's rows together: {str(e).strip()[:200]}"
            cand.row.images_per_s = None
        say(f"{cands[0].row.spec} {mode} batch {batch}: failed: {type(e).__name__}: {e}")
    _ratios([c.row for c in cands])
    for cand in cands:
        cand.step = None
    free_memory(device)
    if any(c.compiled for c in cands):
        torch._dynamo.reset()  # the next group compiles afresh; no recompile limits carried over
    return [c.row for c in cands], memory_method


def planned_row(w: Workload, compiled: bool, mode: str, batch: int, device: torch.device, config: BenchConfig) -> Row:
    """The row a workload gets, before it is timed (its key is known then: archc bench --compare plans with it)."""
    return Row(spec=w.spec, model=w.model, mode=mode, compiled=compiled, batch_size=batch, batch_run=batch,
               device=device.type, amp=config.amp, channels_last=_channels_last(w, config), iters=config.iters,
               flops_per_image=w.train_flops_per_image if mode == "train" else w.flops_per_image,
               optimizer=(w.optimizer or config.optimizer) if mode == "train" else None)


def _channels_last(w: Workload, config: BenchConfig) -> bool:
    return config.channels_last if w.channels_last is None else w.channels_last


def _label(row: Row) -> str:
    return f"{row.spec} {row.model} {row.mode} {'compiled' if row.compiled else 'eager'} batch {row.batch_size}"


def _warm(cand: _Candidate, mode: str, batch: int, device, config: BenchConfig, timed):
    """Build the candidate at `batch` and run its warm-up steps; (step, warm-up times)."""
    w = cand.workload
    model = w.build().to(device)
    channels_last = _channels_last(w, config)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model
    if cand.compiled:
        kwargs = {"fullgraph": True, **config.compile_kwargs}
        net = torch.compile(model, **kwargs)
    cudagraphs = cand.compiled and vocab.uses_cudagraphs(str(config.compile_kwargs.get("mode", "default")), device.type)
    cand.cudagraphs = cudagraphs
    step = make_step(net, model, mode, batch, w.input_shape, w.num_classes, device, amp=config.amp,
                     channels_last=channels_last, optimizer=w.optimizer or config.optimizer, lr=config.lr, cudagraphs=cudagraphs)
    # Compilation happens in the first calls, so inductor's settings must be on while they run.
    patches = {}
    if cand.compiled and mode == "infer" and config.freeze:
        patches["freezing"] = True
    if cand.compiled and config.cold_compile:
        patches["force_disable_caches"] = True
    skips = _cudagraph_skips() if cudagraphs else 0  # only these rows need torch._dynamo's counters
    with _inductor_patch(patches):
        times = [timed(step) for _ in range(config.warmup)]
    cand.cudagraph_skips = _cudagraph_skips() - skips if cudagraphs else 0
    return step, times


def _cudagraph_skips() -> int:
    from torch._dynamo.utils import counters

    return counters["inductor"]["cudagraph_skips"]


def _cudagraph_note(cand: _Candidate) -> str:
    """What a reduce-overhead row must say: that its memory is not measured, and whether
    inductor ran (part of) it without CUDA graphs, which it only logs as a warning."""
    if not cand.cudagraphs:
        return ""
    note = "CUDA graphs: memory not measured (a replay allocates nothing the allocator sees)"
    if cand.cudagraph_skips:
        note += f"; inductor skipped CUDA graphs {cand.cudagraph_skips} time(s) (its warning in the log says why), so part of this row ran without them"
    return note


def _inductor_patch(patches: dict):
    if not patches:
        return nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(**patches)


def _fill(cand: _Candidate, t: Timing, peak: Peak) -> None:
    row = cand.row
    row.step_ms_median, row.step_ms_min, row.step_ms_max = t.median * 1e3, t.min * 1e3, t.max * 1e3
    row.step_ms = [round(x * 1e3, 3) for x in t.times]
    row.images_per_s = row.batch_run / t.median
    row.first_step_s = cand.warm_times[0]
    if cand.compiled:
        row.compile_s = max(sum(cand.warm_times) - len(cand.warm_times) * t.median, 0.0)
    achieved = row.flops_per_image * row.images_per_s
    row.tflops = achieved / 1e12
    row.mfu = achieved / peak.flops_per_s if peak.flops_per_s else None


def _ratios(rows: list[Row]) -> None:
    """compiled_to_eager on compiled rows; emitted_to_reference on reference rows; each with
    a 95% interval where the rows were timed in alternation."""
    by = {(r.model, r.compiled): r for r in rows}
    for r in rows:
        if r.images_per_s is None:
            continue
        eager = by.get((r.model, False))
        if r.compiled and eager is not None:
            r.compiled_to_eager, r.compiled_to_eager_ci = speed_ratio(r, eager)
        emitted = by.get(("emitted", r.compiled))
        if r.model == "reference" and emitted is not None:
            r.emitted_to_reference, r.emitted_to_reference_ci = speed_ratio(emitted, r)


def speed_ratio(a: Row, b: Row) -> tuple[float | None, list[float] | None]:
    """a's images/s over b's, and a 95% interval. Rows timed in alternation give the median of
    the per-round ratios (paired, so a slow round slows both) and its bootstrap interval;
    otherwise the ratio of the medians and no interval."""
    if a.images_per_s is None or not b.images_per_s or a.batch_run != b.batch_run:
        return None, None
    pairs = paired_ratios(a, b)
    if pairs:
        return statistics.median(pairs), median_interval(pairs)
    return a.images_per_s / b.images_per_s, None


def paired_ratios(a: Row, b: Row) -> list[float]:
    """a's speed over b's in each round where the two were timed in alternation ([] if they were not)."""
    if a.batch_run == b.batch_run and a.step_ms and len(a.step_ms) == len(b.step_ms):
        return [tb / ta for ta, tb in zip(a.step_ms, b.step_ms)]
    return []


def median_interval(values: list[float], resamples: int = 2000) -> list[float] | None:
    """A 95% bootstrap interval for the median of `values` (seeded: the same data, the same
    interval). On a machine whose step times wander by 10-20% from round to round, it says how
    far a ratio of 20 rounds can be trusted: a target inside the interval is not decided."""
    if len(values) < 5:
        return None
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return [round(medians[int(0.025 * resamples)], 4), round(medians[int(0.975 * resamples) - 1], 4)]


def pooled_ratio(rows: list[Row]) -> dict | None:
    """emitted/reference over every alternated round of every pair of rows in a run.

    The emitted and the reference module run the same kernels, so every pair measures one
    thing, and pooling the rounds of all pairs narrows the interval that each pair alone leaves
    wide."""
    by = {(r.spec, r.mode, r.batch_size, r.compiled, r.model): r for r in rows}
    ratios = []
    for r in rows:
        emitted = by.get((r.spec, r.mode, r.batch_size, r.compiled, "emitted"))
        if r.model == "reference" and emitted is not None:
            ratios += paired_ratios(emitted, r)
    if not ratios:
        return None
    return {"emitted_to_reference": round(statistics.median(ratios), 4), "ci95": median_interval(ratios), "rounds": len(ratios)}


def stderr_progress(msg: str) -> None:
    print(f"archc bench: {msg}", file=sys.stderr, flush=True)
