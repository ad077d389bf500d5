"""The paper's recipe on real images: `no_attention` on the 10-class Tiny ImageNet sample, 3
epochs on CPU, must reach 40% validation accuracy (chance is 10%). Skips without the sample."""
from __future__ import annotations

import json

import pytest

from archcompiler.cli import train as train_cli


@pytest.mark.slow
@pytest.mark.realdata
def test_no_attention_learns_the_sample_with_the_paper_recipe(tiny_imagenet, tmp_path):
    run = tmp_path / "run"
    code = train_cli.main(["specs/no_attention.yaml", "--data", f"tiny-imagenet:{tiny_imagenet}", "--epochs", "3", "--device", "cpu",
                           "--out", str(run), "--no-progress", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["optimizer"], config["lr"], config["batch_size"], config["lr_schedule"]) == ("adam", 1e-3, 32, "step")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_completed"] == 3 and summary["status"] == "complete"
    assert summary["best_val_acc"] >= 0.40, summary
