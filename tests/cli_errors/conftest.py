"""What the error corpus shares: one tiny trained run, built once per session through the real
`archc` command, specs of the same and of other models, and small datasets on disk."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.data_helpers import make_imagefolder, make_tiny_imagenet
from tests.runtime.train_helpers import TINY_SPEC

BIN = Path(sys.executable).parent / "archc"
ARCHC = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "archcompiler"]  # the console script when installed
DATA = "synthetic:train=64,val=32"
ROOT = Path(__file__).resolve().parents[2]


def archc(*args: str, cwd, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*ARCHC, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def run_driver(cases: list[dict], workdir: Path) -> list[dict]:
    """Run `cases` in one process (tests/cli_errors/driver.py); their results, in order."""
    (workdir / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, "-m", "tests.cli_errors.driver", str(workdir / "cases.json"), str(workdir / "results.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="session")
def corpus_base(tmp_path_factory) -> Path:
    """A folder with tiny.yaml trained into runs/tiny (2 epochs of 2 steps, stopped by
    --max-steps 3 in the middle of the second), specs of other models, and datasets."""
    base = tmp_path_factory.mktemp("corpus")
    (base / "tiny.yaml").write_text(TINY_SPEC)
    (base / "five.yaml").write_text(TINY_SPEC.replace("out: 10", "out: 5"))  # fewer outputs than the data's classes
    (base / "wide.yaml").write_text(TINY_SPEC.replace("name: tiny", "name: wide").replace("out: 8", "out: 16"))  # another model
    proc = archc("train", "tiny.yaml", "--data", DATA, "--epochs", "2", "--batch-size", "32", "--max-steps", "3",
                 "--out", "runs/tiny", "--no-progress", cwd=base)
    assert proc.returncode == 0, proc.stderr
    make_tiny_imagenet(base / "data" / "tiny")
    make_imagefolder(base / "data" / "folder", per_class=10)
    return base
