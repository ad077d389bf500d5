"""What a daily user of `archc train` relies on beyond the loop itself: step lines and
TensorBoard events without a terminal, the head following the data, fine-tuning from a
checkpoint, predict, and seed groups in compare."""
from __future__ import annotations

import json
import shutil
import re
import subprocess
import sys

import pytest
import torch

from runtime.train import compare
from tests.runtime.train_helpers import TINY_SPEC, tiny_model

DATA = "synthetic:train=64,val=32"


def run_archc(cwd, *args: str) -> subprocess.CompletedProcess:
    """`archc ARGS` as a user runs it in a pipe: stdout is not a terminal."""
    return subprocess.run([sys.executable, "-m", "archcompiler", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def archc(capsys, monkeypatch, cwd, *args: str) -> subprocess.CompletedProcess:
    """The same through the console-script entry point in this process (no second torch import)."""
    from archcompiler.cli.main import entry

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["archc", *args])
    with pytest.raises(SystemExit) as info:
        entry()
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, info.value.code, out.out, out.err)


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    base = tmp_path_factory.mktemp("daily")
    (base / "tiny.yaml").write_text(TINY_SPEC.replace("out: 10", "out: 200"))  # a Tiny ImageNet head on 10-class data
    proc = run_archc(base, "train", "tiny.yaml", "--data", DATA, "--epochs", "2", "--log-every", "3", "--out", "runs/t")
    assert proc.returncode == 0, proc.stderr
    return base, proc


def test_step_lines_without_a_terminal(piped):
    base, proc = piped
    lines = proc.stdout.splitlines()
    steps = [line for line in lines if line.lstrip().startswith("step")]
    # 64 images in batches of 16: 4 steps an epoch; every 3rd step is logged, the epoch's last is the epoch line's
    assert [int(line.split()[1]) for line in steps] == [3, 6]
    assert re.search(r"epoch 1/2 batch 3/4  loss \d+\.\d{4}  acc \d+\.\d\d%  lr 1\.00e-03  [\d,]+ img/s", steps[0])
    assert sum(line.startswith("epoch ") for line in lines) == 2 and "%" in lines[-1] or "% " in proc.stdout
    log = (base / "runs/t/train.log").read_text()
    assert steps[0] in log  # the step lines stay in the run's log too


def test_the_head_follows_the_data(piped):
    base, proc = piped
    assert "classes: the data has 10, so 'fc' outputs 10 instead of the spec's 200" in proc.stdout
    config = json.loads((base / "runs/t/config.json").read_text())
    assert config["num_classes"] == 10 and config["compile"] is False and config["amp"] == "off" and config["device"] == "cpu"
    assert config["requested"] == {"device": "auto", "compile": None, "amp": None}  # what --resume decides afresh from


def test_tensorboard_events_read_back(piped):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base, _ = piped
    events = EventAccumulator(str(base / "runs/t"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/acc_percent", "train/lr", "epoch/val_acc_percent", "epoch/val_loss"} <= set(scalars)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 9))  # every step of both epochs
    rows = [json.loads(line) for line in (base / "runs/t/metrics.jsonl").read_text().splitlines()]
    val = events.Scalars("epoch/val_acc_percent")
    assert [e.step for e in val] == [r["step"] for r in rows]
    assert [e.value for e in val] == pytest.approx([100 * r["val_acc"] for r in rows])
    text = events.Tensors("model/layers/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "conv_bn_relu" in text and "Total" in text  # the layer table


@pytest.mark.slow
def test_fine_tuning_loads_matching_weights_and_reports_the_rest(piped, tmp_path, capsys, monkeypatch):
    base, _ = piped
    # A 200-way model pretrained elsewhere; fine-tuned onto the 10-class set, only the head differs.
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC.replace("out: 10", "out: 200"))
    pre = archc(capsys, monkeypatch, tmp_path, "train", "tiny.yaml", "--data", DATA, "--num-classes", "200", "--max-steps", "2", "--out", "pre")
    assert pre.returncode == 0, pre.stderr
    proc = archc(capsys, monkeypatch, tmp_path, "train", "tiny.yaml", "--data", DATA, "--init-from", "pre", "--max-steps", "1", "--out", "ft")
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("init-from "))
    assert "loaded 6 of 8 tensors of the model; skipped " in line and "2 kept their fresh initialisation" in line
    assert "fc.weight (shape (200, 8) there, (10, 8) here)" in line and "fc.bias (shape (200,) there, (10,) here)" in line
    init = json.loads((tmp_path / "ft/config.json").read_text())["init_from"]
    assert sorted(init["skipped"]) == ["fc.bias", "fc.weight"] and init["missing"] == ["fc.bias", "fc.weight"]
    assert "stem.conv.weight" in init["loaded"] or any(k.endswith("conv.weight") for k in init["loaded"])


def test_init_from_copies_exactly_the_matching_tensors(tmp_path):
    from runtime.train import checkpoint

    source, target = tiny_model(0), tiny_model(1)
    target[-1] = torch.nn.Linear(8, 3)  # another head
    weights = source.state_dict()
    report = checkpoint.load_matching(target, weights, "test")
    assert set(report["skipped"]) == {"6.weight", "6.bias"} and len(report["loaded"]) == len(weights) - 2
    for name in report["loaded"]:
        assert torch.equal(target.state_dict()[name], weights[name])
    with pytest.raises(Exception, match="no tensor matches"):
        checkpoint.load_matching(torch.nn.Linear(2, 2), weights, "test")


def test_init_from_that_loads_little_of_the_model_warns(tmp_path, capsys):
    """A fine-tune loads most of its model: one tensor of many means another model's checkpoint."""
    from safetensors.torch import save_file

    from archcompiler.cli.train import init_from
    from runtime.train.distributed import World

    save_file({k: v.contiguous() for k, v in tiny_model(0).state_dict().items()}, str(tmp_path / "w.safetensors"))
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), *[torch.nn.Conv2d(8, 8, 1) for _ in range(4)])
    init_from(other, str(tmp_path / "w.safetensors"), World())
    assert "warning: --init-from loaded only 3 of the model's 10 tensors" in capsys.readouterr().err
    init_from(tiny_model(1), str(tmp_path / "w.safetensors"), World())
    assert "warning" not in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_predict_agrees_with_eval(piped, tmp_path, capsys, monkeypatch):
    """predict on image files gives the classes that eval scored: the same preprocessing."""
    from torchvision.io import write_png

    from runtime.data import load_dataset

    base, _ = piped
    _, val = load_dataset(DATA, progress=False)
    for i in range(8):
        write_png(val.images[i], str(tmp_path / f"{i}.png"))
    proc = archc(capsys, monkeypatch, base, "predict", "tiny.yaml", "--checkpoint", "runs/t", str(tmp_path), "--format", "json", "--top-k", "3")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["image"].rsplit("/", 1)[1] for r in results] == [f"{i}.png" for i in range(8)]
    assert all(len(r["top"]) == 3 and r["top"][0]["probability"] >= r["top"][1]["probability"] for r in results)

    from archcompiler.api import compile as compile_spec
    from archcompiler.cli.classes import with_classes
    from runtime.train import checkpoint

    ckpt = checkpoint.load(base / "runs/t", weights_only=True)
    model = with_classes(compile_spec(str(base / "tiny.yaml")), 10).module(seed=None)
    model.load_state_dict(ckpt.weights)
    model.eval()
    mean = torch.tensor(ckpt.meta["data_stats"]["mean"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model(val.images[:8].float() / 255 - mean).argmax(1).tolist()
    assert [r["top"][0]["index"] for r in results] == expected
    text = archc(capsys, monkeypatch, base, "predict", "tiny.yaml", "--checkpoint", "runs/t", str(tmp_path / "0.png"))
    assert text.returncode == 0 and re.search(r"^\s+\d+\.\d\d%  ", text.stdout, re.M)
    assert "spec has changed" not in text.stderr
    assert re.search(r"^archc predict: weights of \S+/runs/t/checkpoints/step-\d+ \(step \d+\)$", text.stderr, re.M), text.stderr  # the last, named
    (base / "renamed.yaml").write_text((base / "tiny.yaml").read_text().replace("name: tiny", "name: tiny_renamed"))
    renamed = archc(capsys, monkeypatch, base, "predict", "renamed.yaml", "--checkpoint", "runs/t", str(tmp_path / "0.png"))
    assert renamed.returncode == 0 and "warning: the spec has changed since this checkpoint was trained" in renamed.stderr  # as eval warns
    (base / "commented.yaml").write_text("# the model of the tutorial\n" + (base / "tiny.yaml").read_text().replace(": ", ":   "))
    commented = archc(capsys, monkeypatch, base, "predict", "commented.yaml", "--checkpoint", "runs/t", str(tmp_path / "0.png"))
    assert commented.returncode == 0 and "warning" not in commented.stderr  # comments and spacing are no change
    missing = archc(capsys, monkeypatch, base, "predict", "tiny.yaml", "--checkpoint", "runs/t", str(tmp_path / "nope.png"))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr and "Traceback" not in missing.stderr


def test_a_spec_edited_in_comments_only_is_the_spec_a_checkpoint_was_trained_from(tmp_path):
    """eval and predict warn of a changed spec when it says something else, not when it is
    only reworded; a checkpoint from before the data hash is compared through its run's copy."""
    import hashlib

    from archcompiler.api import compile as compile_spec
    from archcompiler.cli.common import spec_changed

    trained, reworded, other = TINY_SPEC, "# notes\n" + TINY_SPEC.replace(": ", ":  "), TINY_SPEC.replace("out: 10", "out: 12")
    net = {k: compile_spec(text) for k, text in [("trained", trained), ("reworded", reworded), ("other", other)]}
    meta = {"spec_sha256": net["trained"].spec_hash, "spec_data_sha256": net["trained"].spec_data_hash}
    step = tmp_path / "run" / "checkpoints" / "step-0000010"
    assert [spec_changed(meta, net[k], step) for k in net] == [False, False, True]
    old = {"spec_sha256": meta["spec_sha256"]}  # no data hash: the run's spec.yaml tells, when it is the trained text
    assert [spec_changed(old, net[k], step) for k in net] == [False, True, True]  # no copy: any other text is a change
    step.mkdir(parents=True)
    (tmp_path / "run" / "spec.yaml").write_text(trained)
    assert [spec_changed(old, net[k], step) for k in net] == [False, False, True]
    (tmp_path / "run" / "spec.yaml").write_text(reworded)  # a copy that is not what was trained says nothing
    assert hashlib.sha256(reworded.encode()).hexdigest() != old["spec_sha256"]
    assert [spec_changed(old, net[k], step) for k in net] == [False, True, True]


@pytest.mark.slow  # about 15 s: torch.export and onnxruntime
def test_an_exported_model_carries_its_preprocessing_and_classes(piped, tmp_path, capsys, monkeypatch):
    """The .onnx of a trained run says how to prepare an image and what each output is: read
    from its metadata alone, onnxruntime ranks an image's classes as `archc predict` does."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnx
    import onnxruntime as ort
    from torchvision.io import decode_image, write_png

    from runtime.data import load_dataset

    base, _ = piped
    _, val = load_dataset(DATA, progress=False)
    write_png(val.images[0], str(tmp_path / "0.png"))
    out = tmp_path / "m.onnx"
    assert archc(capsys, monkeypatch, base, "export", "tiny.yaml", "-o", str(out), "--checkpoint", "runs/t").returncode == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["archc:preprocessing"] == "x = (pixels / 255 - mean) / std, per RGB channel, pixels 0-255"
    mean, std = (np.array(json.loads(props[k]), dtype=np.float32).reshape(1, 3, 1, 1) for k in ("archc:mean", "archc:std"))
    pixels = decode_image(str(tmp_path / "0.png")).numpy()[None].astype(np.float32)
    logits = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": (pixels / 255 - mean) / std})[0]
    proc = archc(capsys, monkeypatch, base, "predict", "tiny.yaml", "--checkpoint", "runs/t", str(tmp_path / "0.png"), "--format", "json")
    top = json.loads(proc.stdout)["top"][0]
    assert int(logits.argmax()) == top["index"] and json.loads(props["archc:classes"])[top["index"]] == top["class"]


def test_export_metadata_without_a_checkpoint_names_only_the_model():
    from types import SimpleNamespace

    from archcompiler.api import compile as compile_spec
    from archcompiler.cli.export import model_props

    net = compile_spec(TINY_SPEC)
    assert model_props(net, None) == {"archc:model": "tiny", "archc:spec_sha256": net.spec_hash, "archc:input": "float32 (batch, 3, 64, 64), RGB, NCHW"}
    ckpt = SimpleNamespace(path="runs/x/checkpoints/step-0000010", meta={"data_stats": {"mean": [0.5, 0.4, 0.3], "std": None}, "step": 10,
                                                                         "classes": ["n01", "n02"], "class_names": ["cat", "dog"]})
    props = model_props(net, ckpt)
    assert (props["archc:std"], props["archc:classes"], props["archc:class_names"]) == ("[1.0, 1.0, 1.0]", '["n01", "n02"]', '["cat", "dog"]')
    assert props["archc:step"] == "10" and not any("runs/x" in v for v in props.values())  # no path of this machine


def test_a_checkpoints_own_weights_file_brings_its_meta(piped):
    """`--checkpoint run/checkpoints/best/model.safetensors` is that checkpoint, meta.json and
    all (classes, preprocessing); a bare weights file elsewhere has no meta."""
    from runtime.train import checkpoint

    base, _ = piped
    folder = checkpoint.load(base / "runs/t", weights_only=True).path
    inside = checkpoint.load(folder / "model.safetensors", weights_only=True)
    assert inside.meta["data_stats"]["mean"] and inside.meta["classes"]
    shutil.copy(folder / "model.safetensors", base / "bare.safetensors")
    assert checkpoint.load(base / "bare.safetensors", weights_only=True).meta == {}


def write_run(path, model: str, seed: int, accs: list[float], data: str = "tiny-imagenet:/d", partial: bool = False):
    """A run directory as archc train leaves it, reduced to what compare reads."""
    from runtime.train import metrics

    path.mkdir(parents=True)
    rows = [{"epoch": i + 1, "step": 10 * (i + 1), "val_acc": a, "train_acc": a, "val_loss": 1.0, "train_loss": 1.0, "lr": 1e-3}
            for i, a in enumerate(accs)]
    if partial:
        rows[-1]["partial"] = True
    metrics.write(path, rows)
    best = max(range(len(accs)), key=accs.__getitem__)
    (path / "summary.json").write_text(json.dumps({
        "model": model, "status": "max_steps" if partial else "complete", "params": 1000, "flops": 2000, "dataset": data,
        "best_val_acc": accs[best], "best_epoch": best + 1, "final_val_acc": accs[-1], "wall_time_s": 5.0}))
    (path / "config.json").write_text(json.dumps({"seed": seed, "spec_sha256": model * 4, "data": data}))


@pytest.fixture
def seeds(tmp_path):
    """Two models, three seeds each, laid out as `archc train --seeds 0,1,2` does."""
    for model, accs in (("narrow", [0.40, 0.42, 0.41]), ("wide", [0.47, 0.49, 0.48])):
        for seed, acc in enumerate(accs):
            write_run(tmp_path / model / f"seed-{seed}", model, seed, [acc - 0.1, acc])
    return tmp_path


def test_seed_groups_and_the_test(seeds, capsys):
    runs = sorted(str(p) for p in seeds.glob("*/seed-*"))
    assert compare.main([*runs, "--test"]) == 0
    out = capsys.readouterr().out
    assert "Over seeds" in out
    assert "41.00% ± 1.00 (n=3)" in out and "48.00% ± 1.00 (n=3)" in out  # mean ± sample std of 40, 42, 41 (and 47, 49, 48)
    # Welch's t for means 7 points apart with std 1 and n=3 each: t = 7 / sqrt(2/3) = 8.57 on 4 df, p = 0.001
    assert "wide vs narrow: " in out and "difference +7.00 points, Welch's t = 8.57, df = 4.0, p = 0.001: significant at 0.05" in out
    compare.main([*runs, "--test", "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert [g["n"] for g in data["groups"]] == [3, 3] and data["tests"][0]["n"] == [3, 3]
    assert data["tests"][0]["p"] == pytest.approx(0.00102, abs=2e-5)
    # the folders `archc train --seeds` writes stand for their seed runs
    compare.main([str(p) for p in sorted({p.parent for p in seeds.glob("*/seed-*")})] + ["--test", "--format", "json"])
    assert json.loads(capsys.readouterr().out) == data


def test_a_test_over_runs_stopped_early_says_so(tmp_path, capsys):
    """Seeds of a --max-steps smoke test can differ 'significantly' at step 25: the verdict says
    that it compares unfinished runs."""
    for model, accs in (("narrow", [0.40, 0.42, 0.41]), ("wide", [0.47, 0.49, 0.48])):
        for seed, acc in enumerate(accs):
            write_run(tmp_path / model / f"seed-{seed}", model, seed, [acc], partial=seed == 0)
    runs = sorted(str(p) for p in tmp_path.glob("*/seed-*"))
    assert compare.main([*runs, "--test"]) == 0
    assert "significant at 0.05 (but 2 of these 6 runs did not finish their training" in capsys.readouterr().out
    compare.main([*runs, "--test", "--format", "json"])
    assert json.loads(capsys.readouterr().out)["tests"][0]["unfinished"] == 2


def test_same_accuracies_are_not_significant(tmp_path, capsys):
    for model in ("a", "b"):
        for seed, acc in enumerate((0.40, 0.45, 0.50)):
            write_run(tmp_path / model / f"seed-{seed}", model, seed, [acc])
    compare.main([*sorted(str(p) for p in tmp_path.glob("*/seed-*")), "--test"])
    assert "p = 1.000: not significant at 0.05" in capsys.readouterr().out


def test_copies_of_one_run_are_not_seeds_and_groups_without_spread_cannot_be_told_apart(tmp_path, capsys):
    """Two copies of a run (a second rsync) are one seed, not two: refused by --test, noted in
    the table. Groups whose runs all ended alike give no t at all, rather than t = inf."""
    from runtime.errors import RuntimeUserError

    for model, acc in (("a", 0.40), ("b", 0.45)):
        for copy in ("runs", "backup"):
            write_run(tmp_path / copy / model, model, 0, [acc])
    runs = sorted(str(p) for p in tmp_path.glob("*/*"))
    with pytest.raises(RuntimeUserError, match=r"runs of a with the same seed \(0\): copies of one run, or one run twice"):
        compare.main([*runs, "--test"])
    assert compare.main(runs) == 0
    assert "the group's mean and std count it twice" in capsys.readouterr().err
    for model, acc in (("c", 0.40), ("d", 0.45)):
        for seed in (0, 1):
            write_run(tmp_path / "flat" / model / f"seed-{seed}", model, seed, [acc])
    flat = sorted(str(p) for p in (tmp_path / "flat").glob("*/seed-*"))
    compare.main([*flat, "--test"])
    assert "difference +5.00 points: cannot tell (no spread within either group" in capsys.readouterr().out
    compare.main([*flat, "--test", "--format", "json"])
    (test,) = json.loads(capsys.readouterr().out)["tests"]  # strict JSON: no NaN or Infinity
    assert (test["t"], test["p"], test["significant"]) == (None, None, False)


def test_status_data_and_partial_epochs_are_shown(tmp_path, capsys):
    write_run(tmp_path / "real", "m", 0, [0.3, 0.4])
    write_run(tmp_path / "quick", "m", 0, [0.1, 0.2], data="synthetic", partial=True)
    compare.main([str(tmp_path / "real"), str(tmp_path / "quick")])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["Model", "Data", "Status"]
    assert "tiny-imagenet:/d" in lines[2] and "complete" in lines[2] and " 2 " in lines[2]
    assert "synthetic" in lines[3] and "stopped (--max-steps)" in lines[3] and "1 + partial" in lines[3]
    assert "note: these runs used different data (synthetic, tiny-imagenet:/d)" in out


def test_test_needs_two_runs_a_group(seeds):
    from runtime.errors import RuntimeUsageError

    with pytest.raises(RuntimeUsageError, match="at least 2 runs per group"):
        compare.main([str(seeds / "narrow/seed-0"), str(seeds / "wide/seed-0"), "--test"])


def test_the_live_bar_fits_80_columns():
    import io

    from rich.console import Console

    from runtime.train.progress import Reporter

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    reporter = Reporter(bar=True, stream=Terminal())
    try:
        reporter.start_epoch(12, 25, 3125, 0)
        reporter.update(1270, 4.12345, 0.1234, 1e-3, 41234.0, step=35645)
        out = io.StringIO()
        Console(file=out, width=80, color_system=None).print(reporter._progress.get_renderable())
    finally:
        reporter.close()
    (line,) = [line for line in out.getvalue().splitlines() if line.strip()]
    assert len(line) <= 80 and "…" not in line
    assert "epoch 12/25" in line and "1270/3125" in line and line.rstrip().endswith("loss 4.123 acc 12.3% 41,234 img/s")


def test_long_steps_report_progress_without_a_terminal(monkeypatch):
    """Decoding a dataset into the cache, piped: a line at the start, every LINE_EVERY_S, and at the end."""
    import io

    from runtime.data import progress

    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # every advance is due
    out = io.StringIO()
    with progress.progress_bar("decoding train", 300, stream=out) as advance:
        for _ in range(3):
            advance(100)
    lines = out.getvalue().splitlines()
    assert lines[0] == "decoding train: started (0/300 images)"
    assert lines[1].startswith("decoding train: 100/300 images (33%), ")
    assert lines[-1].startswith("decoding train: done, 300/300 images in ")


@pytest.mark.slow
def test_seeds_train_one_run_per_seed_into_seed_folders(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    proc = archc(capsys, monkeypatch, tmp_path, "train", "tiny.yaml", "--data", DATA, "--seeds", "3,5", "--epochs", "1", "--lr", "0.05",
                 "--batch-size", "8", "--out", "runs/s")
    assert proc.returncode == 0, proc.stderr
    assert "compare them: archc compare runs/s" in proc.stdout
    seeds = {p.name: json.loads((p / "config.json").read_text())["seed"] for p in sorted((tmp_path / "runs/s").iterdir())}
    assert seeds == {"seed-3": 3, "seed-5": 5}
    # one more seed later: the finished ones are left as they are, the new one starts
    more = archc(capsys, monkeypatch, tmp_path, "train", "tiny.yaml", "--seeds", "3,5,7", "--out", "runs/s", "--resume")
    assert more.returncode == 0, more.stderr
    assert "seed 3 in runs/s/seed-3 is complete; nothing to resume" in more.stdout and "seed 7 of 3,5,7 into runs/s/seed-7" in more.stdout
    assert json.loads((tmp_path / "runs/s/seed-7/summary.json").read_text())["status"] == "complete"
    new = json.loads((tmp_path / "runs/s/seed-7/config.json").read_text())
    assert (new["data"], new["epochs"], new["lr"], new["batch_size"], new["seed"]) == (DATA, 1, 0.05, 8, 7)  # its siblings' settings
    # a finished seed goes further when asked to; one that never reached a checkpoint starts again
    shutil.rmtree(tmp_path / "runs/s/seed-5/checkpoints")
    again = archc(capsys, monkeypatch, tmp_path, "train", "tiny.yaml", "--seeds", "3,5", "--out", "runs/s", "--resume", "--epochs", "2")
    assert again.returncode == 0 and "runs/s/seed-5 stopped before its first checkpoint; starting it again from step 0" in again.stderr
    assert json.loads((tmp_path / "runs/s/seed-3/summary.json").read_text())["epochs_completed"] == 2
    assert json.loads((tmp_path / "runs/s/seed-5/summary.json").read_text())["epochs_completed"] == 2


def test_bad_seeds_are_a_usage_error(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    bad = archc(capsys, monkeypatch, tmp_path, "train", "tiny.yaml", "--seeds", "1,1", "--out", "runs/t")
    assert bad.returncode == 2 and "--seeds takes distinct integers from 0 to" in bad.stderr
    both = archc(capsys, monkeypatch, tmp_path, "train", "tiny.yaml", "--seeds", "1,2", "--seed", "3", "--out", "runs/t")
    assert both.returncode == 2 and "give --seed or --seeds, not both" in both.stderr


def test_a_model_that_outputs_a_map_is_refused_with_what_train_supports():
    """The U-Net predicts a 2-channel map: training it as a classifier would fail deep inside
    the loss, so it is one clear line (exit 1) before any step."""
    from pathlib import Path

    spec = Path(__file__).resolve().parents[2] / "specs" / "examples" / "unet.yaml"
    run = subprocess.run([sys.executable, "-m", "archcompiler", "train", str(spec), "--max-steps", "1", "--out", "/nonexistent/never"],
                         capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    assert "trains classifiers" in run.stderr and "2 x 128 x 128 map" in run.stderr and "Traceback" not in run.stderr


def test_runs_of_one_model_with_other_settings_are_other_groups(tmp_path, capsys):
    """An lr sweep at seed 0 is not two copies of one run: each lr is its own group, named by it."""
    for lr, accs in ((0.001, (0.40, 0.42)), (0.05, (0.47, 0.49))):
        for seed, acc in enumerate(accs):
            path = tmp_path / f"lr{lr}" / f"seed-{seed}"
            write_run(path, "m", seed, [acc])
            config = json.loads((path / "config.json").read_text())
            (path / "config.json").write_text(json.dumps({**config, "lr": lr, "batch_size": 32}))
    assert compare.main([*sorted(str(p) for p in tmp_path.glob("*/seed-*")), "--test"]) == 0
    out = capsys.readouterr().out
    assert "m (lr 0.05) vs m (lr 0.001): 48.00% ± 1.41 (n=2) vs 41.00% ± 1.41 (n=2); difference +7.00 points" in out


def test_seeds_of_one_spec_are_one_group_when_its_comments_changed_between_them(tmp_path, capsys):
    """A comment edit between seeds changes the spec's text, not the model: its runs stay one
    group; a change to what the spec says (another data hash) makes another."""
    for seed, (text, data) in enumerate([("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")]):
        path = tmp_path / f"seed-{seed}"
        write_run(path, "m", seed, [0.4 + seed / 100])
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, "spec_sha256": text * 64, "spec_data_sha256": data * 64}))
    compare.main([*sorted(str(p) for p in tmp_path.glob("seed-*")), "--format", "json"])
    assert [g["n"] for g in json.loads(capsys.readouterr().out)["groups"]] == [2, 2]


def test_a_run_in_its_first_epoch_is_compared_as_started(tmp_path, capsys):
    """Before its first epoch ends a run has only config.json (and checkpoints): compare lists
    it as started, beside finished runs, instead of refusing it as no run (the first epoch of
    the full set is hours on a CPU)."""
    write_run(tmp_path / "done", "m", 0, [0.3])
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "config.json").write_text(json.dumps({"seed": 1, "model": "m", "data": "synthetic", "flops": 10}))
    assert compare.main([str(tmp_path / "done"), str(tmp_path / "new"), "--format", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["model"], r["status"], r["best_val_acc"], r["epochs"]) for r in runs] == [("m", "complete", 0.3, 1), ("m", "started", None, 0)]
    assert compare.main([str(tmp_path / "done"), str(tmp_path / "new")]) == 0
    assert "started" in capsys.readouterr().out


def test_a_run_without_its_summary_yet_is_named_from_its_config(tmp_path):
    from runtime.train.compare import read_run

    write_run(tmp_path / "dm4", "mid", 0, [0.3])
    config = json.loads((tmp_path / "dm4" / "config.json").read_text())
    (tmp_path / "dm4" / "config.json").write_text(json.dumps({**config, "model": "mid", "flops": 1234}))
    (tmp_path / "dm4" / "summary.json").unlink()  # a run in its first epoch
    record = read_run(tmp_path / "dm4").record()
    assert (record["model"], record["flops"], record["status"]) == ("mid", 1234, "running")
