"""A model with several outputs (`output: [c3, p4, p5, p6]`): a backbone that returns feature
maps. check, render, emit, export and bench handle it; train, eval and predict, which need
class scores, refuse it with one clear line (exit 1)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import archcompiler
from tests.conftest import ROOT

SPEC = ROOT / "tests" / "specs" / "backbone_outputs.yaml"
OUTPUTS = {"c3": [32, 16, 16], "p4": [32, 8, 8], "p5": [32, 4, 4], "p6": [32, 2, 2]}


def archc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archcompiler", *args], capture_output=True, text=True, cwd=ROOT)


def test_check_lists_what_the_model_returns_in_order():
    run = archc("check", str(SPEC), "--format", "json")
    assert run.returncode == 0, run.stderr
    entry = json.loads(run.stdout)["files"][0]
    assert [(o["name"], o["shape"]) for o in entry["outputs"]] == list(OUTPUTS.items())
    text = archc("check", str(SPEC)).stdout
    assert "returns 4 outputs: c3 (16 x 16 x 32), p4 (8 x 8 x 32), p5 (4 x 4 x 32), p6 (2 x 2 x 32)" in text
    single = json.loads(archc("check", str(ROOT / "specs" / "no_attention.yaml"), "--format", "json").stdout)["files"][0]
    assert single["outputs"] == [{"name": "fc", "shape": [200]}]
    assert "returns" not in archc("check", str(ROOT / "specs" / "no_attention.yaml")).stdout


def test_the_emitted_model_returns_a_tuple_of_the_checked_shapes():
    net = archcompiler.compile(SPEC)
    assert "-> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:" in net.source
    assert "outputs (B, 32, 16, 16), (B, 32, 8, 8), (B, 32, 4, 4) and (B, 32, 2, 2)" in " ".join(net.source.split())  # the docstring
    with torch.no_grad():
        out = net.module(seed=0).eval()(torch.randn(2, 3, 64, 64))
    assert isinstance(out, tuple) and [list(t.shape[1:]) for t in out] == list(OUTPUTS.values())
    # c3 is returned and also read on: the tuple holds the tensor the next layer read
    assert net.output_shapes == [tuple(s) for s in OUTPUTS.values()] and net.output_shape == (32, 16, 16)


@pytest.mark.parametrize("command", [["train", "--max-steps", "1", "--out", "/nonexistent/run"],
                                     ["eval", "--checkpoint", "/nonexistent/ckpt"], ["predict", "--checkpoint", "/nonexistent/ckpt", "x.png"]])
def test_commands_that_need_class_scores_refuse_it_in_one_line(command):
    run = archc(command[0], str(SPEC), *command[1:])
    assert run.returncode == 1, run.stderr
    assert "returns 4 outputs (c3, p4, p5, p6)" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_a_model_lists_each_output_once(tmp_path):
    spec = tmp_path / "twice.yaml"
    spec.write_text(SPEC.read_text().replace("output: [c3, p4, p5, p6]", "output: [c3, p4, c3]"))
    run = archc("check", str(spec))
    assert run.returncode == 1
    assert f"{spec}:30:18: error[E302]: the output 'c3' is listed twice; a model returns each node once" in run.stderr


@pytest.mark.slow  # about 10 s of torch.export and onnxruntime
def test_onnx_export_names_each_output_after_its_node(tmp_path):
    import onnx

    run = archc("export", str(SPEC), "-o", str(tmp_path / "m.onnx"))
    assert run.returncode == 0, run.stderr
    assert [o.name for o in onnx.load(str(tmp_path / "m.onnx")).graph.output] == list(OUTPUTS)


def test_an_output_switched_off_keeps_its_name_and_may_not_duplicate_another(tmp_path):
    spec = tmp_path / "off.yaml"
    text = SPEC.read_text().replace("  p6: {type: maxpool, kernel: 1, stride: 2, in: p5}",
                                    "  p6: {type: maxpool, kernel: 1, stride: 2, in: p5, when: false}")
    spec.write_text(text.replace("output: [c3, p4, p5, p6]", "output: [c3, p4, p6]"))
    run = archc("check", str(spec), "--format", "json")
    assert run.returncode == 0, run.stderr
    outputs = json.loads(run.stdout)["files"][0]["outputs"]  # p6 is p5's value, under the name the spec gives it
    assert [(o["name"], o["shape"]) for o in outputs] == [("c3", [32, 16, 16]), ("p4", [32, 8, 8]), ("p6", [32, 4, 4])]
    spec.write_text(text.replace("output: [c3, p4, p5, p6]", "output: [c3, p5, p6]"))
    run = archc("check", str(spec))
    assert run.returncode == 1 and "the outputs 'p5' and 'p6' are the same node here" in run.stderr
