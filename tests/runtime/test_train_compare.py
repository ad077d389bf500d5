"""`archc compare` on two small runs: the Figure 12 style table in every format, the overlay
of Figures 8-11, and a clear error for a folder that is not a run."""
from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import pytest

from runtime.errors import RuntimeUserError
from runtime.train import compare
from runtime.train.loop import fit
from tests.runtime.train_helpers import config, small_data, tiny_model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    train, val = small_data()
    for name, seed, epochs in (("alpha", 0, 2), ("beta", 1, 1)):
        fit(lambda device, s=seed: tiny_model(s), train, val, config(epochs=epochs, seed=seed), base / name,
            extra_meta={"model": name, "flops": 1_085_000_000 + seed})
    return base / "alpha", base / "beta"


def test_text_table(runs, capsys):
    assert compare.main([str(r) for r in runs]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["Model", "Data", "Status", "Params", "FLOPs"]
    assert lines[2].startswith("alpha") and lines[3].startswith("beta")
    assert "synthetic" in lines[2] and "complete" in lines[2]
    assert "1.085 G" in lines[2] and "%" in lines[2]


def test_machine_formats_agree_with_the_runs(runs, capsys):
    compare.main([*map(str, runs), "--format", "json"])
    records = json.loads(capsys.readouterr().out)["runs"]
    summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
    assert [r["model"] for r in records] == ["alpha", "beta"]
    for record, summary in zip(records, summaries):
        assert record["best_val_acc"] == summary["best_val_acc"] and record["best_epoch"] == summary["best_epoch"]
        assert record["params"] == summary["params"] and record["wall_time_s"] == summary["wall_time_s"]
    assert [r["epochs"] for r in records] == [2, 1]
    compare.main([*map(str, runs), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["model"] for r in rows] == ["alpha", "beta"] and float(rows[0]["best_val_acc"]) == records[0]["best_val_acc"]
    compare.main([*map(str, runs), "--format", "markdown"])
    md = capsys.readouterr().out.splitlines()
    assert md[0].startswith("| Model | Data | Status |") and md[1].startswith("| ---") and len(md) == 4


def test_overlay_plot_has_a_line_per_run(runs, tmp_path, capsys):
    png, svg = tmp_path / "all.png", tmp_path / "all.svg"
    compare.main([*map(str, runs), "--plot", str(png), "--plot", str(svg)])
    assert png.read_bytes()[:4] == b"\x89PNG"
    texts = [t.text for t in ET.parse(svg).iter() if t.text]
    assert "alpha" in texts and "beta" in texts  # the legend names both runs
    assert {"Training accuracy", "Training loss", "Validation accuracy", "Validation loss"} <= set(texts)


def test_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeUserError, match="is not a training run"):
        compare.main([str(tmp_path)])
