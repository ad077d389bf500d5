"""The project's own code passes `ruff check` under pyproject.toml's rules (undefined and
unused names, syntax errors): a stale import or a typo in a rarely run path fails here."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

RUFF = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")


@pytest.mark.skipif(not os.path.exists(RUFF), reason="ruff not installed (make setup installs the dev extra)")
def test_ruff_check_passes():
    run = subprocess.run([RUFF, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
