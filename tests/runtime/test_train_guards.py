"""What stops a daily user from losing a run or being misled: one process per run directory,
a closed stdout that does not kill training, output paths that cannot clobber a run or a
baseline, values that cannot mean something else, and resumes that do what they say."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from archcompiler.cli.main import entry
from runtime.errors import RuntimeUserError
from runtime.train import distributed
from runtime.train.resume import lock_run_dir, prepare_run_dir, release_run_dir
from tests.conftest import ROOT
from tests.runtime.data_helpers import make_imagefolder
from tests.runtime.train_helpers import TINY_SPEC, archc

DATA = "synthetic:train=64,val=32"


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    return "tiny.yaml"


def test_a_run_directory_is_trained_by_one_process_at_a_time(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        f = open({str(run / '.lock')!r}, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeUserError, match="is being trained by another process; wait for it to end, or pick another --out"):
            prepare_run_dir(run, False, distributed.World())
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    prepare_run_dir(run, False, distributed.World())  # free again once the other process ended
    lock_run_dir(run)  # held by this process already: no conflict with itself
    release_run_dir(run)


def test_an_unwritable_run_directory_is_refused_before_training(tmp_path, monkeypatch):
    import os

    run = tmp_path / "run"
    (run / "checkpoints" / "step-0000001").mkdir(parents=True)
    (run / "checkpoints" / "last").symlink_to("step-0000001")
    monkeypatch.setattr(os, "access", lambda path, mode: not str(path).endswith("checkpoints"))
    with pytest.raises(RuntimeUserError, match=r"checkpoints: not writable by this user"):
        prepare_run_dir(run, True, distributed.World())  # a resume: it would train, then fail at its first save


@pytest.mark.parametrize("log_every, first", [("1", "step "), ("0", "epoch   1/1")])
def test_training_outlives_a_reader_that_stops_reading(spec, tmp_path, log_every, first):
    """`| head -1` during training (a step line), or as it ends (its one epoch line, with the
    report still to print): the run completes and exits 0 either way."""
    proc = subprocess.Popen([sys.executable, "-m", "archcompiler", "train", spec, "--data", DATA, "--out", "run", "--epochs", "1",
                             "--batch-size", "1", "--log-every", log_every, "--no-progress"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith(first)  # one line read, then the pipe is closed
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, err
    assert "Traceback" not in err and ("standard output was closed; training goes on" in err or log_every == "0")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["steps"] == 64
    assert "epoch   1/1" in (tmp_path / "run" / "train.log").read_text()  # the lines went on into train.log


def test_output_cut_short_by_its_reader_exits_1(monkeypatch, capsys):
    class Gone:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def isatty(self):
            return False

    monkeypatch.setattr(sys, "stdout", Gone())
    monkeypatch.setattr(sys, "argv", ["archc", "check", str(ROOT / "specs" / "no_attention.yaml")])
    with pytest.raises(SystemExit) as info:
        entry()
    assert info.value.code == 1


@pytest.mark.parametrize("value", ["--out=", "''"])
def test_an_empty_value_is_a_usage_error(spec, capsys, monkeypatch, value):
    args = ["train", spec, "--out", ""] if value == "''" else ["train", spec, value]
    code, _, err = archc(capsys, monkeypatch, *args)
    assert code == 2 and "--out: empty value" in err


def test_export_writes_only_onnx_files_and_never_into_a_checkpoint(spec, capsys, monkeypatch, tmp_path):
    (tmp_path / "run" / "checkpoints" / "step-0000001").mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "run" / "metrics.csv").write_text("epoch\n")
    code, _, err = archc(capsys, monkeypatch, "export", spec, "-o", "run/metrics.csv")
    assert code == 2 and "an ONNX file's name ends in .onnx" in err
    code, _, err = archc(capsys, monkeypatch, "export", spec, "-o", "run/checkpoints/step-0000001/model.onnx")
    assert code == 2 and "is inside the run's" in err and "write it beside" in err
    assert (tmp_path / "run" / "metrics.csv").read_text() == "epoch\n"


def test_bench_save_never_replaces_another_machines_baseline(spec, capsys, monkeypatch, tmp_path):
    other = tmp_path / "amd.json"
    shutil.copyfile(ROOT / "bench" / "results" / "archc-bench-amd-epyc-2-cpus.json", other)
    before = other.read_bytes()
    code, _, err = archc(capsys, monkeypatch, "bench", spec, "--save", str(other), "--compile", "off", "--iters", "1")
    assert code == 1 and "holds the figures of AMD EPYC (2 CPUs)" in err and "save under another name" in err
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    code, _, err = archc(capsys, monkeypatch, "bench", spec, "--save", str(tmp_path / "notes.json"), "--compile", "off")
    assert code == 1 and "is not a run archc bench saved" in err
    assert other.read_bytes() == before and (tmp_path / "notes.json").read_text() == '{"mine": 1}'


def test_a_synthetic_set_larger_than_memory_is_refused_at_once(spec, capsys, monkeypatch):
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--data", "synthetic:train=1000000000,val=64", "--max-steps", "1", "--out", "run")
    assert code == 2 and "ask for fewer images" in err


def test_a_run_stopped_at_its_max_steps_resumes_to_its_end_as_one_uninterrupted_run(spec, capsys, monkeypatch, tmp_path):
    common = ["--data", DATA, "--batch-size", "16", "--epochs", "2", "--no-progress"]
    assert archc(capsys, monkeypatch, "train", spec, *common, "--out", "whole")[0] == 0
    assert archc(capsys, monkeypatch, "train", spec, *common, "--out", "parts", "--max-steps", "3")[0] == 0
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "parts", "--resume", "--no-progress")
    assert code == 0, err
    assert "stopped at its --max-steps 3; going on to the end of epoch 2" in err
    a, b = (load_file(tmp_path / run / "checkpoints" / "last" / "model.safetensors") for run in ("whole", "parts"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_before_the_first_checkpoint_starts_the_run_again_with_its_own_settings(spec, capsys, monkeypatch, tmp_path):
    """A run stopped (Ctrl-C twice, a kill) before its first checkpoint has nothing to resume
    from: `--resume` starts it again, with the data and flags its config.json recorded, and
    ends where a run that was never stopped ends."""
    common = ["--data", DATA, "--batch-size", "16", "--epochs", "1", "--lr", "0.02", "--seed", "4", "--no-progress"]
    assert archc(capsys, monkeypatch, "train", spec, *common, "--out", "whole")[0] == 0
    assert archc(capsys, monkeypatch, "train", spec, *common, "--out", "cut")[0] == 0
    shutil.rmtree(tmp_path / "cut" / "checkpoints")  # as a kill before the first checkpoint leaves it (config, log, metrics)
    (tmp_path / "cut" / "summary.json").unlink()
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "cut", "--resume", "--no-progress")
    assert code == 0, err
    assert "cut stopped before its first checkpoint; starting it again from step 0 with its own settings" in err
    a, b = (load_file(tmp_path / run / "checkpoints" / "last" / "model.safetensors") for run in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]  # the old run's rows went with it


def test_resume_tells_a_group_of_seeds_from_one_run(spec, capsys, monkeypatch):
    assert archc(capsys, monkeypatch, "train", spec, "--data", DATA, "--out", "one", "--max-steps", "1", "--no-progress")[0] == 0
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "one", "--resume", "--seeds", "0,1")
    assert code == 2 and "is one run, not a group of seeds" in err
    assert archc(capsys, monkeypatch, "train", spec, "--data", DATA, "--out", "group", "--max-steps", "1", "--seeds", "0,1", "--no-progress")[0] == 0
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "group", "--resume")
    assert code == 2 and "holds a group of seeds; resume them with --seeds 0,1" in err


def test_eval_reads_the_runs_data_as_the_run_did(capsys, monkeypatch, tmp_path):
    """A run trained on a folder with --resize (its images are not the model's size) is
    evaluated on that data without --resize: eval takes the run's data options, as --resume does."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(TINY_SPEC.replace("[3, 64, 64]", "[3, 32, 32]"))
    make_imagefolder(tmp_path / "pets", per_class=4, val=2)  # 64x64 images
    common = ["--cache-dir", "cache", "--no-progress"]
    code, _, err = archc(capsys, monkeypatch, "train", "small.yaml", "--data", "pets", "--resize", "--max-steps", "1", "--out", "run", *common)
    assert code == 0, err
    code, out, err = archc(capsys, monkeypatch, "eval", "small.yaml", "--checkpoint", "run", "--cache-dir", "cache", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["images"] == 4


def test_predict_skips_unreadable_images_on_request_and_keeps_the_order(spec, capsys, monkeypatch, tmp_path):
    from PIL import Image

    assert archc(capsys, monkeypatch, "train", spec, "--data", DATA, "--out", "run", "--max-steps", "1", "--no-progress")[0] == 0
    (tmp_path / "pics").mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "pics" / "a.png")
    (tmp_path / "pics" / "b.png").write_bytes(b"not a picture")
    Image.new("RGB", (80, 50), (30, 30, 200)).save(tmp_path / "pics" / "c.png")
    code, _, err = archc(capsys, monkeypatch, "predict", spec, "--checkpoint", "run", "pics")
    assert code == 1 and "b.png: not a JPEG or PNG file" in err and "--skip-corrupt" in err
    code, out, err = archc(capsys, monkeypatch, "predict", spec, "--checkpoint", "run", "pics", "--skip-corrupt", "--format", "json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["image"].rsplit("/", 1)[1] for r in rows] == ["a.png", "b.png", "c.png"]
    assert "error" in rows[1] and rows[0]["top"] and rows[2]["resized"] is True


def test_a_dangling_last_link_names_the_complete_checkpoint_left(spec, capsys, monkeypatch, tmp_path):
    common = ["--data", DATA, "--batch-size", "16", "--no-progress"]
    assert archc(capsys, monkeypatch, "train", spec, *common, "--out", "run", "--max-steps", "4", "--checkpoint-every", "2")[0] == 0
    last = tmp_path / "run" / "checkpoints" / "last"
    last.unlink()
    last.symlink_to("step-0000099")
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "run", "--resume")
    assert code == 1 and "points to step-0000099, which does not exist; step-0000004 is complete" in err
    assert "ln -sfn step-0000004" in err


def test_a_training_step_far_larger_than_memory_is_refused_before_any_data(spec, capsys, monkeypatch, tmp_path):
    (tmp_path / "huge.yaml").write_text(TINY_SPEC.replace("[3, 64, 64]", "[3, 16384, 16384]"))  # 3 GiB an image: 48 GiB at batch 16
    code, _, err = archc(capsys, monkeypatch, "train", "huge.yaml", "--max-steps", "1", "--out", "run", "--device", "cpu")
    assert code == 1 and "input 3 x 16384 x 16384 is predicted to need" in err and "GiB is free" in err
    assert not (tmp_path / "run").exists()


def test_predict_with_nothing_readable_is_not_a_success(spec, capsys, monkeypatch, tmp_path):
    assert archc(capsys, monkeypatch, "train", spec, "--data", DATA, "--out", "run", "--max-steps", "1", "--no-progress")[0] == 0
    (tmp_path / "bad.png").write_bytes(b"nope")
    code, out, err = archc(capsys, monkeypatch, "predict", spec, "--checkpoint", "run", "bad.png", "--skip-corrupt")
    assert code == 1 and "none of the 1 images could be read" in err and "(skipped: not a JPEG or PNG file" in out


def test_a_seed_list_with_an_empty_item_is_a_typo(spec, capsys, monkeypatch):
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--seeds", "0,,1", "--out", "run")
    assert code == 2 and "--seeds takes comma-separated integers" in err


STRIDED_1X1_ON_THE_IMAGE = """\
archc: 1
name: shortcut
input: [3, 32, 32]
nodes:
  down: {type: conv, out: 16, kernel: 1, stride: 2}
  body: {type: conv, out: 16, kernel: 3, padding: 1, in: input, stride: 2}
  sum: {type: add, in: [down, body]}
  pool: {type: global_avgpool}
  fc: {type: affine, out: 10}
"""


def test_the_cpu_layout_that_crashes_onednn_is_avoided_by_default_and_refused_when_asked(tmp_path, capsys, monkeypatch):
    """A strided 1x1 conv on the image (RepVGG's shortcut) in channels_last kills the process in
    oneDNN's backward on the CPU. Never run here: the default layout gives way to NCHW, and
    asking for channels_last is refused before any run folder or row exists."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(STRIDED_1X1_ON_THE_IMAGE)
    common = ["--data", DATA, "--batch-size", "16", "--epochs", "1", "--no-progress", "--device", "cpu"]
    code, _, err = archc(capsys, monkeypatch, "train", "s.yaml", *common, "--out", "run")
    assert code == 0, err
    assert "note: training in NCHW, not the CPU's default channels_last: oneDNN crashes in the backward pass of 'down'" in err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["channels_last"] is False
    code, _, err = archc(capsys, monkeypatch, "train", "s.yaml", *common, "--out", "asked", "--channels-last")
    assert code == 2 and "'down', a 1x1 convolution at stride 2 on 3 channels" in err and not (tmp_path / "asked").exists()
    code, _, err = archc(capsys, monkeypatch, "bench", "s.yaml", "--mode", "train", "--channels-last", "--compile", "off", "--batch-size", "2")
    assert code == 2 and "leave out --channels-last" in err


def test_fit_lets_the_default_layout_give_way_for_any_module(tmp_path):
    """The runtime knows nothing of specs: fit() reads the module itself."""
    from runtime.errors import RuntimeUsageError
    from runtime.train.loop import fit
    from tests.runtime.train_helpers import config, small_data

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1, stride=2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))

    train, val = small_data()
    summary = fit(model(), train, val, config(epochs=1, device="cpu"), tmp_path / "default")
    assert summary["status"] == "complete"
    assert json.loads((tmp_path / "default" / "config.json").read_text())["channels_last"] is False
    with pytest.raises(RuntimeUsageError, match=r"'0', a 1x1 convolution at stride 2 on 3 channels"):
        fit(model(), train, val, config(epochs=1, device="cpu", channels_last=True), tmp_path / "asked")
    assert not (tmp_path / "asked").exists()


def test_more_epochs_on_resume_say_when_they_rewrite_the_schedule(spec, capsys, monkeypatch):
    """The modern recipe's cosine spans the run: more epochs change the rates the run already
    used, which a note says. The paper's staircase does not depend on the length: no note."""
    common = ["--data", DATA, "--batch-size", "16", "--epochs", "2", "--no-progress", "--max-steps", "5"]
    assert archc(capsys, monkeypatch, "train", spec, *common, "--recipe", "modern", "--out", "cosine")[0] == 0
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "cosine", "--resume", "--epochs", "3", "--max-steps", "6", "--no-progress")
    assert code == 0, err
    assert "note: --epochs 3 rewrites this run's cosine learning-rate schedule, which spans the whole run: its 5 steps so far followed the 2-epoch one" in err
    assert archc(capsys, monkeypatch, "train", spec, *common, "--out", "stairs")[0] == 0
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "stairs", "--resume", "--epochs", "3", "--max-steps", "6", "--no-progress")
    assert code == 0 and "rewrites" not in err, err


def test_a_runs_data_is_named_by_its_absolute_path_and_may_move_but_not_change(tmp_path, capsys, monkeypatch):
    """`--data pets` from the project folder is stored as its absolute path, so --resume works
    from anywhere; a set that moved is given where it is now, and one whose pixels changed
    (the same counts) is refused by its channel mean."""
    import os

    project = tmp_path / "project"
    make_imagefolder(project / "pets", per_class=8, val=2)
    (project / "tiny.yaml").write_text(TINY_SPEC)
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(project)
    common = ["--batch-size", "4", "--epochs", "2", "--no-progress"]
    assert archc(capsys, monkeypatch, "train", "tiny.yaml", "--data", "pets", "--out", "run", "--max-steps", "2", *common)[0] == 0
    config = json.loads((project / "run" / "config.json").read_text())
    assert config["data"] == str(project / "pets") and config["data_options"]["cache_dir"] == str(tmp_path / "cache")  # the variable, recorded
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARCHC_CACHE_DIR")  # a new shell: the resume reads the run's cache, not ~/.cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    code, _, err = archc(capsys, monkeypatch, "train", "project/tiny.yaml", "--out", "project/run", "--resume", "--max-steps", "3", *common)
    assert code == 0 and not (tmp_path / "home-cache").exists(), err
    (project / "pets").rename(tmp_path / "moved")
    code, _, err = archc(capsys, monkeypatch, "train", "project/tiny.yaml", "--out", "project/run", "--resume", "--max-steps", "4", *common)
    assert code == 1 and "the run's data " + str(project / "pets") + " is not there any more; if it moved, give --data" in err
    code, _, err = archc(capsys, monkeypatch, "train", "project/tiny.yaml", "--out", "project/run", "--resume", "--max-steps", "4",
                         "--data", "moved", *common)
    assert code == 0 and "is not there any more; reading " + str(tmp_path / "moved") in err, err
    assert json.loads((project / "run" / "config.json").read_text())["data"] == str(tmp_path / "moved")
    shutil.copytree(tmp_path / "moved", tmp_path / "edited")
    os.replace(tmp_path / "edited" / "train" / "cat" / "001.jpg", tmp_path / "edited" / "train" / "cat" / "000.jpg")
    shutil.copy(tmp_path / "edited" / "train" / "cat" / "002.jpg", tmp_path / "edited" / "train" / "cat" / "001.jpg")
    (tmp_path / "moved").rename(tmp_path / "gone")
    code, _, err = archc(capsys, monkeypatch, "train", "project/tiny.yaml", "--out", "project/run", "--resume", "--max-steps", "5",
                         "--data", "edited", *common)
    assert code == 1 and "the training images differ from the run's (the same counts, but their channel mean was" in err, err


def test_a_synthetic_noise_that_is_not_finite_is_refused():
    from runtime.data.load import parse_spec
    from runtime.errors import RuntimeUsageError

    for value in ("nan", "inf", "-inf"):
        with pytest.raises(RuntimeUsageError, match=f"noise wants a finite number, got '{value}'"):
            parse_spec(f"synthetic:noise={value}")


def test_resume_on_a_complete_run_trains_nothing_and_touches_nothing(spec, capsys, monkeypatch, tmp_path):
    """A job script that always passes --resume: a finished run is left byte for byte."""
    assert archc(capsys, monkeypatch, "train", spec, "--data", DATA, "--batch-size", "16", "--epochs", "1", "--no-progress", "--out", "run")[0] == 0
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in sorted((tmp_path / "run").rglob("*"))}
    code, out, err = archc(capsys, monkeypatch, "train", spec, "--out", "run", "--resume", "--no-progress")
    assert code == 0 and "run is complete (1 of 1 epochs); nothing to train (--epochs N trains it further)" in out, err
    after = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in sorted((tmp_path / "run").rglob("*"))}
    assert after == before
    code, out, _ = archc(capsys, monkeypatch, "train", spec, "--out", "run", "--resume", "--epochs", "2", "--no-progress")
    assert code == 0 and "nothing to train" not in out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs_completed"] == 2


def test_resume_with_fewer_epochs_than_the_run_has_trained_is_refused(spec, capsys, monkeypatch):
    common = ["--data", DATA, "--batch-size", "16", "--no-progress"]
    assert archc(capsys, monkeypatch, "train", spec, *common, "--epochs", "3", "--max-steps", "6", "--out", "run")[0] == 0  # 4 steps an epoch
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "run", "--resume", "--epochs", "1", "--no-progress")
    assert code == 2 and "--resume --epochs 1: the run has trained 6 steps, past the end of epoch 1 (step 4); give --epochs 2 or more" in err
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "run", "--resume", "--epochs", "2", "--no-progress")
    assert code == 0, err


def test_a_comment_added_to_the_spec_does_not_stop_a_resume(spec, capsys, monkeypatch, tmp_path):
    """Comments and layout are not the model: the run resumes; a changed value still refuses."""
    common = ["--batch-size", "16", "--epochs", "2", "--no-progress"]
    assert archc(capsys, monkeypatch, "train", spec, "--data", DATA, *common, "--out", "run", "--max-steps", "2")[0] == 0
    text = (tmp_path / spec).read_text()
    (tmp_path / spec).write_text("# the tiny model, annotated later\n" + text.replace("nodes:", "nodes:   # four layers"))
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "run", "--resume", "--max-steps", "3", *common)
    assert code == 0, err
    (tmp_path / spec).write_text(text.replace("out: 8", "out: 12"))
    code, _, err = archc(capsys, monkeypatch, "train", spec, "--out", "run", "--resume", "--max-steps", "4", *common)
    assert code == 2 and "differs from the spec this run started with" in err


def test_validation_batch_fits_the_memory_beside_the_training_state(tmp_path, capsys, monkeypatch):
    """Validation runs at 256 by default, which can need several times a training step's
    memory: it is lowered to what the free memory holds beside the gradients and optimizer
    state (the budget of --batch-size auto), with a note; --eval-batch-size sets the most."""
    from archcompiler.api import compile as compile_spec
    from archcompiler.passes.memory import largest_conv_copies, predict

    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    monkeypatch.chdir(tmp_path)
    common = ["--data", "synthetic:train=32,val=300", "--max-steps", "1", "--no-progress", "--device", "cpu"]
    monkeypatch.setenv("ARCHC_MEMORY_LIMIT", "40MiB")
    code, _, err = archc(capsys, monkeypatch, "train", "tiny.yaml", "--out", "small", *common)
    batch = json.loads((tmp_path / "small" / "config.json").read_text())["eval_batch_size"]
    assert code == 0 and 1 < batch < 256 and f"note: validation batch {batch}, not 256" in err, err
    net = compile_spec("tiny.yaml")
    state = predict(net.graph, net.result.registry, 1, "train", "adam", "off", "cpu")
    extra = state.grads_bytes + state.optimizer_bytes
    copies = largest_conv_copies(net.graph, net.result.registry, "off")  # oneDNN's transient copies, as auto leaves room for

    def need(b):
        return predict(net.graph, net.result.registry, b, "infer", "adam", "off", "cpu").peak_bytes + b * copies + extra
    assert need(batch) <= int(0.85 * 40 * 2**20) < need(batch + 1)  # the largest that fits
    monkeypatch.delenv("ARCHC_MEMORY_LIMIT")
    code, _, err = archc(capsys, monkeypatch, "train", "tiny.yaml", "--out", "given", "--eval-batch-size", "24", *common)
    assert code == 0 and json.loads((tmp_path / "given" / "config.json").read_text())["eval_batch_size"] == 24 and "validation batch" not in err
