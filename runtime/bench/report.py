"""Rendering a benchmark run as a text table, JSON or CSV, and a comparison as text."""
from __future__ import annotations

import csv
import io
import json

from runtime.bench import breakdown
from runtime.bench.rows import KEY, ROW_FIELDS, BenchResult, Change, Row
from runtime.bench.significance import ALPHA, MIN_STEPS
from runtime.table import render_table as table

COLUMNS = ("spec", "model", "mode", "compile", "batch", "img/s", "step ms (med min-max)", "peak MB",
           "GFLOP/img", "TFLOP/s", "MFU", "ratio [95% CI]")


def render(result: BenchResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2) + "\n"
    if fmt == "csv":
        return render_csv(result.rows)
    return render_table(result)


def render_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_cell(v) for k, v in vars(r).items()})
    return out.getvalue()


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return " ".join(map(str, v))
    if isinstance(v, dict):
        return " ".join(f"{k}={x}" for k, x in v.items())
    return v


def breakdown_lines(rows: list[dict]) -> list[str]:
    """One line per profiled row: the share of each op family, and what that bounds."""
    out = []
    for r in rows:
        shares = r.get("breakdown")
        if not shares:
            continue
        limit = breakdown.bound(shares)
        tail = f"; with all but conv free, at most {limit:.2f}x faster" if limit else ""
        out.append(f"{r['spec']} {r['model']} {r['mode']} {'compiled' if r['compiled'] else 'eager'} batch {r['batch_run']}: "
                   f"{breakdown.describe(shares)}{tail}")
    return out


def render_table(result: BenchResult) -> str:
    """The rows, then compile times, then the peak and how memory was measured."""
    lines = [f"{result.machine}, torch {result.torch}, {result.device}"
             + (f" ({result.threads} threads)" if result.device == "cpu" else "")
             + f", amp {result.config.get('amp', 'off')}, {layout(result)}"
             + (f"; load average {result.load_average[0]} before, {result.load_average[1]} after" if result.load_average else "")]
    lines += table(COLUMNS, [_cells(r) for r in result.rows], right=[i >= 4 for i in range(len(COLUMNS))]).splitlines()
    for r in result.rows:
        if r.note or r.error:
            lines.append(f"  note: {r.spec} {r.model} {r.mode} {_compile(r)} batch {r.batch_size}: {r.error or r.note}")
    warmed = [r for r in result.rows if r.first_step_s is not None]
    if warmed:
        caches = "off (--cold-compile)" if result.config.get("cold_compile") else "on: a repeat run compiles faster than a first one"
        lines += ["", ("Warm-up (not in the rows above): the first step, and for compiled rows the warm-up time beyond "
                       f"steady-state steps; inductor's on-disk caches {caches}")]
        head = ("spec", "model", "mode", "compile", "batch", "first step s", "compile s")
        body = [(r.spec, r.model, r.mode, _compile(r), str(r.batch_run), f"{r.first_step_s:.2f}",
                 "" if r.compile_s is None else f"{r.compile_s:.1f}") for r in warmed]
        lines += table(head, body, right=[i >= 4 for i in range(len(head))]).splitlines()
    profiled = breakdown_lines([vars(r) for r in result.rows])
    if profiled:
        lines += ["", ("Step time by op family (--breakdown: self time of two profiled steps, not the timed ones; "
                      "see runtime/bench/breakdown.py)")] + [f"  {line}" for line in profiled]
    peak = result.peak
    lines += ["", (f"MFU is achieved FLOP/s over the measured peak of {peak['flops_per_s'] / 1e12:.3f} TFLOP/s "
                   f"({'cached' if peak.get('cached') else 'measured'} {peak['measured'][:10]}; matmul "
                   f"{peak['matmul_flops_per_s'] / 1e12:.3f}, conv {peak['conv_flops_per_s'] / 1e12:.3f})."),
              f"Peak method: {peak['method']}.",
              *([f"warning: {over} row(s) exceed the peak (MFU over 100%): the {'cached' if peak.get('cached') else 'measured'} peak "
                 "was measured while other work ran, or is stale; measure it again with --peak-refresh on a quiet machine"]
                if (over := sum(r.mfu is not None and r.mfu > 1 for r in result.rows)) else []),
              "FLOPs are analytic (forward as FlopCounterMode counts; train adds the backward pass).",
              f"Memory: {result.memory_method or 'not measured'}."
              + (f" Allocator: {result.allocator}." if result.allocator else ""),
              ("ratio: compiled rows, compiled/eager images/s; reference rows, emitted/reference images/s; the median of "
               "per-round ratios, with a 95% bootstrap interval.")]
    if result.pooled:
        lines.append(pooled_line(result.pooled))
    return "\n".join(lines) + "\n"


def layout(result: BenchResult) -> str:
    """The run's layout, and the specs whose rows ran in the other one (archc bench's NCHW for a
    spec that oneDNN would crash on in channels_last)."""
    main = bool(result.config.get("channels_last"))
    names = {True: "channels_last", False: "NCHW"}
    other = list(dict.fromkeys(r.spec for r in result.rows if bool(r.channels_last) != main))
    return names[main] + (f" ({names[not main]}: {', '.join(other)})" if other else "")


def _compile(r: Row) -> str:
    return "compiled" if r.compiled else "eager"


def _cells(r: Row) -> tuple:
    if r.images_per_s is None:
        return (r.spec, r.model, r.mode, _compile(r), str(r.batch_size), "failed", "", "", "", "", "", "")
    batch = str(r.batch_run) + ("*" if r.batch_run != r.batch_size else "")
    return (r.spec, r.model, r.mode, _compile(r), batch, f"{r.images_per_s:.1f}",
            f"{r.step_ms_median:.1f} {r.step_ms_min:.1f}-{r.step_ms_max:.1f}",
            "" if r.peak_mem_bytes is None else f"{r.peak_mem_bytes / 2**20:.0f}",
            f"{r.flops_per_image / 1e9:.3f}", f"{r.tflops:.4f}",
            "" if r.mfu is None else f"{100 * r.mfu:.1f}%", ratio_cell(vars(r)))


def ratio_cell(r: dict) -> str:
    """The row's ratio (emitted/reference on reference rows, else compiled/eager) and its interval."""
    ref = r["model"] == "reference"
    ratio = r.get("emitted_to_reference") if ref else r.get("compiled_to_eager")
    ci = r.get("emitted_to_reference_ci") if ref else r.get("compiled_to_eager_ci")
    if ratio is None:
        return ""
    return f"{ratio:.3f}" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "")


def pooled_line(pooled: dict | None) -> str:
    if not pooled:
        return ""
    ci = pooled.get("ci95")
    return (f"Pooled over all {pooled['rounds']} alternated rounds of emitted and reference rows: emitted/reference "
            f"{pooled['emitted_to_reference']:.3f}" + (f", 95% CI {ci[0]:.3f}-{ci[1]:.3f}" if ci else "") + ".")


def render_changes(changes: list[Change], threshold: float, saved: str, loads: tuple | None = None) -> str:
    """The comparison table, what the verdicts rest on, and the noise each run had."""
    head = tuple(KEY[:5]) + ("saved img/s", "now img/s", "now/saved [95% CI]", "p", "noise saved/now", "verdict")
    body = []
    for c in changes:
        k = dict(zip(KEY, c.key))
        ratio = "" if c.ratio is None else f"{c.ratio:.3f}" + (f" [{c.ci[0]:.2f}-{c.ci[1]:.2f}]" if c.ci else "")
        body.append((k["spec"], k["model"], k["mode"], "compiled" if k["compiled"] else "eager", str(k["batch_size"]),
                     "" if c.old_ips is None else f"{c.old_ips:.1f}", "" if c.new_ips is None else f"{c.new_ips:.1f}", ratio,
                     "" if c.p is None else f"{c.p:.3f}", "" if c.noise is None else f"±{50 * c.noise[0]:.0f}% / ±{50 * c.noise[1]:.0f}%",
                     c.verdict.upper() if c.verdict in ("regression", "failed") else c.verdict))
    flagged = sum(c.verdict in ("regression", "failed") for c in changes)
    lines = [f"Compared with {saved}: a regression needs the 95% interval of now/saved below {1 - threshold:.2f} "
             f"and a Mann-Whitney rank test of the step times at p < {ALPHA} (runtime/bench/significance.py)."]
    lines += table(head, body, right=[i >= 5 for i in range(len(head))]).splitlines()
    noisy = [c.noise for c in changes if c.noise]
    if noisy:
        worst = max(max(n) for n in noisy)
        lines.append(f"Noise: step times varied by up to ±{50 * worst:.0f}% around their median within a run (half the "
                     "interquartile range); differences smaller than that are hard to tell from load on the machine.")
    if loads:
        lines.append(f"Load average before the saved run {loads[0]}, before this one {loads[1]}.")
    if any(c.method == "medians" for c in changes):
        lines.append(f"Rows without {MIN_STEPS} saved step times compare medians only, against the {100 * threshold:.0f}% threshold.")
    if any(c.verdict == "unclear" for c in changes):
        lines.append("unclear: the interval reaches past the threshold but the steps do not show a consistent difference; rerun with more --iters.")
    if not any(c.verdict not in ("new", "gone") for c in changes):
        lines.append(nothing_compared(saved))
    else:
        lines.append(f"{flagged} regression(s) flagged." if flagged else "No regression.")
    return "\n".join(lines) + "\n"


def nothing_compared(saved: str) -> str:
    return (f"Nothing compared: no row of this run matches a row of {saved} "
            "(spec, model, mode, compile, batch size, amp, layout and device).")
