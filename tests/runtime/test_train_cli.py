"""`archc train`, `archc eval` and `archc compare` as a user runs them: through the real
entry point, with their messages and exit codes, and never a traceback for a known error."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest

from tests.runtime.train_helpers import TINY_SPEC, archc

DATA = "synthetic:train=64,val=32"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`archc train` once, in a subprocess as a user would run it; several tests read the run."""
    base = tmp_path_factory.mktemp("cli")
    (base / "tiny.yaml").write_text(TINY_SPEC)
    proc = subprocess.run([sys.executable, "-m", "archcompiler", "train", "tiny.yaml", "--data", DATA, "--epochs", "1",
                           "--batch-size", "32", "--out", "runs/tiny"], check=False, cwd=base, capture_output=True, text=True, timeout=600)
    return base, proc


def test_train_prints_table_metrics_and_curves_path(trained):
    base, proc = trained
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "epoch   1/1" in out and "val loss" in out  # the one summary line per epoch
    assert "conv_bn_relu" in out and "Total" in out  # the layer table
    assert "curves: runs/tiny/curves.png" in out and "best val acc" in out
    run = base / "runs" / "tiny"
    assert (run / "spec.yaml").read_text() == TINY_SPEC
    config = json.loads((run / "config.json").read_text())
    assert config["batch_size"] == 32 and config["epochs"] == 1  # flags over the spec's 16 and 2
    assert config["lr"] == 1e-3 and config["optimizer"] == "adam"  # the rest is the paper's recipe


def test_eval_reproduces_the_final_validation_numbers(trained, capsys, monkeypatch):
    base, _ = trained
    monkeypatch.chdir(base)
    code, out, err = archc(capsys, monkeypatch, "eval", "tiny.yaml", "--checkpoint", "runs/tiny", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    row = json.loads((base / "runs/tiny/metrics.jsonl").read_text().splitlines()[-1])
    assert result["data"] == DATA and result["images"] == 32  # the data the run used, found in the checkpoint
    assert result["top1"] == pytest.approx(row["val_acc"]) and result["val_loss"] == pytest.approx(row["val_loss"], rel=1e-5)
    assert result["top1"] <= result["top5"] <= 1
    code, out, _ = archc(capsys, monkeypatch, "eval", "tiny.yaml", "--checkpoint", "runs/tiny/checkpoints/best")
    assert code == 0 and "top-1" in out and "top-5" in out


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_corrupt_checkpoint_is_a_clear_error(trained, tmp_path, capsys, monkeypatch, command):
    base, _ = trained
    run = tmp_path / "run"
    shutil.copytree(base / "runs" / "tiny", run, symlinks=True)
    weights = run / "checkpoints" / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    monkeypatch.chdir(base)
    # the run is complete: the resume asks for one more epoch, so it has a checkpoint to read
    args = ["eval", "tiny.yaml", "--checkpoint", str(run)] if command == "eval" else ["train", "tiny.yaml", "--out", str(run), "--resume", "--epochs", "3"]
    code, _, err = archc(capsys, monkeypatch, *args)
    assert code == 1
    assert err.startswith("archc: error: ") and "model.safetensors is not a valid safetensors file" in err and str(run) in err
    assert "Traceback" not in err


def test_resume_refuses_to_change_the_recipe(trained, capsys, monkeypatch):
    base, _ = trained
    monkeypatch.chdir(base)
    code, _, err = archc(capsys, monkeypatch, "train", "tiny.yaml", "--out", "runs/tiny", "--resume", "--lr", "0.1")
    assert code == 2 and "--lr cannot change in the middle of a run" in err


def test_existing_run_is_not_overwritten(trained, capsys, monkeypatch):
    base, _ = trained
    monkeypatch.chdir(base)
    import runtime.data

    def decode(*args, **kwargs):
        raise AssertionError("the data was loaded before the folder was checked")

    monkeypatch.setattr(runtime.data, "load_dataset", decode)  # on the full set: a minute of decoding, to be told the folder is taken
    code, _, err = archc(capsys, monkeypatch, "train", "tiny.yaml", "--data", DATA, "--out", "runs/tiny")
    assert code == 2 and "already holds a run; add --resume" in err
    (base / "group" / "seed-1" / "checkpoints").mkdir(parents=True)
    code, _, err = archc(capsys, monkeypatch, "train", "tiny.yaml", "--data", DATA, "--out", "group", "--seeds", "0,1")
    assert code == 2 and "group/seed-1 already holds a run" in err and not (base / "group" / "seed-0").exists()


def test_the_head_follows_the_data_unless_pinned(tmp_path, capsys, monkeypatch):
    block = "  fc:  # the head\n    type: affine\n    out: 5  # too few for the data\n"
    (tmp_path / "five.yaml").write_text(TINY_SPEC.replace("  fc: {type: affine, out: 10}\n", block))
    monkeypatch.chdir(tmp_path)
    code, _, err = archc(capsys, monkeypatch, "train", "five.yaml", "--data", DATA, "--out", "runs/x", "--num-classes", "5")
    assert code == 1 and "--num-classes is 5 but the data has 10 classes" in err  # bad input, not a bad command line
    code, out, err = archc(capsys, monkeypatch, "train", "five.yaml", "--data", DATA, "--out", "runs/x", "--max-steps", "1", "--no-progress")
    assert code == 0, err
    assert "classes: the data has 10, so 'fc' outputs 10 instead of the spec's 5" in out
    spec = (tmp_path / "runs/x/spec.yaml").read_text()
    assert "out: 10  # too few for the data" in spec  # the run keeps the model it trained, comments and all
    assert json.loads((tmp_path / "runs/x/config.json").read_text())["num_classes"] == 10
    code, out, err = archc(capsys, monkeypatch, "eval", "five.yaml", "--checkpoint", "runs/x")  # eval finds the head in the checkpoint
    assert code == 0, err


def test_bad_spec_gives_diagnostics_not_a_traceback(tmp_path, capsys, monkeypatch):
    (tmp_path / "bad.yaml").write_text(TINY_SPEC.replace("conv_bn_relu", "conv_bn_relux"))
    code, _, err = archc(capsys, monkeypatch, "train", str(tmp_path / "bad.yaml"))
    assert code == 1 and "conv_bn_relux" in err and "Traceback" not in err


def test_train_help_lists_the_flags(capsys, monkeypatch):
    code, out, _ = archc(capsys, monkeypatch, "train", "--help")
    for flag in ("--data", "--epochs", "--batch-size", "--lr", "--seed", "--device", "--compile", "--no-compile", "--amp",
                 "--channels-last", "--out", "--resume", "--max-steps", "--recipe", "--nproc"):
        assert flag in out
    assert code == 0




@pytest.mark.slow  # two real training runs, about 6 s; test_train_loop covers the resume in process
def test_ctrl_c_saves_says_how_to_resume_and_resume_finishes(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    proc = subprocess.Popen([sys.executable, "-m", "archcompiler", "train", "tiny.yaml", "--data", DATA, "--epochs", "1000",
                             "--out", "runs/c", "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("epoch   1/1000")  # training is under way
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "archc: interrupted at step" in err and "error" not in err and "archc train tiny.yaml --out runs/c --resume" in err and "Traceback" not in err
    saved = json.loads((tmp_path / "runs/c/checkpoints/last/meta.json").read_text())["step"]
    monkeypatch.chdir(tmp_path)
    code, out, err = archc(capsys, monkeypatch, "train", "tiny.yaml", "--out", "runs/c", "--resume", "--max-steps", str(saved + 2))
    assert code == 0, err
    assert f"resumed runs/c at step {saved}" in out
    assert json.loads((tmp_path / "runs/c/summary.json").read_text())["steps"] == saved + 2


def test_compile_mode_reaches_torch_compile_and_the_run_records_it(tmp_path, capsys, monkeypatch):
    """--compile-mode reduce-overhead (CUDA graphs on CUDA) is what torch.compile is asked for,
    and config.json and the summary say so. torch.compile is stood in for: compiling is not
    what is checked here (tests/runtime/test_cuda.py trains under CUDA graphs on a GPU)."""
    import torch

    asked = []

    def fake_compile(model, **kwargs):
        asked.append(kwargs)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    code, _, err = archc(capsys, monkeypatch, "train", "tiny.yaml", "--data", DATA, "--epochs", "1", "--max-steps", "1",
                         "--compile", "--compile-mode", "reduce-overhead", "--no-progress", "--out", "runs/ro")
    assert code == 0, err
    assert asked == [{"fullgraph": True, "mode": "reduce-overhead"}]
    assert json.loads((tmp_path / "runs/ro/config.json").read_text())["compile_mode"] == "reduce-overhead"
    code, _, err = archc(capsys, monkeypatch, "train", "tiny.yaml", "--compile-mode", "fast")
    assert code == 2 and "invalid choice: 'fast'" in err
