"""Benchmarking any nn.Module: throughput, step time, memory, and MFU against the device's
measured peak. Knows nothing of specs; archcompiler.cli.bench hands it modules and FLOPs.

    runner.py    Workload, BenchConfig, run(): warm-up, interleaved timing, memory, MFU
    steps.py     the timed train and infer steps on synthetic inputs
    timing.py    CUDA events or the wall clock; alternating timed rounds
    memory.py    CUDA max_memory_allocated, or the CPU's peak RSS (VmHWM reset per step)
    peak.py      the device's peak FLOP/s from a matmul and conv probe, cached per device
    stepdown.py  timm's batch step-down after out-of-memory
    rows.py      Row, BenchResult (the results-file envelope), save, load, compare
    report.py    table, JSON and CSV output
    envelope.py  the envelope every bench/results/ file shares, for scripts that write one
    docs.py      docs/benchmarks.md from bench/results/*.json
"""
from runtime.bench.rows import BenchResult, Row, compare, load, save
from runtime.bench.runner import BenchConfig, Workload, run

__all__ = ["BenchConfig", "BenchResult", "Row", "Workload", "compare", "load", "run", "save"]
