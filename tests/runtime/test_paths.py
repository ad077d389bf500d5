"""runtime/paths.py: an output may sit beside what a command reads, never over it."""
from __future__ import annotations

import pytest

from runtime.errors import RuntimeUsageError
from runtime.paths import output_file


def test_an_output_may_go_beside_a_runs_files_but_not_over_them(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-0000001").mkdir(parents=True)
    for name in ("summary.json", "metrics.jsonl", "model.onnx", "checkpoints/step-0000001/model.safetensors"):
        (run / name).write_text("x")
    output_file(run / "model.onnx", "-o", reads=[run])  # an earlier export: written again
    output_file(run / "overlay.png", "--plot", reads=[run])  # new beside the run's files
    for kept in ("summary.json", "metrics.jsonl", "checkpoints/step-0000001/model.safetensors"):
        with pytest.raises(RuntimeUsageError, match="this command reads"):
            output_file(run / kept, "-o", reads=[run])
    spec = tmp_path / "net.yaml"
    spec.write_text("archc: 1")
    with pytest.raises(RuntimeUsageError, match=r"net\.yaml: is a file this command reads"):
        output_file(spec, "-o", reads=[spec])
