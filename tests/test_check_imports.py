"""`archc check` must not import torch: it is the fast command, run on every edit of a spec.
Heavy imports belong inside the commands that need them (emit, train, bench)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_archc_check_does_not_import_torch():
    specs = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("specs/*.yaml"))
    bad = ["tests/bad_specs/013_cycle.yaml", "tests/bad_specs/016_reduction_below_1x1.yaml"]  # the error paths too
    code = (
        "import sys\n"
        "from archcompiler.cli.main import main\n"
        f"main(['check', *{specs!r}])\n"
        f"main(['check', '--format', 'json', '--expand', *{specs + bad!r}])\n"
        f"main(['check', '--batch-size', '8', '--amp', 'bf16', '--expand', *{specs!r}])\n"
        "heavy = sorted(m for m in ('torch', 'torchvision') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Layer" in proc.stdout  # the table was printed: the whole command ran
