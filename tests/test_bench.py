"""archc bench and runtime.bench: the arithmetic a user reads off a row (FLOPs, TFLOP/s, MFU),
the JSON contract, batch step-down, save/compare, memory, and the docs page. No timing is
asserted here; timings live in bench/."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archcompiler
from archcompiler.cli import bench as cli_bench
from archcompiler.errors import ArchcError
from archcompiler.passes.costs import train_flops
from archcompiler.cli.main import main
from runtime.bench import BenchConfig, Workload, compare, docs, load, run, runner
from runtime.bench.breakdown import FAMILIES, family, share_out
from runtime.bench.memory import measure_peak
from runtime.bench.peak import Peak, peak_key
from runtime.bench.report import breakdown_lines, pooled_line
from runtime.bench.rows import KEY, ROW_FIELDS, BenchResult, Row
from runtime.bench.stepdown import decay_batch_step, fit_batch, is_oom
from runtime.bench.timing import Timing
from runtime.errors import RuntimeUsageError
from tests.conftest import PAPER_SPECS, ROOT, spec_path

TINY = """archc: 1
name: tiny
input: [3, 16, 16]
nodes:
  conv: {type: conv, out: 8, kernel: 3, padding: same}
  pool: {type: global_avgpool}
  fc: {type: affine, out: 10}
output: fc
"""
# conv: 2 * 8*16*16 outputs * 3*3*3 inputs each; fc: 2 * 8 * 10
TINY_FWD = 2 * 8 * 16 * 16 * 27 + 2 * 8 * 10
# backward: the conv reads the model input, so only its weight gradient; fc both gradients
TINY_TRAIN = TINY_FWD + 2 * 8 * 16 * 16 * 27 + 2 * (2 * 8 * 10)
FAKE_PEAK = 1e10


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return str(path)


@pytest.fixture
def fake_peak(monkeypatch, tmp_path):
    """A known peak, so no probe runs and MFU is checkable: in-process and through the cache file."""
    monkeypatch.setenv("ARCHC_CACHE", str(tmp_path / "cache"))
    peak = Peak(FAKE_PEAK, FAKE_PEAK, FAKE_PEAK / 2, "fake", peak_key(torch.device("cpu"), "fp32"), "2026-01-01T00:00:00+00:00",
                bytes_per_s=FAKE_PEAK / 10)
    (tmp_path / "cache").mkdir()
    entry = {k: v for k, v in vars(peak).items() if k not in ("key", "cached")}
    (tmp_path / "cache" / "peak.json").write_text(json.dumps({peak.key: entry}))
    return peak


def fixed_timings(seconds: float):
    """A stand-in for time_interleaved: every step takes `seconds`."""
    def timings(steps, iters, device):
        return {name: Timing([seconds] * iters) for name in steps}
    return timings


# ---- FLOPs and MFU

def test_train_flops_of_a_known_model(tiny):
    net = archcompiler.compile(tiny)
    assert net.totals["flops"] == TINY_FWD
    assert train_flops(net.graph) == TINY_TRAIN


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_train_flops_equal_flop_counter_forward_and_backward(name):
    net = archcompiler.compile(spec_path(name))
    model = net.module(seed=0).train()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, *net.input_shape)).sum().backward()
    assert train_flops(net.graph) == counter.get_total_flops()


def test_grouped_conv_weight_gradient_counted_once():
    """FlopCounterMode counts a grouped conv's weight gradient `groups` times; we count it once."""
    net = archcompiler.compile(spec_path("examples/mobilenet_v2"))
    model = net.module(seed=0).train()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, *net.input_shape)).sum().backward()
    overcount = sum((n.params["groups"] - 1) * n.meta["flops"] for n in net.graph.primitives() if n.type == "conv")
    assert overcount > 0
    assert train_flops(net.graph) == counter.get_total_flops() - overcount


def test_row_arithmetic_images_tflops_mfu(tiny, fake_peak, monkeypatch):
    """10 ms a step at batch 4: 400 images/s; TFLOP/s and MFU follow from the analytic FLOPs."""
    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.010))
    loads = cli_bench.workloads([tiny], reference=False)
    result = run(loads, BenchConfig(batch_sizes=(4,), compiled=(False,), device="cpu", warmup=1, iters=3))
    rows = {r.mode: r for r in result.rows}
    for mode, flops in (("train", TINY_TRAIN), ("infer", TINY_FWD)):
        r = rows[mode]
        assert r.flops_per_image == flops
        assert r.images_per_s == pytest.approx(400.0)
        assert (r.step_ms_median, r.step_ms_min, r.step_ms_max) == pytest.approx((10.0, 10.0, 10.0))
        assert r.tflops == pytest.approx(flops * 400 / 1e12)
        assert r.mfu == pytest.approx(flops * 400 / FAKE_PEAK)
    assert result.peak["flops_per_s"] == FAKE_PEAK and result.peak["cached"]


def test_progress_says_the_peak_is_read_from_the_cache_when_it_is(tiny, fake_peak, monkeypatch):
    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.010))
    said = []
    run(cli_bench.workloads([tiny], reference=False), BenchConfig(modes=("infer",), batch_sizes=(2,), compiled=(False,), device="cpu",
                                                                   warmup=1, iters=1), progress=said.append)
    assert said[0].startswith("reading the cached peak of ") and "(fp32, measured 2026-01-01)" in said[0]
    assert not any("measuring" in line for line in said)


def test_ratios_compiled_to_eager_and_emitted_to_reference():
    def row(model, compiled, ips):
        return Row("s", model, "train", compiled, 8, 8, "cpu", "off", False, 1, 1, images_per_s=ips)
    rows = [row("emitted", False, 100.0), row("emitted", True, 150.0), row("reference", False, 50.0), row("reference", True, 200.0)]
    runner._ratios(rows)
    assert rows[1].compiled_to_eager == pytest.approx(1.5)
    assert rows[2].emitted_to_reference == pytest.approx(2.0)
    assert rows[3].emitted_to_reference == pytest.approx(0.75)
    assert rows[3].compiled_to_eager == pytest.approx(4.0)
    assert rows[0].compiled_to_eager is None and rows[0].emitted_to_reference is None


def test_ratio_of_alternated_rows_is_the_median_of_per_round_ratios():
    """A burst of load in one round slows both rows of that round; the paired ratio ignores it."""
    def row(model, times):
        return Row("s", model, "train", False, 8, 8, "cpu", "off", False, len(times), 1,
                   images_per_s=8 / (sorted(times)[len(times) // 2] / 1e3), step_ms=times)
    emitted = row("emitted", [100.0, 100.0, 300.0, 100.0, 100.0])
    ref = row("reference", [110.0, 300.0, 330.0, 330.0, 110.0])  # loaded in rounds 2-4, 10% slower throughout
    rows = [emitted, ref]
    runner._ratios(rows)
    assert ref.emitted_to_reference == pytest.approx(1.1)  # the ratio of medians would say 3.3
    lo, hi = ref.emitted_to_reference_ci
    assert lo <= 1.1 <= hi  # with 2 loaded rounds of 5 the interval is wide: that is the point of it


def test_ratio_interval_narrows_with_rounds_and_pools_over_pairs():
    noisy = [1.0 + 0.15 * ((7 * i) % 11 - 5) / 5 for i in range(20)]  # a +-15% spread around 1.0
    lo20, hi20 = runner.median_interval(noisy)
    lo80, hi80 = runner.median_interval(noisy * 4)
    assert lo20 <= 1.0 <= hi20 and lo80 <= 1.0 <= hi80
    assert hi80 - lo80 < hi20 - lo20  # more rounds, a narrower interval
    assert runner.median_interval(noisy) == [lo20, hi20]  # seeded: reproducible
    assert runner.median_interval([1.0, 1.1]) is None  # too few rounds to say anything

    def row(spec, model, times):
        return Row(spec, model, "train", False, 8, 8, "cpu", "off", False, len(times), 1, images_per_s=1.0, step_ms=times)
    rows = [row("a", "emitted", [100.0] * 10), row("a", "reference", [102.0] * 10),
            row("b", "emitted", [200.0] * 10), row("b", "reference", [196.0] * 10)]
    pooled = runner.pooled_ratio(rows)
    assert pooled["rounds"] == 20 and pooled["emitted_to_reference"] == pytest.approx(1.0)  # 1.02 and 0.98, ten rounds each
    assert "20 alternated rounds" in pooled_line(pooled)


# ---- batch step-down

def test_decay_batch_step_follows_timm():
    seq, b = [], 256
    while b:
        seq.append(b)
        b = decay_batch_step(b)
    assert seq == [256, 192, 128, 96, 64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1]
    assert decay_batch_step(9) == 8  # timm's float log says 4 here


def test_is_oom_recognises_devices_and_wrapped_errors():
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    wrapped = RuntimeError("backend compiler failed")
    wrapped.__cause__ = torch.OutOfMemoryError("out of memory")
    assert is_oom(wrapped)
    assert not is_oom(ValueError("shapes do not match"))


def test_fit_batch_steps_down_until_it_fits():
    def run_at(batch):
        if batch > 10:
            raise torch.OutOfMemoryError(f"fake: batch {batch} does not fit")
        return batch * 2
    fitted = fit_batch(run_at, 32)
    assert (fitted.value, fitted.batch_size, fitted.failed) == (16 // 2 * 2, 8, [32, 24, 16, 12])
    assert fitted.note() == "stepped down to batch 8: out of memory at 32, 24, 16, 12"
    with pytest.raises(ValueError):
        fit_batch(lambda b: (_ for _ in ()).throw(ValueError("not an OOM")), 32)


class OomAbove(torch.nn.Module):
    """A classifier that 'runs out of memory' for batches above `limit`, as a GPU would."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.fc = limit, torch.nn.Linear(12, 3)

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated, batch {x.shape[0]})")
        return self.fc(x)


def test_bench_row_reports_a_step_down(fake_peak, monkeypatch):
    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.001))
    w = Workload("oom", "emitted", lambda: OomAbove(6), (12,), 3, 72, 144)
    result = run([w], BenchConfig(modes=("train",), batch_sizes=(16,), compiled=(False,), device="cpu", warmup=1, iters=2))
    (row,) = result.rows
    assert (row.batch_size, row.batch_run) == (16, 6)
    assert row.note == "stepped down to batch 6: out of memory at 16, 12, 8"
    assert row.images_per_s == pytest.approx(6 / 0.001)  # throughput of the batch that ran


# ---- the CLI's JSON contract, through the real entry point

@pytest.mark.slow  # a real archc bench run, about 7 s
def test_bench_json_contract(tiny, fake_peak, tmp_path):
    env = {**os.environ, "ARCHC_CACHE": str(tmp_path / "cache")}
    run_ = subprocess.run([sys.executable, "-m", "archcompiler", "bench", tiny, "--format", "json", "--batch-size", "2,3",
                           "--compile", "off", "--warmup", "1", "--iters", "2", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run_.returncode == 0, run_.stderr
    data = json.loads(run_.stdout)
    assert {"kind", "machine", "date", "torch", "command", "device", "threads", "peak", "memory_method", "config", "rows", "load_average"} <= set(data)
    assert data["kind"] == "archc-bench" and data["device"] == "cpu" and data["torch"] == torch.__version__
    assert data["command"].startswith("archc bench ") and "--batch-size 2,3" in data["command"]
    assert data["peak"]["flops_per_s"] == FAKE_PEAK and data["peak"]["method"] == "fake"
    assert [(r["mode"], r["batch_size"]) for r in data["rows"]] == [("train", 2), ("train", 3), ("infer", 2), ("infer", 3)]
    for r in data["rows"]:
        assert set(r) == set(ROW_FIELDS)
        assert r["spec"] == "tiny" and r["model"] == "emitted" and r["compiled"] is False and r["error"] is None
        assert r["images_per_s"] > 0 and r["step_ms_min"] <= r["step_ms_median"] <= r["step_ms_max"]
        assert r["images_per_s"] == pytest.approx(r["batch_run"] / (r["step_ms_median"] / 1e3))
        assert r["flops_per_image"] == (TINY_TRAIN if r["mode"] == "train" else TINY_FWD)
        assert r["mfu"] == pytest.approx(r["flops_per_image"] * r["images_per_s"] / FAKE_PEAK)
        assert r["peak_mem_bytes"] > 0 and r["first_step_s"] > 0
    assert "Traceback" not in run_.stderr


def test_a_model_without_class_scores_trains_on_the_stand_in_loss(fake_peak, tmp_path):
    """A backbone that returns four maps, and a U-Net's map, are benchmarked too: their
    training step's loss is the sum of each output's mean, so every output gets a gradient."""
    from runtime.bench.steps import loss_of, make_step

    net = archcompiler.compile(ROOT / "tests" / "specs" / "backbone_outputs.yaml")
    model = net.module(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    make_step(model, model, "train", 2, tuple(net.input_shape), None, torch.device("cpu"))()
    changed = {k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])}
    trained = {k for k, p in model.named_parameters()}
    assert changed >= trained  # every weight moved: each output's branch had a gradient
    out = (torch.ones(2, 3, requires_grad=True), torch.ones(2, 4, 5, requires_grad=True))
    loss_of(out, None).backward()
    assert out[0].grad.eq(1 / 6).all() and out[1].grad.eq(1 / 40).all()
    env = {**os.environ, "ARCHC_CACHE": str(tmp_path / "cache")}
    run_ = subprocess.run([sys.executable, "-m", "archcompiler", "bench", str(ROOT / "tests" / "specs" / "backbone_outputs.yaml"), "--format", "json",
                           "--batch-size", "2", "--compile", "off", "--warmup", "1", "--iters", "1", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run_.returncode == 0, run_.stderr
    assert [(r["mode"], r["error"]) for r in json.loads(run_.stdout)["rows"]] == [("train", None), ("infer", None)]


def test_bench_bad_flags_are_usage_errors(tiny):
    run_ = subprocess.run([sys.executable, "-m", "archcompiler", "bench", tiny, "--batch-size", "32,x"], capture_output=True, text=True, check=False)
    assert run_.returncode == 2 and "archc: error: --batch-size" in run_.stderr and "Traceback" not in run_.stderr


def test_reference_for_a_spec_without_one_is_a_clear_error():
    with pytest.raises(ArchcError, match="no hand-written reference for 'resnet18'"):
        cli_bench.workloads([spec_path("examples/resnet18")], reference=True)


def test_reference_workload_has_the_emitted_weights():
    emitted, ref = cli_bench.workloads([spec_path("no_attention")], reference=True)
    assert (emitted.model, ref.model) == ("emitted", "reference")
    assert ref.train_flops_per_image == emitted.train_flops_per_image and emitted.optimizer == "adam"  # the spec's recipe
    a, b = emitted.build().eval(), ref.build().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_bench_json_names_the_optimizer_the_train_rows_ran(tmp_path, fake_peak, monkeypatch, capsys):
    """The spec's recipe says adam: the config and every train row say adam, not the default sgd."""
    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.010))
    spec = tmp_path / "adam.yaml"
    spec.write_text(TINY + "train: {optimizer: adam}\n")
    args = ["bench", str(spec), "--compile", "off", "--batch-size", "2", "--warmup", "1", "--iters", "1", "-q", "--format", "json"]
    for flags, used in (([], "adam"), (["--optimizer", "sgd"], "sgd")):
        assert main(args + flags) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["config"]["optimizer"] == used
        assert [(r["mode"], r["optimizer"]) for r in data["rows"]] == [("train", used), ("infer", None)]


# ---- layout: archc train's decision

def test_bench_layout_is_archc_trains_and_can_be_refused(tiny, fake_peak, monkeypatch, capsys):
    """Without a flag, bench times the layout archc train would train in on this device, and
    says which in the JSON config, in each row and in the table's header; --no-channels-last
    times NCHW."""
    from runtime.train.config import TrainConfig
    from runtime.train.setup import channels_last_for

    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.010))
    args = [tiny, "--mode", "train", "--compile", "off", "--batch-size", "2", "--warmup", "1", "--iters", "1", "-q"]
    trains_in = channels_last_for(TrainConfig(), "cpu")
    for flags, layout in (([], trains_in), (["--no-channels-last"], False), (["--channels-last"], True)):
        assert main(["bench", *args, *flags, "--format", "json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["config"]["channels_last"] is layout and [r["channels_last"] for r in data["rows"]] == [layout], flags
        assert main(["bench", *args, *flags]) == 0
        header = capsys.readouterr().out.splitlines()[0].split(";")[0]  # the load average follows
        assert header.endswith("amp off, channels_last" if layout else "amp off, NCHW"), (flags, header)
    assert "--[no-]channels-last" in cli_bench.parser().format_help().replace("--channels-last, --no-channels-last", "--[no-]channels-last")


def test_bench_layout_gives_way_where_train_would_crash(tmp_path, fake_peak, monkeypatch, capsys):
    """A strided 1x1 conv on the image crashes oneDNN's backward in channels_last: as archc
    train does, the default gives way to NCHW with a note, and --channels-last is refused."""
    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.010))
    spec = tmp_path / "shortcut.yaml"
    spec.write_text(TINY.replace("name: tiny", "name: shortcut").replace("kernel: 3, padding: same", "kernel: 1, stride: 2"))
    args = ["bench", str(spec), "--mode", "train", "--compile", "off", "--batch-size", "2", "--warmup", "1", "--iters", "1", "-q"]
    assert main([*args, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert [r["channels_last"] for r in json.loads(out)["rows"]] == [False]
    assert "note: shortcut runs in NCHW" in err and "'conv'" in err
    with pytest.raises(RuntimeUsageError, match="--channels-last on the CPU: oneDNN crashes .* 'conv'") as refused:
        main(args + ["--channels-last"])
    assert refused.value.exit_code == 2


# ---- save and compare

def _result(ips: dict) -> BenchResult:
    rows = [Row("s", "emitted", mode, False, 8, 8, "cpu", "off", False, 1, 1, images_per_s=v) for mode, v in ips.items()]
    return BenchResult("m", "2026-01-01", "2.x", "archc bench", "cpu", 2, {}, "", rows=rows)


def test_compare_flags_rows_slower_than_the_threshold():
    old = _result({"train": 100.0, "infer": 100.0})
    new = _result({"train": 90.0, "infer": 97.0})
    verdicts = {dict(zip(KEY, c.key))["mode"]: c.verdict for c in compare(new, old, threshold=0.05)}
    assert verdicts == {"train": "regression", "infer": "same"}
    assert [c.verdict for c in compare(old, new, threshold=0.05)] == ["faster", "same"]


def _steps(scale: float, seed: int, n: int = 30) -> list[float]:
    """Step times of a shared machine: a floor plus long-tailed interference, in ms."""
    import random

    rng = random.Random(seed)
    return [scale * (10.0 + rng.expovariate(1 / 1.5) + (rng.random() < 0.1) * rng.uniform(5, 15)) for _ in range(n)]


def _timed(steps: list[float], load: float = 0.5) -> BenchResult:
    ips = 8 / (sorted(steps)[len(steps) // 2] / 1000)
    row = Row("s", "emitted", "train", False, 8, 8, "cpu", "off", False, len(steps), 1, images_per_s=ips, step_ms=steps)
    return BenchResult("m", "2026-01-01", "2.x", "archc bench", "cpu", 2, {}, "", rows=[row], load_average=[load, load])


def test_compare_of_identical_runs_is_never_a_regression():
    """Two runs of the same code: the same saved file, and a rerun whose steps differ only by noise."""
    base = _timed(_steps(1.0, seed=1))
    assert [c.verdict for c in compare(base, base)] == ["same"]
    for seed in range(2, 12):  # ten reruns: noise alone never reads as a regression
        (change,) = compare(_timed(_steps(1.0, seed=seed)), base)
        assert change.verdict in ("same", "unclear"), (seed, change)


def test_compare_flags_a_real_slowdown_from_the_steps():
    base = _timed(_steps(1.0, seed=1))
    (change,) = compare(_timed(_steps(1.3, seed=2)), base)
    assert change.verdict == "regression" and change.method == "steps"
    assert change.ci[1] < 0.95 and change.p < 0.01 and 0.7 < change.ratio < 0.85
    (change,) = compare(base, _timed(_steps(1.3, seed=2)))
    assert change.verdict == "faster"


def test_compare_states_the_noise(capsys):
    from runtime.bench.report import render_changes

    text = render_changes(compare(_timed(_steps(1.0, seed=2), load=3.1), _timed(_steps(1.0, seed=1))), 0.05, "base.json", (0.5, 3.1))
    assert "Noise: step times varied by up to ±" in text and "Mann-Whitney" in text and "No regression." in text
    assert "Load average before the saved run 0.5, before this one 3.1." in text


def test_save_then_compare_through_the_cli(tiny, fake_peak, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.010))
    saved = tmp_path / "results" / "base.json"
    saved.parent.mkdir()  # a path given to --save must be in an existing folder (runtime/paths.py)
    args = [tiny, "--compile", "off", "--mode", "infer", "--batch-size", "2", "--warmup", "1", "--iters", "1", "--quiet"]
    assert cli_bench.main(args + ["--save", str(saved)]) == 0
    assert load(saved).rows[0].images_per_s == pytest.approx(200.0)
    assert cli_bench.main(args + ["--compare", str(saved)]) == 0  # the same speed
    assert "No regression." in capsys.readouterr().out
    data = json.loads(saved.read_text())
    data["rows"][0]["images_per_s"] = 250.0  # the saved run was faster: now is 20% slower
    saved.write_text(json.dumps(data))
    assert cli_bench.main(args + ["--compare", str(saved)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "0.800" in out and "1 regression(s) flagged." in out
    assert "compare medians only" in out  # one timed step: no interval can be drawn, and the output says so


def test_a_run_stopped_part_way_keeps_the_groups_it_measured(tiny, fake_peak, monkeypatch, tmp_path):
    """--save rewrites the file after each group of rows, so a deadline or Ctrl-C in the second
    group leaves the first group's rows on disk, marked incomplete, and the docs say so."""
    calls = []

    def timings(steps, iters, device):
        calls.append(1)
        if len(calls) == 2 and stop:
            raise KeyboardInterrupt  # stopped while timing batch 4
        return fixed_timings(0.010)(steps, iters, device)

    stop = True
    monkeypatch.setattr(runner, "time_interleaved", timings)
    saved = tmp_path / "stopped.json"
    args = [tiny, "--compile", "off", "--mode", "infer", "--batch-size", "2,4", "--warmup", "1", "--iters", "1", "--quiet"]
    with pytest.raises(KeyboardInterrupt):
        cli_bench.main(args + ["--save", str(saved)])
    kept = load(saved)
    assert kept.complete is False and [(r.batch_size, r.images_per_s) for r in kept.rows] == [(2, pytest.approx(200.0))]
    data = {**kept.to_dict(), "_file": "stopped.json"}
    assert docs.STOPPED in "\n".join(docs.render_file(data))
    stop = False  # timings() reads it through the closure: this run is not stopped
    assert cli_bench.main(args + ["--save", str(saved)]) == 0
    assert load(saved).complete is True and [r.batch_size for r in load(saved).rows] == [2, 4]


def test_a_comparison_with_no_row_in_common_is_refused_before_timing(tiny, fake_peak, monkeypatch, tmp_path, capsys):
    """Another batch size, or another layout, matches no saved row: known before any step runs."""
    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.010))
    saved = tmp_path / "base.json"
    args = [tiny, "--compile", "off", "--mode", "infer", "--warmup", "1", "--iters", "1", "--quiet"]
    assert cli_bench.main(args + ["--batch-size", "2", "--no-channels-last", "--save", str(saved)]) == 0
    monkeypatch.setattr(runner, "_run_group", lambda *a: pytest.fail("timed a run that can compare nothing"))
    for other in (["--batch-size", "4", "--no-channels-last"], ["--batch-size", "2", "--channels-last"]):
        with pytest.raises(ArchcError, match=f"Nothing compared: no row of this run matches a row of {saved}") as refused:
            cli_bench.main(args + other + ["--compare", str(saved)])
        assert refused.value.exit_code == 1


def test_save_creates_a_missing_results_dir_as_its_help_says(tiny, fake_peak, monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.010))
    where = tmp_path / "new" / "results"
    args = [tiny, "--compile", "off", "--mode", "infer", "--batch-size", "2", "--warmup", "1", "--iters", "1", "--quiet"]
    assert cli_bench.main(args + ["--save", "base", "--results-dir", str(where)]) == 0
    assert load(where / "base.json").rows[0].batch_size == 2


def test_save_name_lands_in_the_results_dir():
    assert str(cli_bench.result_path("", "bench/results", "AMD EPYC (2 CPUs)")) == "bench/results/archc-bench-amd-epyc-2-cpus.json"
    assert str(cli_bench.result_path("base", "r", "x")) == "r/base.json"
    assert str(cli_bench.result_path("/tmp/x.json", "r", "x")) == "/tmp/x.json"


# ---- memory

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_cpu_peak_memory_sees_a_step_allocation():
    def step():
        buf = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del buf
    measure_peak(lambda: None, torch.device("cpu"))  # a large earlier peak must not leak into the next
    mem = measure_peak(step, torch.device("cpu"))
    assert 60 * 2**20 <= mem.step_bytes <= 200 * 2**20
    assert "clear_refs" in mem.method
    small = measure_peak(lambda: torch.ones(16), torch.device("cpu"))
    assert small.step_bytes < 16 * 2**20  # reset: the 64 MiB peak above is forgotten



def test_peak_memory_is_the_rows_own_when_malloc_keeps_freed_memory(tmp_path):
    # In a fresh interpreter: archc bench keeps freed memory on the CPU, so a big earlier row
    # leaves its pages resident; measure_peak hands them back first, or the next row's peak
    # would include them.
    code = """
import json, torch
from runtime import allocator
from runtime.bench.memory import measure_peak
allocator.keep_freed_memory()
big = measure_peak(lambda: torch.ones(256 * 2**20 // 4), torch.device("cpu"))
small = measure_peak(lambda: torch.ones(16), torch.device("cpu"))
print(json.dumps({"big": big.step_bytes, "small_peak": small.peak_bytes, "big_peak": big.peak_bytes}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["big"] >= 250 * 2**20
    assert r["small_peak"] < r["big_peak"] - 200 * 2**20


# ---- --breakdown: where a step's time goes

class _Event:
    def __init__(self, name, us, parent=None):
        self.name, self.self_cpu_time_total, self.cpu_parent = name, us, parent


def test_breakdown_families_and_shares():
    assert family("aten::convolution_backward", False) == "conv"
    assert family("aten::mkldnn_convolution", False) == "conv"
    assert family("aten::cudnn_convolution", False) == "conv"
    assert family("aten::addmm", False) == "matmul"
    assert family("aten::native_batch_norm_backward", False) == "norm"
    assert family("aten::max_pool2d_with_indices", False) == "other"
    assert family("## Call CompiledFxGraph abc", False) == "other"  # a compiled graph's fused kernels
    assert family("aten::add_", True) == "optimizer"
    step = _Event("Optimizer.step#Adam.step", 10)
    events = [_Event("aten::convolution_backward", 600), _Event("aten::mkldnn_convolution", 200), _Event("aten::addmm", 20),
              _Event("aten::native_batch_norm", 50), step, _Event("aten::add_", 20, parent=step), _Event("aten::relu", 100)]
    b = share_out(events, cuda=False, steps=2)
    assert b.shares == pytest.approx({"conv": 0.8, "matmul": 0.02, "norm": 0.05, "optimizer": 0.03, "other": 0.1})
    assert b.total_ms == pytest.approx(1000 / 1e3 / 2)
    assert b.bound() == pytest.approx(1.25)  # convs are 80%: nothing else can make the step over 1.25x faster


def test_bench_breakdown_profiles_each_row(tiny, fake_peak, capsys):
    assert main(["bench", tiny, "--mode", "train", "--compile", "off", "--warmup", "1", "--iters", "1", "--breakdown",
                 "--format", "json", "--quiet"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert set(row["breakdown"]) == set(FAMILIES)
    assert sum(row["breakdown"].values()) == pytest.approx(1, abs=1e-3)
    assert row["breakdown"]["conv"] > 0 and row["breakdown"]["optimizer"] > 0
    assert "conv " in breakdown_lines([row])[0] and "at most" in breakdown_lines([row])[0]


# ---- docs/benchmarks.md

def test_docs_page_from_results_files(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    r = _result({"train": 123.4})
    r.machine, r.peak, r.memory_method = "Box A", {"flops_per_s": 1e11, "matmul_flops_per_s": 1e11, "conv_flops_per_s": 5e10,
                                                   "measured": "2026-01-01", "method": "probe"}, "VmHWM"
    r.rows[0].tflops, r.rows[0].step_ms_median, r.rows[0].step_ms_min, r.rows[0].step_ms_max = 0.5, 1.0, 0.9, 1.1
    from runtime.bench.rows import save
    save(r, results / "archc-bench-box-a.json")
    (results / "check-latency-box-b.json").write_text(json.dumps({
        "kind": "check-latency", "machine": "Box B", "date": "2026-02-02", "torch": "2.x", "command": "python bench/check_latency.py",
        "figures": {"warm_ms": 41.25, "cold": {"ms": 180}}, "rows": [{"spec": "a.yaml", "ms": 12.5}]}))
    (results / "data_pipeline-vm.json").write_text(json.dumps({  # written before the envelope existed
        "machine": {"cpu": "Box", "cores": 4, "date": "2026-03-03", "torch": "2.y"}, "images_per_s": 1313.04}))
    (results / "junk.json").write_text("{not json")
    out = tmp_path / "benchmarks.md"
    out.write_text("# Old\n\nMeasured by hand: 7 ms.\n")
    page, warnings = docs.regenerate(results, out)
    assert page.index("## Box A") < page.index("## Box B")
    assert "| s | emitted | train | eager | 8 | 123.4 |" in page
    assert "Source: `" in page and "archc-bench-box-a.json" in page
    assert "| warm_ms | 41.25 |" in page and "| cold.ms | 180 |" in page and "| a.yaml | 12.5 |" in page
    assert "### check-latency: 2026-02-02, torch 2.x" in page
    assert "## Box (4 CPUs)" in page and "### data_pipeline: 2026-03-03, torch 2.y" in page and "| images_per_s | 1313 |" in page
    assert page.rstrip().endswith("Measured by hand: 7 ms.")  # the hand-written page is kept, after the END marker
    assert any("junk.json" in w for w in warnings) and any("hand-written" in w for w in warnings)
    assert any("took 'data_pipeline' from the file name" in w for w in warnings)
    out.write_text(page)
    again, _ = docs.regenerate(results, out)
    assert again == page  # regenerating is stable and keeps the hand-written part once


def test_envelope_helper_names_the_file_by_kind_and_machine(tmp_path):
    from runtime.bench.envelope import envelope, write_results
    data = envelope("check-latency", "python bench/check_latency.py", figures={"warm_ms": 41.2})
    path = write_results(data, tmp_path)
    assert path.name.startswith("check-latency-") and path.name.endswith(".json")
    loaded, warnings = docs.load_results(tmp_path)
    assert warnings == [] and loaded[0]["machine"] == data["machine"] and loaded[0]["figures"] == {"warm_ms": 41.2}


def test_bench_predict_puts_the_roofline_beside_each_row(tiny, fake_peak, monkeypatch, capsys):
    """--predict: each row's roofline time from the analytic FLOPs and bytes against the
    cached peak (1e10 FLOP/s, 1e9 B/s), and measured/predicted from the (fixed) 10 ms steps."""
    from archcompiler.passes.roofline import predict_seconds, step_costs

    monkeypatch.setattr(runner, "time_interleaved", fixed_timings(0.010))
    args = [tiny, "--batch-size", "4", "--compile", "off", "--warmup", "1", "--iters", "2", "-q", "--predict"]
    assert cli_bench.main(args) == 0
    out = capsys.readouterr().out
    net = archcompiler.compile(tiny)
    for mode in ("train", "infer"):
        want, _ = predict_seconds(step_costs(net.graph, net.result.registry, 4, mode, "off", "sgd"), FAKE_PEAK, FAKE_PEAK / 10)
        assert f"tiny emitted {mode} eager batch 4: measured 10.0 ms, predicted {1000 * want:.1f} ms, measured/predicted {0.010 / want:.2f}" in out


def test_a_row_above_the_peak_says_the_peak_is_wrong():
    """MFU over 100% is impossible: the table says the peak was measured under load or is stale."""
    from runtime.bench.report import render_table

    peak = {"flops_per_s": 1e11, "matmul_flops_per_s": 5e10, "conv_flops_per_s": 1e11, "cached": True, "measured": "2026-11-30T00:00",
            "method": "probe"}
    rows = [Row("s", "emitted", mode, False, 8, 8, "cpu", "off", False, 1, 10**9, images_per_s=1.0, mfu=m, step_ms_median=8.0, step_ms_min=7.0,
                step_ms_max=9.0, tflops=0.1) for mode, m in (("train", 0.4), ("infer", 1.398))]
    text = render_table(BenchResult("m", "2026-01-01", "2.x", "archc bench", "cpu", 2, peak, "", rows=rows))
    assert "139.8%" in text and "warning: 1 row(s) exceed the peak (MFU over 100%): the cached peak was measured while other work ran" in text
    rows[1].mfu = 0.9
    assert "exceed the peak" not in render_table(BenchResult("m", "2026-01-01", "2.x", "archc bench", "cpu", 2, peak, "", rows=rows))
