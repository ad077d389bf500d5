"""The GPU programme (bench/gpu/), rehearsed without a GPU: packing, the data phases and what
`train` says when parts are missing, the commands the GPU jobs will run (they must parse, and
cover what issue 13 asks for), and filing GPU results into docs/benchmarks.md as one table per
card. The whole programme on the CPU is `make gpu-dry-run` (the slow test at the end)."""
from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.bench import docs
from tests.runtime.data_helpers import make_tiny_imagenet

ROOT = Path(__file__).resolve().parents[1]


def load(path: str):
    """A script of the repository as a module (bench/gpu/*.py import each other from their folder)."""
    file = ROOT / path
    spec = importlib.util.spec_from_file_location(f"script_{file.parent.name}_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(file.parent))
    return module


pack, run = load("bench/gpu/pack.py"), load("bench/gpu/run.py")


def phase(capsys, *argv) -> tuple[int, dict]:
    code = run.main(list(argv))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    return code, json.loads(last)  # every phase ends with one JSON line


def test_parts_unpack_in_any_order_and_train_names_what_is_missing(tmp_path, capsys):
    tree = make_tiny_imagenet(tmp_path / "src", wnids=("n01", "n02", "n03"), per_class=6, val_per_class=2)
    manifest = pack.pack_data(tree, tmp_path / "pack", part_mib=0.02, drop={"n03"})
    n = len(manifest["parts"])
    assert n >= 2 and (manifest["classes"], manifest["train"], manifest["val"]) == (2, 12, 4)
    assert all(p["bytes"] <= 0.02 * 2**20 for p in manifest["parts"])
    again = pack.pack_data(tree, tmp_path / "pack2", part_mib=0.02, drop={"n03"})
    assert [p["sha256"] for p in again["parts"]] == [p["sha256"] for p in manifest["parts"]]  # deterministic
    home, out = str(tmp_path / "home"), str(tmp_path / "out")
    common = ["--home", home, "--out", out, "--pack", str(tmp_path / "pack")]

    code, s = phase(capsys, "train", *common)
    assert code == 1 and s["ok"] is False and s["missing"] == "all" and "data N" in s["error"]
    code, s = phase(capsys, "data", str(n), *common)
    assert code == 0 and s["present"] == [n] and s["missing"] == list(range(1, n))
    code, s = phase(capsys, "train", *common)  # a replaced machine looks like this: some parts gone
    assert code == 1 and s["missing"] == list(range(1, n)) and s["steps"] == []

    victim = tmp_path / "pack" / manifest["parts"][0]["file"]
    good = victim.read_bytes()
    victim.write_bytes(good[:-10] + bytes(10))
    code, s = phase(capsys, "data", "1", *common)
    assert code == 1 and "expected" in s["error"] and 1 in s["missing"]
    victim.write_bytes(good)
    for k in range(1, n + 1):
        code, s = phase(capsys, "data", str(k), *common)
        assert code == 0
    assert s["missing"] == [] and s["present"] == list(range(1, n + 1))
    unpacked = Path(home) / "tiny-imagenet-200"
    assert (unpacked / "wnids.txt").read_text() == "n01\nn02\n"
    assert len(list(unpacked.glob("train/*/images/*.JPEG"))) == 12 and len(list(unpacked.glob("val/images/*.JPEG"))) == 4
    assert json.loads((Path(out) / f"data{n}.json").read_text()) == s  # what the job brings back, beside its log


def test_a_new_pack_replaces_the_parts_of_an_old_one(tmp_path, capsys):
    tree = make_tiny_imagenet(tmp_path / "src", per_class=3, val_per_class=1)
    home = str(tmp_path / "home")
    pack.pack_data(tree, tmp_path / "a", part_mib=1, drop=set())
    phase(capsys, "data", "1", "--home", home, "--out", str(tmp_path / "o"), "--pack", str(tmp_path / "a"))
    shutil.copyfile(tree / "train" / "n01" / "images" / "n01_0.JPEG", tree / "train" / "n01" / "images" / "n01_9.JPEG")
    other = pack.pack_data(tree, tmp_path / "b", part_mib=1, drop=set())
    code, s = phase(capsys, "data", "1", "--home", home, "--out", str(tmp_path / "o"), "--pack", str(tmp_path / "b"))
    assert code == 0 and s["pack_id"] == other["pack_id"] and s["present"] == [1]
    assert (Path(home) / "tiny-imagenet-200" / "train" / "n01" / "images" / "n01_9.JPEG").is_file()


def test_gpu_commands_parse_and_cover_the_issue(tmp_path):
    """A typo in a GPU job's command would cost a GPU window: each is parsed here by archc's own parsers."""
    from archcompiler.cli import bench as bench_cli
    from archcompiler.cli import train as train_cli

    steps = run.bench_steps(tmp_path, dry=False)
    archc = [s.argv[3:] for s in steps if s.argv[1:3] == ["-m", "archcompiler"]]
    benches = [bench_cli.parser().parse_args(a[1:]) for a in archc if a[0] == "bench"]
    trains = [train_cli.parser().parse_args(a[1:]) for a in archc if a[0] == "train"]
    assert trains and all(t.device == "cuda" and t.compile and t.amp == "bf16" for t in trains)
    assert all(t.num_classes == 200 for t in trains)  # the train job's very graphs, so inductor's cache serves it
    assert {Path(s).stem for b in benches for s in b.specs} == set(run.PAPER)
    first = benches[0]
    assert first.specs == ["specs/no_attention.yaml"] and first.mode == "train" and first.compile == "both" and first.breakdown
    assert all(b.amp == "bf16" and b.channels_last for b in benches if "fp32" not in " ".join(map(str, vars(b).values())))
    assert any(b.compile_mode == "reduce-overhead" for b in benches)
    assert {bench_cli.parse_batch_sizes(b.batch_size) for b in benches} >= {(32, 256)}
    assert {b.mode for b in benches} >= {"train", "infer", "both"}
    layout = next(s for s in steps if s.name == "layout")
    args = load("bench/layout.py").parser().parse_args(layout.argv[2:])
    assert args.device == "cuda" and args.compile and args.amp == "bf16"  # decided as training runs there
    scripts = [s.argv[1] for s in steps if s.argv[1].endswith(".py")]
    assert all((ROOT / p).is_file() for p in scripts)
    tests = next(s for s in steps if s.name == "cuda-tests")
    assert "cuda" in tests.argv and (ROOT / tests.argv[-1] / "test_cuda.py").is_file()


def fixture_envelopes() -> dict:
    """Made up in this test, never measured: a card named so that nobody mistakes it for one."""
    card = "TEST FIXTURE GPU (not a measurement)"

    def row(compiled, batch, ips):
        return {"spec": "no_attention", "model": "emitted", "mode": "train", "compiled": compiled, "batch_size": batch,
                "batch_run": batch, "device": "cuda", "amp": "bf16", "channels_last": True, "iters": 3, "flops_per_image": 3_240_000_000,
                "images_per_s": ips, "step_ms_median": 1e3 * batch / ips, "step_ms_min": 1.0, "step_ms_max": 9.0, "step_ms": [1.0, 1.0, 1.0],
                "tflops": 3.24e-3 * ips, "mfu": 0.1, "compile_s": 12.0 if compiled else None,
                "compiled_to_eager": 1.5 if compiled else None, "compiled_to_eager_ci": [1.4, 1.6] if compiled else None}

    def bench(mode, rows):
        return {"kind": "archc-bench", "machine": card, "date": "2026-01-01T00:00:00+00:00", "torch": "2.11.0", "device": "cuda",
                "command": f"archc bench specs/no_attention.yaml --compile-mode {mode}", "config": {"amp": "bf16", "channels_last": True,
                "compile_kwargs": {"backend": "inductor", **({"mode": mode} if mode != "default" else {})}},
                "peak": {"flops_per_s": 7.9e14, "matmul_flops_per_s": 7.9e14, "conv_flops_per_s": 4e14, "method": "fixture"}, "rows": rows}

    training = {"kind": "gpu-training", "machine": card, "date": "2026-01-01T00:00:00Z", "torch": "2.11.0", "device": "cuda",
                "command": "bench/gpu/run.sh train", "rows": [{"spec": "no_attention", "epochs": 25, "best_val_acc": 0.5, "paper_val_acc": 0.48}]}
    return {"files": {"archc-bench-no_attention-train": bench("default", [row(False, 256, 20000.0), row(True, 256, 30000.0)]),
                      "archc-bench-no_attention-train-reduce-overhead": bench("reduce-overhead", [row(True, 32, 25000.0)])},
            "training": training}


def test_docs_take_gpu_results_into_one_table_per_card(tmp_path):
    f = fixture_envelopes()
    bundle = tmp_path / "bench-results.json"
    bundle.write_text(json.dumps({"kind": "gpu-results", "files": f["files"]}))
    train = tmp_path / "train-results.json"
    train.write_text(json.dumps(f["training"]))
    results, page = tmp_path / "results", tmp_path / "benchmarks.md"
    assert docs.main(["--results", str(results), "--out", str(page), "--take", str(bundle), str(train)]) == 0
    names = sorted(p.name for p in results.glob("*.json"))
    assert names == ["archc-bench-no_attention-train-reduce-overhead-test-fixture-gpu-not-a-measurement.json",
                     "archc-bench-no_attention-train-test-fixture-gpu-not-a-measurement.json",
                     "gpu-training-test-fixture-gpu-not-a-measurement.json"]
    text = page.read_text()
    section = text.split("## TEST FIXTURE GPU (not a measurement)", 1)[1]
    assert section.count("### archc-bench") == 1  # both runs in one table for the card
    lines = [ln for ln in section.splitlines() if ln.startswith("| no_attention | train |")]
    assert len(lines) == 3
    assert any("| reduce-overhead | 32 | 25,000 |" in ln for ln in lines)
    assert any("| eager | 256 | 20,000 |" in ln for ln in lines) and any("| default | 256 | 30,000 |" in ln for ln in lines)
    assert "### gpu-training" in section and "| 0.48 |" in section
    assert docs.main(["--results", str(results), "--out", str(page), "--check"]) == 0


def test_docs_take_refuses_what_is_not_an_envelope(tmp_path, capsys):
    junk = tmp_path / "x.json"
    junk.write_text(json.dumps({"hello": 1}))
    assert docs.main(["--results", str(tmp_path / "r"), "--out", str(tmp_path / "p.md"), "--take", str(junk)]) == 1
    assert "not a results envelope" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_dry_run_rehearses_every_phase_on_the_cpu(tiny_imagenet):
    """`make gpu-dry-run`: minutes on a 2-core CPU, most of it importing torch in each step's process."""
    proc = subprocess.run([sys.executable, "bench/gpu/dryrun.py", "--data", str(tiny_imagenet)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["dry_run"] == "ok"


def test_run_sh_passes_the_phase_through(tmp_path):
    out = subprocess.run(["bash", "bench/gpu/run.sh", "data", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin", "ARCHC_GPU_NO_WHEELS": "1", "ARCHC_GPU_HOME": str(tmp_path / "h"),
                              "PYTHON": sys.executable})
    assert out.returncode == 2 and "data needs the part number" in out.stderr


def test_train_falls_back_from_cuda_graphs_to_compile_to_eager_and_drops_what_failed(tmp_path, capsys, monkeypatch):
    """The train job tries CUDA graphs, then the default compile, then eager; a run that fails
    is run again the next way, and a way that failed is not tried again for the later specs.
    A run stopped at the deadline is not retried (there is no time left to)."""
    tree = make_tiny_imagenet(tmp_path / "src", per_class=2, val_per_class=1)
    pack.pack_data(tree, tmp_path / "pack", part_mib=1, drop=set())
    common = ["--home", str(tmp_path / "home"), "--out", str(tmp_path / "out"), "--pack", str(tmp_path / "pack")]
    assert phase(capsys, "data", "1", *common)[0] == 0
    ran = []
    outcome = {"train-no_attention": "exit 70", "train-no_attention-default": "stopped at the deadline (exit 130)",
               "train-attn_simple-default": "exit 1", "train-no_attention_extra-default": "exit 1"}

    def fake_run(self, step):  # no subprocess
        ran.append((step.name, step.argv))
        rec = {"step": step.name, "command": shlex.join(step.argv), "status": outcome.get(step.name, "ok"), "seconds": 1.0}
        self.summary["steps"].append(rec)
        return rec

    monkeypatch.setattr(run.Phase, "run", fake_run)
    # attn_simple fails after two epochs (a divergence, say): not the compiler's doing, so not run again
    monkeypatch.setattr(run, "run_summary", lambda out: {"steps": 10, "device_name": "cuda (Fixture)",
                                                         "epochs_completed": 2 if out.name == "attn_simple-default" else 0})
    monkeypatch.setattr(run, "torch_version", lambda ph: "fixture")
    code, s = phase(capsys, "train", *common)
    names = [n for n, _ in ran]
    assert names == ["prepare-cache", "train-no_attention", "train-no_attention-default", "train-attn_simple-default",
                     "train-no_attention_extra-default", "train-no_attention_extra-eager", "train-attn_reduction-eager"]
    argv = dict(ran)
    assert argv["train-no_attention"][-3:] == ["--compile", "--compile-mode", "reduce-overhead"]
    assert argv["train-no_attention-default"][-1] == "--compile" and argv["train-attn_reduction-eager"][-1] == "--no-compile"
    assert code == 0
    rows = {r["spec"]: r for r in json.loads((tmp_path / "out" / "train-results.json").read_text())["rows"]}
    assert rows["no_attention"]["compile_mode"] == "reduce-overhead" and rows["no_attention-default"]["compile_mode"] == "default"
    assert rows["attn_reduction-eager"]["compiled"] is False and rows["attn_reduction-eager"]["paper_val_acc"] == 0.327


def test_train_ways_can_leave_out_cuda_graphs(tmp_path, capsys, monkeypatch):
    tree = make_tiny_imagenet(tmp_path / "src", per_class=2, val_per_class=1)
    pack.pack_data(tree, tmp_path / "pack", part_mib=1, drop=set())
    common = ["--home", str(tmp_path / "home"), "--out", str(tmp_path / "out"), "--pack", str(tmp_path / "pack")]
    assert phase(capsys, "data", "1", *common)[0] == 0
    ran = []

    def fake_run(self, step):
        ran.append(step.name)
        rec = {"step": step.name, "command": shlex.join(step.argv), "status": "ok", "seconds": 1.0}
        self.summary["steps"].append(rec)
        return rec

    monkeypatch.setattr(run.Phase, "run", fake_run)
    monkeypatch.setattr(run, "run_summary", lambda out: {"steps": 10, "epochs_completed": 25})
    monkeypatch.setattr(run, "torch_version", lambda ph: "fixture")
    phase(capsys, "train", *common, "--ways", "default,eager")
    assert ran[:2] == ["prepare-cache", "train-no_attention-default"]
    # job 1's bench on this machine found CUDA graphs slower at batch 32: job 3 leaves them out by itself
    res = tmp_path / "home" / "results"
    res.mkdir(parents=True, exist_ok=True)
    files = {s.name: Path(s.result) for s in run.bench_steps(tmp_path / "home", dry=False) if s.result}  # the names job 1 writes
    for graphs, default, first in ((9000.0, 12000.0, "train-no_attention-default"), (15000.0, 12000.0, "train-no_attention"),
                                   ("9000", 12000.0, "train-no_attention")):  # slower, faster, unreadable (then tried)
        for step, ips in (("bench-no_attention-train-bf16-cl-reduce-overhead", graphs), ("bench-no_attention-train-bf16-cl-32", default)):
            files[step].parent.mkdir(parents=True, exist_ok=True)
            files[step].write_text(json.dumps({"rows": [{"compiled": True, "batch_size": 32, "images_per_s": ips}]}))
        ran.clear()
        code, s = phase(capsys, "train", *common)
        assert ran[1] == first, (graphs, ran)
    ran.clear()
    phase(capsys, "train", *common, "--ways", "eager,default")
    assert ran[1] == "train-no_attention-eager"  # in the order given
    with pytest.raises(SystemExit):
        run.main(["train", *common, "--ways", "fast"])


def test_bench_only_runs_the_steps_named(tmp_path, capsys, monkeypatch):
    ran = []

    def fake_run(self, step):
        ran.append(step.name)
        rec = {"step": step.name, "status": "ok"}
        self.summary["steps"].append(rec)
        return rec

    monkeypatch.setattr(run.Phase, "run", fake_run)
    monkeypatch.setattr(run, "environment", lambda ph: {})
    code, s = phase(capsys, "bench", "--home", str(tmp_path / "h"), "--out", str(tmp_path / "o"), "--only", "bench-attn,layout")
    assert code == 0 and ran == ["layout", "bench-attn_simple-bf16-cl", "bench-attn_reduction-bf16-cl"]
