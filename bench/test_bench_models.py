"""pytest-benchmark suite: every paper spec x {train, infer} x {eager, compiled}.

    make bench          # timed: writes bench/results/pytest-benchmark.json
    make test           # smoke: one untimed step of each at a small batch, so the suite cannot rot

Timed runs use pedantic mode. Each test first runs warm-up steps itself (compilation happens
there), then pytest-benchmark's own warm-up rounds, so compilation is never timed. A step ends
by waiting for the device, as pytest-benchmark reads the wall clock. `extra_info` carries
images_per_sec, flops (per image of the step), mfu (against the cached peak of runtime.bench,
measured once if absent) and device; results are grouped per spec. Compare two runs with
`pytest-benchmark compare bench/results/pytest-benchmark.json other.json`.

Smoke mode is on when pytest-benchmark is disabled (pyproject's addopts, i.e. `make test`) or
ARCHC_BENCH_SMOKE=1: batch 2, one step, no peak probe, and compiled variants only for
no_attention, with torch.compile's "aot_eager" backend (traced and partitioned for autograd like
inductor, without its C++ build), which keeps the whole suite to seconds.

Environment: ARCHC_BENCH_BATCH (32), ARCHC_BENCH_ROUNDS (5), ARCHC_BENCH_DEVICE (auto).
"""
from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest
import torch

import archcompiler
from archcompiler.passes.costs import train_flops
from runtime.bench.device import device_name, resolve_device, synchronize
from runtime.bench.peak import cached_peak, device_peak
from runtime.bench.steps import make_step

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["no_attention", "attn_simple", "attn_reduction", "no_attention_extra"]
SMOKE_COMPILED = {"no_attention"}  # the compiled variants that smoke mode runs


@cache
def compiled_spec(name: str):
    net = archcompiler.compile(ROOT / "specs" / f"{name}.yaml")
    return net, {"infer": net.totals["flops"], "train": train_flops(net.graph)}


def smoke(benchmark) -> bool:
    return benchmark.disabled or os.environ.get("ARCHC_BENCH_SMOKE") == "1"


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("spec", SPECS)
def test_model(benchmark, spec, mode, compiled):
    quick = smoke(benchmark)
    if quick and compiled and spec not in SMOKE_COMPILED:
        pytest.skip(f"smoke mode compiles only {', '.join(sorted(SMOKE_COMPILED))}; `make bench` times every variant")
    device = resolve_device(os.environ.get("ARCHC_BENCH_DEVICE", "auto"))
    batch = 2 if quick else int(os.environ.get("ARCHC_BENCH_BATCH", "32"))
    net, flops = compiled_spec(spec)
    model = net.module(seed=0, device=device)
    runnable = torch.compile(model, fullgraph=True, backend="aot_eager" if quick else "inductor") if compiled else model
    step = make_step(runnable, model, mode, batch, tuple(net.input_shape), net.output_shape[0], device,
                     optimizer=net.train.get("optimizer", "sgd"))

    def timed_step():
        step()
        synchronize(device)

    benchmark.group = spec
    benchmark.extra_info.update(spec=spec, mode=mode, compiled=compiled, batch_size=batch, device=device.type,
                                machine=device_name(device), torch=torch.__version__, flops=flops[mode])
    if quick:
        before = [p.detach().clone() for p in model.parameters()]
        benchmark.pedantic(timed_step, rounds=1, iterations=1)
        benchmark.extra_info.update(images_per_sec=None, mfu=None)
        assert_row(benchmark, model, before, mode, batch, net, flops[mode], device)
        return
    for _ in range(2):  # compilation, autotuning and allocator warm-up, outside pytest-benchmark's rounds
        timed_step()
    rounds = int(os.environ.get("ARCHC_BENCH_ROUNDS", "5"))
    benchmark.pedantic(timed_step, rounds=rounds, warmup_rounds=1, iterations=1)
    images_per_sec = batch / benchmark.stats.stats.median
    peak = cached_peak(device) or device_peak(device)
    benchmark.extra_info.update(images_per_sec=images_per_sec, mfu=flops[mode] * images_per_sec / peak.flops_per_s,
                                peak_flops_per_s=peak.flops_per_s)


def assert_row(benchmark, model, before, mode, batch, net, flops, device):
    """What a timed row relies on, checked in smoke mode: the step really trained (or only
    ran inference), the model's output is sane, and the row carries every field."""
    after = list(model.parameters())
    changed = any(not torch.equal(a, b) for a, b in zip(before, after))
    assert changed == (mode == "train"), f"{mode} step {'did not change' if mode == 'train' else 'changed'} the weights"
    assert all(torch.isfinite(p).all() for p in after)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(batch, *net.input_shape, device=device))
    assert tuple(out.shape) == (batch, *net.output_shape) and torch.isfinite(out).all()
    info = benchmark.extra_info
    assert set(info) >= {"spec", "mode", "compiled", "batch_size", "device", "machine", "torch", "flops", "images_per_sec", "mfu"}
    assert info["flops"] == flops > 0 and info["batch_size"] == batch
