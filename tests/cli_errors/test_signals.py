"""Two Ctrl-C in quick succession, to the real `archc train`: the second one quits at once, and
the message still names the checkpoint on disk, which summary.json agrees with."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.cli_errors.conftest import ARCHC
from tests.runtime.train_helpers import TINY_SPEC


# gap 0: the second press lands in the step the first one let finish; 0.3 s: usually during
# the save or the plot that follow (a training run each, ~10 s: that one is marked slow)
@pytest.mark.slow  # a real training run per press pattern, 6-10 s each
@pytest.mark.parametrize("gap", [0.0, 0.3])
def test_a_second_ctrl_c_still_reports_the_checkpoint(tmp_path, gap):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    proc = subprocess.Popen([*ARCHC, "train", "tiny.yaml", "--data", "synthetic:train=400,val=32", "--epochs", "1000", "--batch-size", "8",
                             "--checkpoint-every", "1", "--out", "run", "--no-progress"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "run" / "checkpoints" / "last"
    deadline = time.monotonic() + 120
    while not last.is_symlink() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    saved = os.path.realpath(last)
    assert f"run/checkpoints/{os.path.basename(saved)}" in errors[0], err  # the checkpoint that is on disk
    assert "to continue: archc train tiny.yaml --out run --resume" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["steps"] == int(re.search(r"step-(\d+)", saved).group(1))  # where a resume starts
    assert os.path.realpath(tmp_path / summary["checkpoints"]["last"]) == saved
