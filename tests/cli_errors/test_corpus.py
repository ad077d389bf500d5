"""Bad flags, bad paths and damaged files, through the real entry point: for each, the exit code,
one clear `error:` line on stderr, no traceback or warning, and nothing written or changed
(neither the trained run nor anything in the case's own folder).

Each case gets a folder `c/<id>` (with a fresh copy of the trained run as `c/<id>/run` when its
command line names `{run}`); `prepare` damages what it needs there. All cases then run in one
process (driver.py), and each test below checks one of them.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_errors.conftest import DATA, run_driver
from tests.runtime.train_helpers import TINY_SPEC


@dataclass
class Case:
    id: str
    argv: str  # split on spaces; {c} is the case folder, {run} its copy of the trained run
    code: int
    says: str  # a fragment of the one error line (or, for exit 0, of stderr)
    prepare: object = None  # f(folder: Path) run before the corpus
    lines: int = 1  # non-empty stderr lines expected


# ---- damage


def write(name: str, data):
    def prepare(d: Path) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data) if isinstance(data, bytes) else (d / name).write_text(data)
    return prepare


def mkdir(*names: str):
    def prepare(d: Path) -> None:
        for n in names:
            (d / n).mkdir(parents=True)
    return prepare


def edit_json(name: str, change):
    def prepare(d: Path) -> None:
        p = d / name
        p.write_text(json.dumps(change(json.loads(p.read_text()))))
    return prepare


def summary_field(key, value):
    return edit_json("run/summary.json", lambda s: {**s, key: value})


def metrics_row(key, value):
    def prepare(d: Path) -> None:
        p = d / "run" / "metrics.jsonl"
        rows = [json.loads(line) for line in p.read_text().splitlines()]
        rows[0][key] = value
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return prepare


def garble_weights(d: Path, byte: bytes = b"\xff") -> None:
    """`byte` over all tensor bytes (past the safetensors header): still a valid file. 0xFF
    makes every float32 NaN; 0x01 makes them tiny finite numbers only a checksum can catch."""
    p = (d / "run" / "checkpoints" / "last").resolve() / "model.safetensors"
    data = bytearray(p.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = byte * (len(data) - header)
    p.write_bytes(bytes(data))


def flip_state(d: Path) -> None:
    """200 bytes inside state.pt's tensor data: torch still loads it."""
    p = (d / "run" / "checkpoints" / "last").resolve() / "state.pt"
    data = bytearray(p.read_bytes())
    data[len(data) // 3: len(data) // 3 + 200] = b"\x01" * 200
    p.write_bytes(bytes(data))


def hostile_state(d: Path) -> None:
    """A state.pt that pickles an object: weights_only loading refuses to build it."""
    import argparse

    import torch

    torch.save({"step": 3, "x": argparse.Namespace(a=1)}, (d / "run" / "checkpoints" / "last").resolve() / "state.pt")


def meta_field(key, value):
    def prepare(d: Path) -> None:
        p = (d / "run" / "checkpoints" / "last").resolve() / "meta.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), key: value}))
    return prepare


def meta_config(key, value):
    def prepare(d: Path) -> None:
        p = (d / "run" / "checkpoints" / "last").resolve() / "meta.json"
        meta = json.loads(p.read_text())
        meta["config"][key] = value
        p.write_text(json.dumps(meta))
    return prepare


def tiny_imagenet(edit):
    """A copy of the small Tiny ImageNet tree with `edit(root)` applied."""
    def prepare(d: Path) -> None:
        shutil.copytree(d.parents[1] / "data" / "tiny", d / "ti")
        edit(d / "ti")
    return prepare


def add_line(name: str, line: str):
    def edit(root: Path) -> None:
        with open(root / name, "a") as f:
            f.write(line)
    return edit


def bad_jpeg(root: Path) -> None:
    (root / "train" / "n01" / "images" / "n01_0.JPEG").write_bytes(b"not a jpeg at all")


OUT = "emit tiny.yaml -o"
CASES = [
    # ---- output paths: refused before any work, with nothing written
    Case("emit-o-folder", f"{OUT} {{c}}/out", 2, "is a folder", mkdir("out")),
    Case("emit-o-proc", f"{OUT} /proc/nope/x.py", 2, "the folder /proc/nope does not exist"),
    # a trailing slash names a folder that does not exist yet: refused first, not at the final rename
    Case("emit-o-slash", f"{OUT} {{c}}/x.py/", 2, "give a file name, not a folder"),
    Case("emit-line-map-slash", f"{OUT} {{c}}/m.py --line-map {{c}}/map.json/", 2, "give a file name, not a folder"),
    Case("schema-o-slash", "schema -o {c}/new/", 2, "give a file name, not a folder"),
    Case("export-o-slash", "export tiny.yaml -o {c}/m.onnx/", 2, "give a file name, not a folder"),
    Case("emit-o-missing-parent", f"{OUT} {{c}}/new/x.py", 2, "does not exist; create it first"),
    # A pipe, not /dev/null: code that wrongly replaces a special file (as the atomic writer once
    # did, run as root) must not take the machine's /dev/null with it.
    Case("emit-o-pipe", f"{OUT} {{c}}/pipe", 2, "not a regular file", lambda d: os.mkfifo(d / "pipe")),
    Case("emit-o-under-file", f"{OUT} {{c}}/f/x.py", 2, "the folder c/emit-o-under-file/f is not a folder", write("f", "a file")),
    Case("emit-line-map-folder", f"{OUT} {{c}}/m.py --line-map {{c}}/out", 2, "--line-map", mkdir("out")),
    Case("emit-line-map-same-file", f"{OUT} {{c}}/m.py --line-map {{c}}/m.py", 2, "both name"),
    # an output that would replace what the command reads: the spec, the checkpoint, the run
    Case("emit-o-the-spec", "emit {c}/v.yaml -o {c}/v.yaml", 2, "this command reads", write("v.yaml", TINY_SPEC)),
    Case("emit-line-map-the-spec", "emit {c}/v.yaml -o {c}/m.py --line-map {c}/v.yaml", 2, "this command reads", write("v.yaml", TINY_SPEC)),
    Case("export-o-the-checkpoint", "export tiny.yaml -o {run}/checkpoints/last/model.safetensors --checkpoint {run}", 2, "this command reads"),
    Case("compare-plot-over-the-run", "compare {run} --plot {run}/curves.png", 2, "this command reads"),
    Case("compare-plot-over-another-run", "compare {run} --plot {c}/other/curves.png", 2, "is a file of the training run",
         lambda d: shutil.copytree(d / "run", d / "other", symlinks=True)),
    Case("render-o-folder", "render tiny.yaml -o {c}/d.svg", 2, "is a folder", mkdir("d.svg")),
    Case("render-o-proc", "render tiny.yaml -o /proc/nope/x.svg", 2, "does not exist"),
    Case("render-o-extension", "render tiny.yaml -o {c}/x.gif", 2, "cannot tell the format"),
    Case("render-input-zero", "render --block residual --input 0,0,0 -o {c}/x.dot", 2, "--input"),
    Case("render-input-past-2-53", "render --block conv --input 3,9007199254740993,8 -o {c}/x.dot", 2, "a size is too large"),
    Case("render-depth-negative", "render tiny.yaml --expand --depth -1 -o {c}/x.dot", 2, "argument --depth"),
    # flags are never abbreviated: a prefix of a flag is an error, not that flag
    Case("emit-abbreviated-flag", "emit tiny.yaml --out {c}/x.py", 2, "unrecognized arguments: --out"),
    Case("schema-o-folder", "schema -o {c}", 2, "is a folder"),
    Case("schema-o-proc", "schema -o /proc/nope/s.json", 2, "does not exist"),
    Case("export-o-folder", "export tiny.yaml -o {c}/out", 2, "is a folder", mkdir("out")),
    Case("export-o-proc", "export tiny.yaml -o /proc/nope/m.onnx", 2, "does not exist"),
    Case("compare-plot-folder", "compare {run} --plot {c}/p.png", 2, "is a folder", mkdir("p.png")),
    Case("compare-plot-proc", "compare {run} --plot /proc/nope/p.png", 2, "does not exist"),
    Case("compare-plot-extension", "compare {run} --plot {c}/p.gif", 2, "must end in .png"),
    Case("train-out-file", f"train tiny.yaml --data {DATA} --out {{c}}/f", 2, "is a file, not a folder", write("f", "x")),
    Case("train-no-weights", "train {c}/w.yaml --data synthetic:train=16,val=16 --resize --out {c}/r", 1, "has no weights to train (0 parameters)",
         write("w.yaml", "archc: 1\nname: w\ninput: [3, 4, 10]\nnodes:\n  pool: {type: adaptive_avgpool, size: [1, 10]}\n  f: {type: flatten}\n")),
    Case("train-out-proc", f"train tiny.yaml --data {DATA} --out /proc/bad_run", 2, "cannot write in /proc"),
    Case("train-out-under-file", f"train tiny.yaml --data {DATA} --out {{c}}/f/run", 2, "is a file", write("f", "x")),
    Case("bench-save-proc", "bench tiny.yaml --iters 1 --warmup 0 --save /proc/nope/b.json", 2, "does not exist"),
    Case("bench-save-folder", "bench tiny.yaml --iters 1 --warmup 0 --save {c}/b.json", 2, "is a folder", mkdir("b.json")),
    Case("bench-results-dir-proc", "bench tiny.yaml --iters 1 --warmup 0 --save x --results-dir /proc/nope", 2, "cannot write in /proc"),
    Case("bench-results-dir-file", "bench tiny.yaml --iters 1 --warmup 0 --save x --results-dir {c}/f", 2, "is a file", write("f", "x")),
    Case("bench-compare-unknown", "bench tiny.yaml --iters 1 --warmup 0 --compare nosuch --results-dir {c}", 1, "no saved benchmark"),
    Case("bench-compare-garbage", "bench tiny.yaml --iters 1 --warmup 0 --compare {c}/b.json", 1, "cannot read", write("b.json", "{nope")),
    Case("bench-compare-not-bench", "bench tiny.yaml --iters 1 --warmup 0 --compare {c}/b.json", 1, "not an archc-bench result",
         write("b.json", '{"kind": "other"}')),
    Case("bench-compare-bad-rows", "bench tiny.yaml --iters 1 --warmup 0 --compare {c}/b.json", 1, "not a benchmark result",
         write("b.json", '{"kind": "archc-bench", "rows": [1, 2]}')),
    Case("bench-compare-folder", "bench tiny.yaml --iters 1 --warmup 0 --compare {c}/b.json", 2, "is a folder", mkdir("b.json")),
    Case("train-cache-dir-file", f"train tiny.yaml --data {DATA} --cache-dir {{c}}/f --out {{c}}/r", 2, "--cache-dir", write("f", "x")),
    Case("eval-cache-dir-proc", "eval tiny.yaml --checkpoint {run} --cache-dir /proc/nope", 2, "cannot write in /proc"),
    Case("data-prepare-cache-dir-file", "data prepare data/folder --cache-dir {c}/f", 2, "is a file", write("f", "x")),
    Case("data-download-to-file", "data download tiny-imagenet --to {c}/f --url file:///nonexistent.zip", 2, "is a file", write("f", "x")),
    # ---- numbers and flags: argparse, exit 2
    Case("train-seed-huge", "train tiny.yaml --seed 99999999999999999999999", 2, "argument --seed"),
    Case("train-seed-negative", "train tiny.yaml --seed -1", 2, "argument --seed"),
    Case("train-lr-nan", "train tiny.yaml --lr nan", 2, "argument --lr"),
    Case("train-lr-zero", "train tiny.yaml --lr 0", 2, "argument --lr"),
    Case("train-lr-negative-exponent", "train tiny.yaml --lr -1e-3", 2, "wants a finite number above 0, not -1e-3"),
    Case("train-lr-minus-inf", "train tiny.yaml --lr -inf", 2, "wants a finite number above 0, not -inf"),
    Case("train-epochs-zero", "train tiny.yaml --epochs 0", 2, "argument --epochs"),
    Case("train-batch-huge", "train tiny.yaml --batch-size 1e9", 2, "argument --batch-size"),
    Case("train-max-steps-zero", "train tiny.yaml --max-steps 0", 2, "argument --max-steps"),
    Case("train-checkpoint-every-negative", "train tiny.yaml --checkpoint-every -5", 2, "argument --checkpoint-every"),
    Case("train-nproc-zero", "train tiny.yaml --nproc 0", 2, "argument --nproc"),
    Case("train-unknown-flag", "train tiny.yaml --epochz 3", 2, "unrecognized arguments"),
    Case("eval-batch-zero", "eval tiny.yaml --checkpoint {run} --batch-size 0", 2, "argument --batch-size"),
    Case("bench-batch-zero", "bench tiny.yaml --batch-size 0", 2, "--batch-size takes positive integers"),
    Case("bench-batch-beyond-memory", "bench tiny.yaml --batch-size 99999999", 2, "is predicted to need"),
    Case("bench-threshold-nan", "bench tiny.yaml --threshold nan", 2, "argument --threshold"),
    Case("bench-threshold-one", "bench tiny.yaml --threshold 1", 2, "--threshold is a fraction"),
    Case("bench-iters-zero", "bench tiny.yaml --iters 0", 2, "argument --iters"),
    Case("bench-warmup-negative", "bench tiny.yaml --warmup -1", 2, "argument --warmup"),
    Case("bench-threads-zero", "bench tiny.yaml --threads 0", 2, "argument --threads"),
    Case("check-depth-negative", "check tiny.yaml --expand --depth -2", 2, "argument --depth"),
    Case("export-opset-zero", "export tiny.yaml -o {c}/m.onnx --opset 0", 2, "argument --opset"),
    Case("export-opset-999", "export tiny.yaml -o {c}/m.onnx --opset 999", 2, "exports opsets 18 to"),
    Case("export-opset-17", "export tiny.yaml -o {c}/m.onnx --opset 17", 2, "exports opsets 18 to"),
    Case("unknown-command", "trian tiny.yaml", 2, "did you mean 'train'", lines=None),
    Case("data-no-command", "data", 2, "required"),
    # ---- data specs and datasets
    Case("train-data-unknown-scheme", "train tiny.yaml --data foo:bar --out {c}/r", 2, "unknown kind of dataset 'foo'"),
    Case("eval-data-unknown-scheme", "eval tiny.yaml --checkpoint {run} --data foo:bar", 2, "unknown kind of dataset 'foo'"),
    Case("data-info-unknown-scheme", "data info foo:bar", 2, "unknown kind of dataset 'foo'"),
    Case("train-data-missing", "train tiny.yaml --data {c}/nosuch --out {c}/r", 1, "no such dataset directory"),
    Case("train-data-layout-empty", "train tiny.yaml --data tiny-imagenet: --out {c}/r", 2, "names no folder"),
    Case("train-synthetic-bad-option", "train tiny.yaml --data synthetic:train=abc --out {c}/r", 2, "wants a number"),
    Case("train-data-mismatch", f"train five.yaml --data {DATA} --num-classes 5 --out {{c}}/r", 1, "--num-classes is 5 but the data has 10 classes"),
    Case("data-info-duplicate-wnid", "data info {c}/ti", 1, "lists n01 more than once", tiny_imagenet(add_line("wnids.txt", "n01\n"))),
    Case("data-info-val-relabelled", "data info {c}/ti", 1, "val_0.JPEG is annotated as n02, but line 1 labels it n01",
         tiny_imagenet(add_line("val/val_annotations.txt", "val_0.JPEG\tn02\t0\t0\t63\t63\n"))),
    Case("data-info-val-twice", "data info {c}/ti", 1, "annotated again", tiny_imagenet(add_line("val/val_annotations.txt", "val_0.JPEG\tn01\t0\t0\t63\t63\n"))),
    Case("data-info-bad-jpeg", "data info {c}/ti", 1, "not a readable image", tiny_imagenet(bad_jpeg)),
    Case("data-info-not-utf8", "data info {c}/ti", 1, "not UTF-8", tiny_imagenet(lambda r: (r / "wnids.txt").write_bytes(b"\xff\xfe"))),
    # ---- run directories, as compare reads them
    Case("compare-summary-list", "compare {run}", 1, "holds a JSON list, not an object", write("run/summary.json", "[1, 2]")),
    Case("compare-summary-string", "compare {run}", 1, "'params' is 'many', not a number", summary_field("params", "many")),
    Case("compare-summary-infinite", "compare {run}", 1, "'wall_time_s' is inf", write("run/summary.json", '{"wall_time_s": Infinity}')),
    Case("compare-summary-not-json", "compare {run}", 1, "is not readable JSON", write("run/summary.json", "{")),
    Case("compare-summary-binary", "compare {run}", 1, "is not readable JSON", write("run/summary.json", b"\xff\x00")),
    Case("compare-metrics-string", "compare {run}", 1, "'val_acc' is 'high'", metrics_row("val_acc", "high")),
    Case("compare-metrics-epoch", "compare {run}", 1, "'epoch' is 1.5", metrics_row("epoch", 1.5)),
    Case("compare-metrics-binary", "compare {run}", 1, "unreadable", write("run/metrics.jsonl", b"\xff\xfe\x00")),
    Case("compare-not-a-run", "compare {c}/empty", 1, "is not a training run", mkdir("empty")),
    Case("compare-missing", "compare {c}/nosuch", 1, "no such run directory"),
    Case("compare-run-twice", "compare {run} {run}/.", 2, "given twice"),
    # ---- checkpoints: eval, export and resume
    Case("eval-garbled-weights", "eval tiny.yaml --checkpoint {run}", 1, "holds NaN or infinite values", garble_weights),
    Case("export-garbled-weights", "export tiny.yaml -o {c}/m.onnx --checkpoint {run}", 1, "holds NaN or infinite values", garble_weights),
    Case("eval-flipped-weights", "eval tiny.yaml --checkpoint {run}", 1, "SHA-256 mismatch", lambda d: garble_weights(d, b"\x01")),
    Case("resume-flipped-state", "train tiny.yaml --out {run} --resume", 1, "SHA-256 mismatch", flip_state),
    Case("resume-truncated-state", "train tiny.yaml --out {run} --resume", 1, "failed finding central directory",
         lambda d: ((d / "run/checkpoints/last").resolve() / "state.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 100)),
    Case("eval-other-model", "eval wide.yaml --checkpoint {run}", 1, "it holds a tiny model, not wide; its spec is /"),
    Case("eval-other-classes", "eval tiny.yaml --checkpoint {run} --data data/folder", 1, "was trained on 10 classes", lines=5),  # 4 decoding lines first
    Case("export-other-model", "export wide.yaml -o {c}/m.onnx --checkpoint {run}", 1, "it holds a tiny model, not wide"),
    Case("predict-other-model", "predict wide.yaml --checkpoint {run} data/folder", 1, "it holds a tiny model, not wide"),
    Case("export-checkpoint-missing", "export tiny.yaml -o {c}/m.onnx --checkpoint {c}/nosuch", 1, "no such checkpoint"),
    Case("eval-checkpoint-missing", "eval tiny.yaml --checkpoint {c}/nosuch", 1, "no such checkpoint"),
    Case("predict-a-device", "predict tiny.yaml --checkpoint {run} /dev/null", 1, "not an image file or a folder"),
    Case("predict-missing", "predict tiny.yaml --checkpoint {run} {c}/nosuch.png", 1, "no such file or folder"),
    Case("resume-hostile-state", "train tiny.yaml --out {run} --resume", 1, "holds objects other than tensors", hostile_state),
    Case("resume-garbage-state", "train tiny.yaml --out {run} --resume", 1, "state.pt is corrupt",
         lambda d: ((d / "run/checkpoints/last").resolve() / "state.pt").write_bytes(b"PK\x03\x04 garbage")),
    Case("resume-meta-other-model", "train tiny.yaml --out {run} --resume", 1, "belongs to another run", meta_field("model", "wide")),
    Case("resume-meta-other-step", "train tiny.yaml --out {run} --resume", 1, "from different checkpoints", meta_field("step", 2000)),
    Case("resume-meta-other-seed", "train tiny.yaml --out {run} --resume", 1, "has seed 7 but this run has 0", meta_config("seed", 7)),
    Case("resume-config-list", "train tiny.yaml --out {run} --resume", 1, "holds a JSON list", write("run/config.json", "[]")),
    Case("resume-config-wrong-type", "train tiny.yaml --out {run} --resume", 1, "is not a config archc wrote",
         edit_json("run/config.json", lambda c: {**c, "epochs": "two"})),
    Case("resume-no-checkpoint", "train tiny.yaml --out {c}/empty --resume", 1, "no config.json", mkdir("empty")),
    Case("resume-before-the-first-checkpoint-beside-other-files", "train tiny.yaml --out {run} --resume", 1, "also holds notes.txt",
         lambda d: (shutil.rmtree(d / "run" / "checkpoints"), (d / "run" / "notes.txt").write_text("mine"))),
    Case("resume-changed-flag", "train tiny.yaml --out {run} --resume --lr 0.5", 2, "--lr cannot change"),
    Case("train-over-a-run", f"train tiny.yaml --data {DATA} --out {{run}}", 2, "already holds a run; add --resume"),
    # ---- not errors, but they must not touch the run: a resume with nothing left to do
    Case("resume-at-max-steps", "train tiny.yaml --out {run} --resume --max-steps 3", 0, "nothing to train", lines=None),
    Case("data-info-skip-corrupt", "data info {c}/ti --skip-corrupt", 0, "", tiny_imagenet(bad_jpeg), lines=0),
]


# Commands that must work, run in the same process after the corpus (ids, argv as above).
# A run on a folder dataset with its own --cache-dir, resumed with neither --data nor --cache-dir
# while ARCHC_CACHE_DIR points elsewhere; an export given a run directory as --checkpoint.
FOLDER_RUN = "--out {c}/run --batch-size 8 --epochs 2 --no-progress"
GOOD = [
    ("train-with-cache-dir", f"train tiny.yaml --data data/folder --cache-dir {{c}}/cache --max-steps 1 {FOLDER_RUN}"),
    ("resume-keeps-cache-dir", f"train tiny.yaml --resume --max-steps 2 {FOLDER_RUN}"),
    ("export-run-dir", "export tiny.yaml -o {c}/m.onnx --checkpoint runs/tiny"),
]


@pytest.fixture(scope="module")
def results(corpus_base) -> dict[str, tuple[Case, dict]]:
    cases = []
    for case in CASES:
        folder = corpus_base / "c" / case.id
        folder.mkdir(parents=True)
        if "{run}" in case.argv:
            shutil.copytree(corpus_base / "runs" / "tiny", folder / "run", symlinks=True)
        if case.prepare:
            case.prepare(folder)
        argv = case.argv.replace("{run}", f"c/{case.id}/run").replace("{c}", f"c/{case.id}").split(" ")
        cases.append({"argv": argv, "cwd": str(corpus_base), "watch": ["runs", f"c/{case.id}"]})
    good = corpus_base / "c" / "good"
    env = {"ARCHC_CACHE_DIR": str(good / "default-cache")}
    cases += [{"argv": argv.replace("{c}", "c/good").split(" "), "cwd": str(corpus_base), "env": env} for _, argv in GOOD]
    out = run_driver(cases, corpus_base)
    return {case.id: (case, result) for case, result in zip(CASES, out)} | {id_: (None, r) for (id_, _), r in zip(GOOD, out[len(CASES):])}


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(results, case_id):
    case, r = results[case_id]
    err = r["err"]
    assert r["code"] == case.code, f"exit {r['code']}, wanted {case.code}\nstderr: {err}"
    assert "Traceback" not in err and "internal error" not in err
    assert "Warning" not in err and "warn(" not in err, err  # no library warning leaks through
    assert "weights_only" not in err  # torch's advice to unpickle anything is never passed on
    assert r["changed"] == [], f"changed: {r['changed']}"
    lines = [line for line in err.splitlines() if line.strip()]
    if case.lines is not None:
        assert len(lines) == case.lines, err
    assert case.says in err, err
    if case.code:
        errors = [line for line in lines if "error:" in line]
        assert len(errors) == 1 and case.says in errors[0], err
        assert r["out"] == "", r["out"]  # no half-done work was reported either


def test_skip_corrupt_counts_around_the_bad_image(results):
    _, r = results["data-info-skip-corrupt"]
    assert "skipped          1 unreadable images" in r["out"] and "n01_0.JPEG" in r["out"]
    assert "train            7 images" in r["out"]  # 8 listed, 1 left out


def test_a_resume_reads_the_data_the_run_started_with(results, corpus_base):
    _, first = results["train-with-cache-dir"]
    _, resumed = results["resume-keeps-cache-dir"]
    assert first["code"] == 0 and resumed["code"] == 0, first["err"] + resumed["err"]
    good = corpus_base / "c" / "good"
    assert f"resuming with the run's data: {corpus_base / 'data' / 'folder'}, cache {good / 'cache'}" in resumed["err"]  # recorded absolute
    assert "resumed c/good/run at step 1" in resumed["out"]
    assert not (good / "default-cache").exists()  # no second decode into the default place
    assert len(list((good / "cache").iterdir())) == 1


def test_export_takes_a_run_directory_as_eval_does(results, corpus_base):
    _, r = results["export-run-dir"]
    assert r["code"] == 0, r["err"]
    assert "onnxruntime matches PyTorch" in r["err"] and (corpus_base / "c" / "good" / "m.onnx").stat().st_size > 0
    assert "Warning" not in r["err"] and "Traceback" not in r["err"]
