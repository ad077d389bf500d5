"""DistributedDataParallel through torchrun on CPU (gloo): two processes train one model,
their weights stay bit-identical, and only rank 0 writes or prints."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from archcompiler.cli import train as train_cli
from tests.runtime.train_helpers import TINY_SPEC

DRIVER = Path(__file__).with_name("ddp_driver.py")


@pytest.mark.slow  # two training processes, about 10 s
def test_two_gloo_processes_stay_in_sync_and_only_rank_0_writes(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(DRIVER), str(tmp_path / "out"),
         "tiny.yaml", "--data", "synthetic:train=64,val=30", "--epochs", "2", "--batch-size", "16", "--no-progress"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0, rank1 = tmp_path / "out" / "rank0", tmp_path / "out" / "rank1"
    assert not rank1.exists()  # rank 1 was told to write there, and wrote nothing
    summary = json.loads((rank0 / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
    # 64 images, 8 per rank per step: 4 steps per epoch, each seeing 16 distinct images
    assert summary["steps"] == 8
    rows = [json.loads(x) for x in (rank0 / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert proc.stdout.count("epoch   1/2") == 1 and proc.stdout.count("ranks in sync: True") == 1  # rank 0 alone prints
    assert (rank0 / "checkpoints" / "last" / "model.safetensors").exists()


def test_nproc_relaunches_under_torchrun_without_itself(monkeypatch):
    calls = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(train_cli.subprocess, "call", lambda command: calls.append(command) or 0)
    assert train_cli.main(["specs/no_attention.yaml", "--nproc", "4", "--epochs", "1"]) == 0
    (command,) = calls
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in command and "--nproc" not in command
    assert command[-5:] == ["archcompiler", "train", "specs/no_attention.yaml", "--epochs", "1"]
