"""Checkpoints: what is saved loads back; a crash or a kill at any moment of a save leaves the
previous checkpoint loadable; a corrupt or foreign file is a clear CheckpointError, never a
traceback and never code execution (weights_only)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runtime.errors import CheckpointError
from runtime.train import checkpoint

ROOT = Path(__file__).resolve().parents[2]


def weights(value: float) -> dict:
    return {"conv.weight": torch.full((8, 3, 3, 3), value), "fc.bias": torch.arange(4.0) + value}


def save(run, step, tags=("last",)):
    return checkpoint.save(run, step, weights(step), {"step": step, "rng": [torch.get_rng_state()]}, {"model": "m"}, tags)


def test_round_trip_and_links(tmp_path):
    save(tmp_path, 1, ("last", "best"))
    save(tmp_path, 2)
    ckpt = checkpoint.load(tmp_path)
    assert ckpt.path.name == "step-0000002" and ckpt.state["step"] == 2 and ckpt.meta["model"] == "m"
    assert torch.equal(ckpt.weights["conv.weight"], weights(2)["conv.weight"])
    assert checkpoint.load(tmp_path / "checkpoints" / "best").state["step"] == 1
    # only what a link points to is kept
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-0000001", "step-0000002"]
    save(tmp_path, 3, ("last", "best"))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-0000003"]


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    save(tmp_path, 1)
    real_write = checkpoint._write_file

    def crash_halfway(path, data):
        if path.name == "state.pt":
            real_write(path, data[: len(data) // 2])
            raise SystemExit("killed")  # what a crash looks like to the code after it: nothing runs
        real_write(path, data)

    monkeypatch.setattr(checkpoint, "_write_file", crash_halfway)
    with pytest.raises(SystemExit):
        save(tmp_path, 2)
    assert checkpoint.load(tmp_path).state["step"] == 1
    monkeypatch.undo()
    save(tmp_path, 3)  # the next save clears the half-written leftovers
    assert checkpoint.load(tmp_path).state["step"] == 3
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_a_crash_before_the_link_moves_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    save(tmp_path, 1)

    def crash(*args):
        raise SystemExit("killed")

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(SystemExit):
        save(tmp_path, 2)
    monkeypatch.undo()
    assert checkpoint.load(tmp_path).state["step"] == 1


WRITER = """
import sys, torch
from runtime.train import checkpoint
step = 0
while True:
    step += 1
    w = {"big": torch.full((1_000_000,), float(step)), "small": torch.full((3,), float(step))}
    checkpoint.save(sys.argv[1], step, w, {"step": step, "pad": torch.zeros(500_000)}, {"model": "m"}, ("last",))
    print(step, flush=True)
"""


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "1"  # one checkpoint is complete; more are being written
        time.sleep(0.1)  # somewhere inside a later save: any moment must be safe
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ckpt = checkpoint.load(tmp_path)
    step = ckpt.state["step"]
    assert step >= 1 and ckpt.meta["step"] == step
    assert torch.equal(ckpt.weights["big"], torch.full((1_000_000,), float(step)))  # whole, and from that very step


def test_a_group_of_seeds_is_named_as_one(tmp_path):
    for k in (0, 1, 10):
        (tmp_path / f"seed-{k}" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"is a group of runs, one per seed \(seed-0, seed-1, seed-10\); give one of them, e\.g\. .*seed-0$"):
        checkpoint.load(tmp_path)


def test_missing_and_dangling(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "nope")
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        checkpoint.load(tmp_path)
    os.symlink("step-0000009", tmp_path / "checkpoints" / "last")
    with pytest.raises(CheckpointError, match="step-0000009, which does not exist"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("victim, expected", [
    ("model.safetensors", "model.safetensors is not a valid safetensors file"),
    ("state.pt", "state.pt is corrupt"),
    ("meta.json", "meta.json is unreadable or not JSON"),
])
def test_truncated_files_are_named(tmp_path, victim, expected):
    folder = save(tmp_path, 1)
    data = (folder / victim).read_bytes()
    (folder / victim).write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=expected) as info:
        checkpoint.load(tmp_path)
    assert str(folder) in str(info.value)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_state_holding_code_is_refused(tmp_path):
    folder = save(tmp_path, 1)
    torch.save({"step": 1, "evil": Payload()}, folder / "state.pt")
    with pytest.raises(CheckpointError, match="state.pt is corrupt or not a training state"):
        checkpoint.load(tmp_path)


def test_weights_that_do_not_fit_are_explained(tmp_path):
    save(tmp_path, 1)
    model = torch.nn.Linear(3, 4)
    with pytest.raises(CheckpointError, match="does not fit this model: missing bias, weight; unexpected conv.weight, fc.bias"):
        checkpoint.load_into(model, checkpoint.load(tmp_path).weights, "ckpt")


def test_a_checkpoint_rotated_away_while_read_is_read_again_from_the_new_last(tmp_path, monkeypatch):
    """eval beside a run that trains: the checkpoint 'last' named is deleted (rotated) before its
    files are read. The load resolves 'last' again instead of calling the checkpoint corrupt."""
    save(tmp_path, 1)
    real = checkpoint._load_folder
    calls = []

    def rotate_first(folder, weights_only):
        calls.append(folder.name)
        if len(calls) == 1:  # the run saves step 2 and is part-way through deleting step 1
            save(tmp_path, 2, ("best",))
            os.replace(tmp_path / "checkpoints" / "best", tmp_path / "checkpoints" / "last")
            (folder / "model.safetensors").unlink()
        return real(folder, weights_only)

    monkeypatch.setattr(checkpoint, "_load_folder", rotate_first)
    ckpt = checkpoint.load(tmp_path)
    assert ckpt.state["step"] == 2 and calls == ["step-0000001", "step-0000002"]
