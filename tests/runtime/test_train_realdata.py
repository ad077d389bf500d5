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


@pytest.mark.slow
@pytest.mark.realdata
def test_predict_names_the_samples_classes(tiny_imagenet, tmp_path, capsys):
    """A Tiny ImageNet spec (200 outputs) on the 10-class sample: the head follows the data, and
    predict names each image's classes from words.txt, over a whole folder."""
    from archcompiler.cli import predict
    from tests.runtime.train_helpers import TINY_SPEC

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC.replace("out: 10", "out: 200"))
    run = tmp_path / "run"
    assert train_cli.main([str(spec), "--data", f"tiny-imagenet:{tiny_imagenet}", "--max-steps", "5", "--device", "cpu",
                           "--out", str(run), "--no-progress", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "so 'fc' outputs 10 instead of the spec's 200" in capsys.readouterr().out
    assert predict.main([str(spec), "--checkpoint", str(run), str(tiny_imagenet / "val" / "images"), "--format", "json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    annotations = (tiny_imagenet / "val" / "val_annotations.txt").read_text().splitlines()
    assert len(results) == len(annotations)
    words = dict(line.split("\t", 1) for line in (tiny_imagenet / "words.txt").read_text().splitlines())
    wnids = (tiny_imagenet / "wnids.txt").read_text().split()
    for r in results:
        assert len(r["top"]) == 5 and all(t["class"] in wnids and t["name"] == words[t["class"]] for t in r["top"])
    assert any(t["name"] == "Egyptian cat" for r in results for t in r["top"])
