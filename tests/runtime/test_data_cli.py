"""`archc data` through the real entry point: messages, exit codes, never a traceback."""
from __future__ import annotations

import subprocess
import sys


from runtime.data.cli import main as data_cli
from tests.conftest import ROOT
from tests.runtime.data_helpers import make_imagefolder, make_tiny_imagenet


def archc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archcompiler", *args], cwd=ROOT, capture_output=True, text=True)


def test_bad_value_is_a_usage_error_with_exit_code_2_not_a_traceback():
    result = archc("data", "info", "synthetic:colour=red")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("archc: error: bad synthetic option 'colour=red'")


def test_prepare_reports_a_bad_file_through_the_entry_point(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tiny")
    bad = root / "train" / "n01" / "images" / "n01_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:100])
    result = archc("data", "prepare", str(root), "--cache-dir", str(tmp_path / "cache"), "--no-progress")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("archc: error: 1 image cannot be decoded; pass --skip-corrupt to leave them out:\n")
    assert f"{bad}: corrupt or truncated JPEG" in result.stderr


def test_prepare_builds_then_reuses_the_cache(tmp_path, capsys):
    root = make_tiny_imagenet(tmp_path / "tiny")
    args = ["prepare", str(root), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert data_cli(args) == 0
    assert "cache built:" in capsys.readouterr().out
    assert data_cli(args) == 0
    assert "cache already up to date:" in capsys.readouterr().out


def test_info_text_form(tmp_path, capsys):
    root = make_tiny_imagenet(tmp_path / "tiny")
    assert data_cli(["info", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{root}: tiny-imagenet, 2 classes"
    assert out[1].split() == ["train", "8", "images"] and out[2].split() == ["val", "4", "images"]


def test_info_and_prepare_of_the_synthetic_set(capsys):
    assert data_cli(["info", "synthetic:train=500,val=100", "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() == '{"format": "synthetic", "classes": 10, "splits": {"train": 500, "val": 100}, "grayscale": 0}'
    assert data_cli(["prepare", "synthetic"]) == 0
    assert "needs no cache" in capsys.readouterr().out


def test_info_says_when_val_is_held_out_of_an_imagefolder_tree(tmp_path, capsys):
    root = make_imagefolder(tmp_path / "pets", per_class=20, bare=True)
    assert data_cli(["info", str(root), "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() == \
        '{"format": "imagefolder", "classes": 2, "splits": {"train": 36, "val": 4}, "grayscale": 0, "val_held_out": true}'
    assert data_cli(["info", str(root)]) == 0
    assert "4 images (held out: every 10th training image of each class)" in capsys.readouterr().out
