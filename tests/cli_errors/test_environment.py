"""An environment that lacks a package archc uses is the user's to fix, not a bug in archc.

The GPU machine's image, for one, has no jsonschema and may lack others: a missing third-party
package is exit 1 with the package to install, while a missing module of archc's own is still
an internal error (exit 70). A missing tensorboard only costs the run its event files.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_without(module: str, *argv: str) -> subprocess.CompletedProcess:
    """`archc ARGV` in a fresh interpreter where importing `module` fails."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"from archcompiler.cli.main import entry; sys.argv = ['archc', *{list(argv)!r}]; entry()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_missing_third_party_package_is_bad_input_naming_what_to_install():
    proc = run_without("yaml", "check", "specs/no_attention.yaml")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "'pyyaml'" in proc.stderr and "make setup" in proc.stderr and "internal error" not in proc.stderr


def test_a_missing_module_of_archc_itself_is_still_a_bug():
    proc = run_without("archcompiler.cli.check", "check", "specs/no_attention.yaml")
    assert proc.returncode == 70 and "internal error" in proc.stderr and "Traceback" not in proc.stderr


def test_training_without_tensorboard_warns_and_writes_no_events(tmp_path, monkeypatch, capsys):
    from runtime.train.dashboard import Dashboard

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    board = Dashboard(tmp_path, texts={"layers": "table"})
    board.step(1, 2.0, 0.5, 1e-3, 100.0)
    board.epoch({"step": 1, "train_loss": 2.0, "val_loss": 2.1, "epoch_seconds": 1.0, "train_acc": 0.5, "val_acc": 0.4, "val_top5": 0.9})
    board.close()
    assert "no TensorBoard events" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_behind_stdout_is_bad_input_not_a_bug():
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "archcompiler", "check", "specs/no_attention.yaml"], stdout=full,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and proc.stderr == "archc: error: standard output: No space left on device\n"


def test_a_closed_stdout_is_bad_input_not_a_bug():
    proc = subprocess.run([sys.executable, "-m", "archcompiler", "emit", "specs/no_attention.yaml"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120, preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1 and proc.stderr == "archc: error: standard output: it is closed\n"


def test_a_full_disk_while_writing_a_file_names_it(tmp_path, monkeypatch, capsys):
    """Any write that the machine refuses (here: no space, as a real write raises it: with no
    file name) names the file the atomic writer was writing, and exits 1."""
    import errno

    from archcompiler.cli import main as cli_main
    from runtime import files

    def full(*args, **kwargs):
        with files.replacing(tmp_path / "m.py") as tmp, open(tmp, "w"):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli_main, "main", full)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # entry() points a failed stdout elsewhere; put it back after
    monkeypatch.setattr(sys, "argv", ["archc", "emit", "x.yaml"])
    try:
        cli_main.entry()
    except SystemExit as e:
        code = e.code
    assert code == 1 and capsys.readouterr().err == f"archc: error: {tmp_path / 'm.py'}: No space left on device\n"


def test_a_path_that_is_not_utf8_is_refused_before_any_work(tmp_path):
    out = os.fsdecode(bytes(tmp_path) + b"/\xfdrun")
    proc = subprocess.run([sys.executable, "-m", "archcompiler", "train", "specs/no_attention.yaml", "--out", out],
                          capture_output=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and b"is not UTF-8 text" in proc.stderr and list(tmp_path.iterdir()) == []


def test_a_home_where_nothing_can_be_written_costs_no_warning(tmp_path):
    """Matplotlib warns on every run when it cannot make ~/.config/matplotlib; archc gives it a
    private folder instead, so drawing the curves prints nothing."""
    code = ("from runtime.train.curves import plot\n"
            "rows = [{'epoch': 1, 'train_acc': 0.1, 'train_loss': 2.0, 'val_acc': 0.1, 'val_loss': 2.1}]\n"
            f"plot([('run', rows)], [{str(tmp_path / 'c.png')!r}])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, env={**env, "HOME": "/dev/null"})
    assert proc.returncode == 0 and proc.stderr == "" and (tmp_path / "c.png").is_file()


def test_a_cache_dir_from_the_environment_that_cannot_be_written_is_refused_first(tmp_path):
    (tmp_path / "f").write_text("a file, not a folder")
    env = {**os.environ, "ARCHC_CACHE_DIR": str(tmp_path / "f")}
    proc = subprocess.run([sys.executable, "-m", "archcompiler", "data", "prepare", "data/does-not-matter"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env=env)
    assert proc.returncode == 2 and proc.stderr == f"archc: error: $ARCHC_CACHE_DIR {tmp_path / 'f'}: is a file, not a folder\n"


def test_a_memory_limit_that_is_not_a_size_is_a_clear_error():
    from runtime.bench.device import parse_bytes
    from runtime.errors import RuntimeUsageError

    assert parse_bytes("1.5GiB") == 3 * 2**29 and parse_bytes("512 MiB") == 2**29
    assert (parse_bytes("10GB"), parse_bytes("2 gb"), parse_bytes("4g")) == (10**10, 2 * 10**9, 4 * 2**30)  # SI as SI, docker's -m 4g binary
    for bad in ("1.2.3GiB", ".GiB", "2 GBs", "-1MiB", "4gi"):
        with pytest.raises(RuntimeUsageError, match="expected a size such as 2GiB"):
            parse_bytes(bad)


def test_sigterm_anywhere_is_an_interrupt_with_one_line():
    """A scheduler's SIGTERM while a dataset decodes ended archc with 143 and no word; it is
    Ctrl-C: one line, exit 130."""
    import signal
    import subprocess
    import sys

    script = ("import sys, time\n"
              "import archcompiler.cli.main as m\n"
              "m.main = lambda argv=None: (print('ready', flush=True), time.sleep(30))[1]\n"
              "sys.argv = ['archc']\n"
              "m.entry()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    assert proc.stderr.read() == "archc: interrupted\n"


def test_an_interrupt_that_a_library_turns_into_its_own_error_is_still_an_interrupt():
    """torch.export wraps a KeyboardInterrupt that lands inside it (or a half-done import fails
    after it) into an error of its own: that was exit 70, 'a bug in archc'."""
    import signal
    import subprocess
    import sys

    script = ("import sys, time\n"
              "import archcompiler.cli.main as m\n"
              "def main(argv=None):\n"
              "    print('ready', flush=True)\n"
              "    try:\n"
              "        time.sleep(30)\n"
              "    except KeyboardInterrupt as e:\n"
              "        raise RuntimeError('TorchExportError: export failed') from e\n"
              "m.main = main\n"
              "sys.argv = ['archc']\n"
              "m.entry()\n")
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 130, sig
        assert proc.stderr.read() == "archc: interrupted\n"
