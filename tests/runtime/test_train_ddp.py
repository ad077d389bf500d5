"""DistributedDataParallel through torchrun on CPU (gloo): two processes train one model,
their weights stay bit-identical, and only rank 0 writes or prints."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from archcompiler.cli import train as train_cli
from tests.conftest import ROOT
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
    monkeypatch.setattr(train_cli, "_torchrun", lambda command, env: (calls.append(command), (0, ""))[1])
    assert train_cli.main(["specs/no_attention.yaml", "--nproc", "4", "--epochs", "1"]) == 0
    (command,) = calls
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in command and "--nproc" not in command
    assert command[-5:] == ["archcompiler", "train", "specs/no_attention.yaml", "--epochs", "1"]


def test_nproc_checks_the_batch_split_before_starting_any_process(monkeypatch, capsys):
    from archcompiler.cli.main import entry

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(train_cli, "_torchrun", lambda command, env: pytest.fail("started processes"))
    monkeypatch.setattr(sys, "argv", ["archc", "train", "specs/no_attention.yaml", "--nproc", "2", "--batch-size", "15"])
    with pytest.raises(SystemExit) as info:
        entry()
    assert info.value.code == 2
    assert capsys.readouterr().err == "archc: error: batch size 15 does not split evenly over 2 processes (--nproc); give a multiple of 2 with --batch-size\n"


def test_torchrun_s_own_failure_report_and_log_lines_are_not_shown(capfd):
    """What a process says reaches the user; torchrun's traceback and logging lines do not."""
    script = ("import sys\n"
              "print('W1130 18:02:11.123000 42 torch/distributed/run.py:774] Setting OMP_NUM_THREADS', file=sys.stderr)\n"
              "print('archc: error: no such dataset directory: x', file=sys.stderr)\n"
              "print('Traceback (most recent call last):', file=sys.stderr)\n"
              "print('torch.distributed.elastic.multiprocessing.errors.ChildFailedError:', file=sys.stderr)\n"
              "sys.exit(1)\n")
    assert train_cli._torchrun([sys.executable, "-c", script], dict(os.environ)) == (1, "")
    assert capfd.readouterr().err == "archc: error: no such dataset directory: x\n"


def test_a_process_killed_without_a_word_is_named_and_a_worker_traceback_is_kept(capfd, monkeypatch):
    killed = ("import sys\n"
              "print('E1130 18:02:11.123000 42 api.py:900] failed (exitcode: -9) local_rank: 0 (pid: 7) of binary', file=sys.stderr)\n"
              "print('Traceback (most recent call last):', file=sys.stderr)\n"
              "print('  exitcode  : -9 (pid: 7)', file=sys.stderr)\n"
              "print('torch.distributed.elastic.multiprocessing.errors.ChildFailedError:', file=sys.stderr)\n"
              "sys.exit(1)\n")
    assert train_cli._torchrun([sys.executable, "-c", killed], dict(os.environ)) == (1, "a process was killed by signal 9 (SIGKILL: out of memory?)")
    assert capfd.readouterr().err == ""
    other = "import sys\nprint('Traceback (most recent call last):', file=sys.stderr)\nprint('ValueError: x', file=sys.stderr)\nsys.exit(1)\n"
    assert train_cli._torchrun([sys.executable, "-c", other], dict(os.environ)) == (1, "")
    assert capfd.readouterr().err == "Traceback (most recent call last):\nValueError: x\n"  # not torchrun's report: shown


def test_a_sigterm_to_the_launcher_reaches_every_worker_once(tmp_path):
    """A scheduler stops `archc train --nproc N` by signalling its process alone: the launcher
    passes the signal to torchrun, which sends it on, so each worker gets it once, stops and
    saves (here: says so), instead of training on, orphaned, after the launcher died."""
    worker = ("import signal, sys, time\n"
              "got = []\n"
              "signal.signal(signal.SIGTERM, lambda s, f: got.append(s))\n"
              "sys.stderr.write('ready\\n')  # one write (print makes two, which two workers can interleave: 'readyready')\n"
              "end = time.monotonic() + 60\n"
              "while not got and time.monotonic() < end:\n"
              "    time.sleep(0.05)\n"
              "time.sleep(1)  # a second signal would arrive by now\n"
              "sys.stderr.write(f'worker got {got}\\n')\n")
    torchrun = ("import signal, subprocess, sys\n"  # as torchrun does: it sends a signal it gets on to each worker
                f"workers = [subprocess.Popen([sys.executable, '-c', {worker!r}]) for _ in range(2)]\n"
                "signal.signal(signal.SIGTERM, lambda s, f: [w.send_signal(s) for w in workers])\n"
                "sys.exit(max(w.wait() for w in workers))\n")
    launcher = ("import os, sys\n"
                "from archcompiler.cli import train\n"
                f"code, _ = train._torchrun([sys.executable, '-c', {torchrun!r}], dict(os.environ))\n"
                "print('launcher done', code, file=sys.stderr, flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", launcher], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    ready = 0
    for line in proc.stderr:
        ready += line.strip() == "ready"
        if ready == 2:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=30) == 0
    assert rest.count("worker got [15]\n") == 2 and "launcher done 130" in rest, rest  # each once: a second means "quit without saving"
