"""The GPU programme, one phase per device job: `bench`, `data N`, `train` (bench/gpu/README.md).

    python bench/gpu/run.py bench [--budget S] [--dry-run]
    python bench/gpu/run.py data N [--pack DIR]
    python bench/gpu/run.py train [--budget S] [--dry-run]

Run through bench/gpu/run.sh on the GPU machine (it installs the carried wheels first). Each
phase works in a fixed place that outlives the job while the machine stays warm, $ARCHC_GPU_HOME
(default /tmp/archc-gpu): the unpacked dataset, the decoded cache, inductor's compiled kernels
and the peak. Its results go to $OUT (the device tool's output folder; ./gpu-out elsewhere) in
a few files: the tool brings back at most 8. Its last line of output is one JSON summary.

Every step is a subprocess with a timeout, taken in order of importance while the phase's
budget lasts; a step the budget cannot fit is skipped and named in the summary, so a phase
always ends, and reports, inside the device tool's 10 minutes. `--dry-run` is the same
programme on the CPU with tiny sizes (make gpu-dry-run), so it cannot rot between GPU runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAPER = {"no_attention": 0.480, "attn_simple": 0.467, "attn_reduction": 0.327, "no_attention_extra": 0.482}  # Figure 12
TRAIN_ORDER = ("no_attention", "attn_simple", "no_attention_extra", "attn_reduction")  # the target first, then the cheaper ones
# How the train job runs a spec, in order of preference: (step-name suffix, archc train flags).
TRAIN_WAYS = (("", ["--compile", "--compile-mode", "reduce-overhead"]), ("-default", ["--compile"]), ("-eager", ["--no-compile"]))
WAY_NAMES = {"reduce-overhead": "", "default": "-default", "eager": "-eager"}  # --ways, by name
DEFAULT_WAYS = "reduce-overhead,default,eager"
STAMP_DIR = ".parts"


@dataclass
class Step:
    """One subprocess of a phase: `cost` is the time to keep for it (seconds) before starting it."""

    name: str
    argv: list[str]
    cost: float
    limit: float
    result: str | None = None  # a JSON file the step writes, collected into the phase's results
    graceful: bool = False  # on the deadline, SIGINT first (archc train then saves and exits) instead of SIGKILL
    record: dict = field(default_factory=dict)


class Phase:
    """Runs steps against a deadline, logs everything to $OUT/<name>.log, prints one JSON line at the end."""

    def __init__(self, name: str, args):
        self.name, self.args = name, args
        self.start = time.monotonic()
        self.deadline = self.start + args.budget
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.home = Path(args.home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.log = open(self.out / f"{name}.log", "a")
        self.summary: dict = {"phase": name, "dry_run": bool(getattr(args, "dry_run", False)), "steps": []}

    def say(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f}s] {self.name}: {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, step: Step) -> dict:
        rec = {"step": step.name, "command": shlex.join(step.argv)}
        if self.left() < step.cost:
            rec.update(status="skipped", why=f"{self.left():.0f}s left of the budget, {step.cost:.0f}s needed")
            self.say(f"{step.name}: skipped ({rec['why']})")
            self.summary["steps"].append(rec)
            return rec
        # A graceful stop needs time to save and draw (seconds), so it is asked for earlier.
        limit = max(1.0, min(step.limit, self.left() - (25 if step.graceful else 5)))
        self.say(f"{step.name}: {rec['command']} (limit {limit:.0f}s)")
        self.log.write(f"$ {rec['command']}\n")
        self.log.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(step.argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
            rec["status"] = "ok" if code == 0 else f"exit {code}"
        except subprocess.TimeoutExpired:
            code = self._stop(proc, step.graceful)
            rec["status"] = "stopped at the deadline" + (f" (exit {code})" if code is not None else "")
        rec["seconds"] = round(time.monotonic() - t0, 1)
        rec.update(step.record)
        self.say(f"{step.name}: {rec['status']} in {rec['seconds']}s")
        self.summary["steps"].append(rec)
        return rec

    def _stop(self, proc: subprocess.Popen, graceful: bool) -> int | None:
        # SIGINT lets archc train save a checkpoint, its metrics and curves; then the harder ways.
        for sig, wait in ((signal.SIGINT, 30 if graceful else 0), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if wait == 0:
                continue
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                return proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        return proc.poll()

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(PYTHONUNBUFFERED="1", ARCHC_CACHE=str(self.home / "cache"), ARCHC_CACHE_DIR=str(self.home / "cache" / "data"),
                   TORCHINDUCTOR_CACHE_DIR=str(self.home / "inductor"), MPLBACKEND="Agg")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def finish(self, ok: bool, **extra) -> int:
        self.summary.update(ok=ok, seconds=round(time.monotonic() - self.start, 1), **extra)
        text = json.dumps(self.summary)
        (self.out / f"{self.name}.json").write_text(json.dumps(self.summary, indent=1) + "\n")
        self.log.write(text + "\n")
        self.log.close()
        print(text, flush=True)
        return 0 if ok else 1


def archc(*args: str) -> list[str]:
    return [sys.executable, "-m", "archcompiler", *args]


def spec(name: str) -> str:
    return f"specs/{name}.yaml"


# ---------------------------------------------------------------------------------------- bench

def bench_steps(home: Path, dry: bool) -> list[Step]:
    """The bench phase's steps, most important first (compiling dominates, tens of seconds per
    graph, so the budget may not reach the end): the peak; the headline rows (no_attention
    training, bf16 + channels_last, eager against compiled, batch 256: the 30,000 images/s and
    1.3x targets); the layout, compiled as training runs (its channels_last graph is the
    headline's, from inductor's cache); the CUDA tests; a short synthetic `archc train --device
    cuda` under CUDA graphs at the real 200 classes (compiling first, it leaves the training
    graphs in inductor's cache for the train job even if stopped); batch 32 (launch overhead), then reduce-overhead's CUDA
    graphs against it; inference; an fp32 NCHW baseline; the other three paper specs. A step
    stopped at its limit keeps the groups of rows it finished (`archc bench --save`)."""
    res = home / "results"
    py = sys.executable
    tests = [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests/runtime"]
    peak = [py, "bench/gpu/peak.py", "--out", str(res / "peak.json")] + (["--device", "cpu"] if dry else [])
    synth_data = "synthetic:train=64,val=32" if dry else "synthetic:train=4096,val=1024"
    synth = archc("train", spec("no_attention"), "--data", synth_data, "--num-classes", "200", "--no-progress",
                  "--out", str(home / "runs" / "synthetic"),
                  *(["--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--device", "cpu", "--no-compile", "--channels-last"] if dry else
                    ["--epochs", "1", "--device", "cuda", "--compile", "--compile-mode", "reduce-overhead", "--amp", "bf16", "--channels-last"]))
    layout = [py, "bench/layout.py", "--out", str(res / "layout.json"),
              *(["--device", "cpu", "--batch-size", "4", "--iters", "2", "--warmup", "1"] if dry else
                ["--device", "cuda", "--amp", "bf16", "--batch-size", "256", "--iters", "30", "--compile"])]
    if dry:  # the same commands, on the CPU, a step or two each, nothing compiled
        common = ["--device", "cpu", "--warmup", "1", "--iters", "2", "--batch-size", "4", "-q", "--format", "json", "--compile", "off"]
        runs = [("no_attention-train", [spec("no_attention"), "--mode", "train", "--breakdown"], 15, 120),
                ("no_attention-infer", [spec("no_attention"), "--mode", "infer"], 15, 120)]
    else:
        fast = ["--amp", "bf16", "--channels-last", "--warmup", "3", "--iters", "20", "-q", "--format", "json"]
        common = []
        runs = [  # (tag, arguments, seconds to keep for it, limit)
            ("no_attention-train-bf16-cl-256", [spec("no_attention"), "--mode", "train", "--compile", "both", "--breakdown",
                                                "--batch-size", "256", *fast], 60, 150),
            ("no_attention-train-bf16-cl-32", [spec("no_attention"), "--mode", "train", "--compile", "both", "--batch-size", "32", *fast], 45, 120),
            ("no_attention-train-bf16-cl-reduce-overhead", [spec("no_attention"), "--mode", "train", "--compile", "on",
                                                            "--compile-mode", "reduce-overhead", "--batch-size", "32,256", *fast], 60, 150),
            ("no_attention-infer-bf16-cl", [spec("no_attention"), "--mode", "infer", "--compile", "both", "--batch-size", "32,256", *fast], 45, 150),
            ("no_attention-train-fp32", [spec("no_attention"), "--mode", "train", "--compile", "both", "--batch-size", "256",
                                         "--no-channels-last", "--warmup", "5", "--iters", "30", "-q", "--format", "json"], 60, 150),
            *[(f"{name}-bf16-cl", [spec(name), "--mode", "both", "--compile", "both", "--batch-size", "32,256", *fast], 120, 240)
              for name in ("attn_simple", "no_attention_extra", "attn_reduction")],
        ]
    bench = [Step(f"bench-{tag}", archc("bench", *a, *common, "--save", str(res / f"archc-bench-{tag}.json")), cost, limit,
                  result=str(res / f"archc-bench-{tag}.json")) for tag, a, cost, limit in runs]
    if dry:
        return [Step("peak", peak, 20, 120), bench[0], Step("cuda-tests", tests, 20, 120),  # the GPU's order, below
                Step("synthetic-train", synth, 20, 120, record={"run": str(home / "runs" / "synthetic")}),
                Step("layout", layout, 20, 120, result=str(res / "layout.json")), bench[1]]
    return [Step("peak", peak, 15, 60), bench[0], Step("layout", layout, 45, 120, result=str(res / "layout.json")),
            Step("cuda-tests", tests, 60, 180), Step("synthetic-train", synth, 30, 150, record={"run": str(home / "runs" / "synthetic")}),
            *bench[1:]]


def phase_bench(args) -> int:
    ph = Phase("bench", args)
    ph.summary["environment"] = environment(ph)
    (ph.home / "results").mkdir(parents=True, exist_ok=True)
    for f in (ph.home / "results").glob("*.json"):
        f.unlink()  # results of an earlier bench job on this machine must not pass for this one's
    collected = []
    steps = bench_steps(ph.home, args.dry_run)
    if args.only:  # a later window can take the steps an earlier one's budget did not reach
        wanted = args.only.split(",")
        steps = [s for s in steps if any(s.name.startswith(w) for w in wanted)]
    for step in steps:
        rec = ph.run(step)
        if step.name == "cuda-tests":
            rec["tests"] = pytest_counts(ph.out / "bench.log")
        if step.name == "synthetic-train":
            rec.update(run_summary(Path(step.record["run"])))
        if step.result and Path(step.result).is_file():
            collected.append(Path(step.result))
        if step.name == "peak" and Path(ph.home / "results" / "peak.json").is_file():
            collected.append(ph.home / "results" / "peak.json")
        write_results(ph.out / "bench-results.json", collected)  # after every step: a stopped job keeps what it had
    done = [s for s in ph.summary["steps"] if s["status"] == "ok"]
    return ph.finish(ok=len(done) == len(ph.summary["steps"]), results=[p.name for p in collected],
                     skipped=[s["step"] for s in ph.summary["steps"] if s["status"] == "skipped"])


def environment(ph: Phase) -> dict:
    code = ("import json, platform, torch; c = torch.cuda.is_available(); print(json.dumps({'python': platform.python_version(), "
            "'torch': torch.__version__, 'cuda': torch.version.cuda, 'device': torch.cuda.get_device_name(0) if c else 'cpu', "
            "'gpus': torch.cuda.device_count(), 'capability': list(torch.cuda.get_device_capability(0)) if c else None, "
            "'memory_gib': round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if c else None}))")
    info: dict = {}
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ph.env(), cwd=ROOT)
        info = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr.strip()[-500:]}
    except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
        info = {"error": f"{type(e).__name__}: {e}"}
    missing = []
    for module in ("jsonschema", "graphviz", "yaml", "networkx", "rich", "matplotlib", "safetensors", "PIL", "torchvision", "scipy", "tensorboard"):
        r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, env=ph.env(), cwd=ROOT)
        if r.returncode != 0:
            missing.append(module)
    info["missing_modules"] = missing
    ph.say(f"environment: {json.dumps(info)}")
    return info


def pytest_counts(log: Path) -> str:
    """pytest's last summary line ('5 passed, 1 skipped in 40.2s') from the log."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if (" passed" in ln or " skipped" in ln or " failed" in ln
                                                                         or " error" in ln) and " in " in ln]
    return lines[-1].strip("= ") if lines else "no pytest summary in the log"


def write_results(path: Path, files: list[Path]) -> None:
    """Every results envelope of the job in one file (the tool brings back at most 8):
    {"files": {stem: envelope}}; `python -m runtime.bench.docs --take FILE` files them in bench/results/."""
    bundle = {"kind": "gpu-results", "files": {}}
    for f in files:
        try:
            bundle["files"][f.stem] = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            bundle["files"][f.stem] = {"error": f"{type(e).__name__}: {e}"}
    write_whole(path, lambda tmp: tmp.write_text(json.dumps(bundle, indent=1) + "\n"))


def write_whole(path: Path, write) -> None:
    """`write(tmp)` writes the file beside `path`, which is then renamed into place: a job cut
    short never brings back half a file. (This script imports nothing of archc's.)"""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


# ----------------------------------------------------------------------------------------- data

def read_manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def present_parts(home: Path, manifest: dict) -> list[int]:
    """Parts unpacked here from this very pack (a stamp per part, written after its last file)."""
    stamps = home / "tiny-imagenet-200" / STAMP_DIR
    return [p["part"] for p in manifest["parts"] if (stamps / f"part{p['part']}.{p['sha256']}").is_file()]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def phase_data(args) -> int:
    ph = Phase(f"data{args.part}", args)
    folder = Path(args.pack) / f"part{args.part}"
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        return ph.finish(ok=False, error=f"{folder} is not here: carry it with the job (carry: [\"gpu-pack/part{args.part}\"])")
    manifest = read_manifest(mpath)
    entry = next((p for p in manifest["parts"] if p["part"] == args.part), None)
    if entry is None:
        return ph.finish(ok=False, error=f"the pack has parts 1-{len(manifest['parts'])}, not {args.part}")
    tree = ph.home / "tiny-imagenet-200"
    stamps = tree / STAMP_DIR
    old = sorted(stamps.glob("part*")) if stamps.is_dir() else []
    if any(not s.name.endswith(tuple(p["sha256"] for p in manifest["parts"])) for s in old):
        ph.say(f"{tree} holds parts of another pack; starting afresh")
        subprocess.run(["rm", "-rf", str(tree)], check=True)
    if args.part in present_parts(ph.home, manifest):
        ph.say(f"part {args.part} is already unpacked in {tree}")
    else:
        part = Path(args.pack) / entry["file"]
        digest = file_sha256(part) if part.is_file() else None
        if digest != entry["sha256"]:
            why = "missing" if digest is None else f"sha256 {digest}, expected {entry['sha256']}"
            return ph.finish(ok=False, error=f"{part}: {why}", **parts_report(ph.home, manifest))
        t0 = time.monotonic()
        # GNU tar, not tarfile: 5 s against 40 s for 37,000 small files here. The part is ours
        # (its checksum matched the manifest), so tarfile's member filters have nothing to catch.
        subprocess.run(["tar", "-xzf", str(part), "-C", str(ph.home), "--no-same-owner"], check=True)
        stamps.mkdir(parents=True, exist_ok=True)
        (stamps / "manifest.json").write_text(json.dumps(manifest) + "\n")  # so that `train` needs nothing carried
        (stamps / f"part{args.part}.{entry['sha256']}").write_text(json.dumps(entry) + "\n")
        ph.say(f"part {args.part}: sha256 ok, {entry['files']} files unpacked into {tree} in {time.monotonic() - t0:.1f}s")
    report = parts_report(ph.home, manifest)
    return ph.finish(ok=True, **report)


def parts_report(home: Path, manifest: dict) -> dict:
    have = present_parts(home, manifest)
    return {"pack_id": manifest["pack_id"], "present": have, "missing": [p["part"] for p in manifest["parts"] if p["part"] not in have],
            "where": str(home / "tiny-imagenet-200")}


# ---------------------------------------------------------------------------------------- train

def phase_train(args) -> int:
    ph = Phase("train", args)
    tree = ph.home / "tiny-imagenet-200"
    saved = tree / STAMP_DIR / "manifest.json"
    if not saved.is_file():
        return ph.finish(ok=False, error=f"no part is unpacked in {tree}: the machine is fresh (or was replaced); "
                                         "run `data N` for every part first, in back-to-back jobs", missing="all")
    manifest = read_manifest(saved)
    report = parts_report(ph.home, manifest)
    if report["missing"]:
        return ph.finish(ok=False, error=f"parts {report['missing']} are not unpacked here (a machine replaced between jobs loses them); "
                                         "run `data N` for each, then `train`", **report)
    data = f"tiny-imagenet:{tree}"
    prepare = ph.run(Step("prepare-cache", archc("data", "prepare", str(tree), "--cache-dir", str(ph.home / "cache" / "data")), 30, 240))
    if prepare["status"] != "ok":
        return ph.finish(ok=False, error="decoding the dataset failed (see train.log)", **report)
    runs_dir = ph.home / "runs"
    names = TRAIN_ORDER[:1] if args.dry_run else TRAIN_ORDER
    base = (["--device", "cpu", "--channels-last", "--epochs", "1", "--max-steps", "3", "--batch-size", "8"] if args.dry_run
            else ["--device", "cuda", "--amp", "bf16", "--channels-last", "--epochs", str(args.epochs)])
    # CUDA graphs first: the paper's batch of 32 leaves a compiled step bound by kernel launches,
    # which reduce-overhead removes. A run that fails (not one stopped by the deadline) is run
    # again in the next way, and a way that failed is not tried for the later specs.
    chosen = (args.ways or DEFAULT_WAYS).split(",")
    if args.ways is None and not args.dry_run and not graphs_pay(ph):
        chosen.remove("reduce-overhead")
    by_suffix = dict(TRAIN_WAYS)
    ways = [("", ["--no-compile"])] if args.dry_run else [(WAY_NAMES[w], by_suffix[WAY_NAMES[w]]) for w in chosen]  # in the order given
    for name in names:
        for suffix, flags in list(ways):
            out = runs_dir / f"{name}{suffix}"
            subprocess.run(["rm", "-rf", str(out)], check=True)  # a run of an earlier job on this machine would block --out
            step = Step(f"train-{name}{suffix}", archc("train", spec(name), "--data", data, "--cache-dir", str(ph.home / "cache" / "data"),
                                                        "--out", str(out), "--no-progress", *base, *flags), 60, 10_000, graceful=True)
            rec = ph.run(step)
            rec.update(run_summary(out))
            if rec["status"] != "skipped":
                keep_runs(ph, runs_dir, report)  # after every run: a job cut short still brings back the ones done
            # Done, stopped at the deadline, no time left, or failed after an epoch (a divergence
            # is the recipe's, not the compiler's: another way would only repeat it).
            if not rec["status"].startswith("exit") or rec.get("epochs_completed"):
                break
            ways.remove((suffix, flags))
    trained = [s for s in ph.summary["steps"] if s["step"].startswith("train-") and s.get("steps")]
    return ph.finish(ok=bool(trained), runs=[{k: s.get(k) for k in ("step", "status", "steps", "epochs_completed", "best_val_acc", "wall_time_s")}
                                             for s in ph.summary["steps"] if s["step"].startswith("train-")], **report)


def graphs_pay(ph: Phase) -> bool:
    """Whether CUDA graphs trained faster at batch 32 in this machine's bench job (job 1), when
    its results are still here: the reduce-overhead row against the default compile's. With no
    such figures (a fresh machine), they are tried, and the fallback covers a failure."""
    res = ph.home / "results"
    try:
        graphs = json.loads((res / "archc-bench-no_attention-train-bf16-cl-reduce-overhead.json").read_text())
        plain = json.loads((res / "archc-bench-no_attention-train-bf16-cl-32.json").read_text())
        speed = [next(r["images_per_s"] for r in d["rows"] if r["compiled"] and r["batch_size"] == 32 and isinstance(r.get("images_per_s"), (int, float))
                      and not isinstance(r["images_per_s"], bool) and math.isfinite(r["images_per_s"]) and r["images_per_s"] > 0)
                 for d in (graphs, plain)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        ph.summary["cuda_graphs"] = "no bench figures on this machine: tried first"
        return True
    ph.summary["cuda_graphs"] = f"batch 32: {speed[0]:.0f} images/s under CUDA graphs, {speed[1]:.0f} with the default compile"
    ph.say(f"CUDA graphs: {ph.summary['cuda_graphs']}")
    return speed[0] >= speed[1]


def keep_runs(ph: Phase, runs_dir: Path, report: dict) -> None:
    """$OUT/train-runs.tar.gz (the run directories without their checkpoints: metrics, curves,
    summary) and $OUT/train-results.json, each written whole and then renamed into place."""
    def tarball(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            for run in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
                tar.add(run, arcname=run.name, filter=lambda m: None if "/checkpoints" in m.name or m.name.endswith("checkpoints") else m)

    write_whole(ph.out / "train-runs.tar.gz", tarball)
    write_whole(ph.out / "train-results.json", lambda tmp: tmp.write_text(json.dumps(training_envelope(ph, report), indent=1) + "\n"))


def run_summary(run: Path) -> dict:
    """The numbers of a run directory that the summary line carries."""
    try:
        s = json.loads((run / "summary.json").read_text())
    except (OSError, ValueError):
        return {"run_summary": "none written"}
    rows = []
    try:
        rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    except (OSError, ValueError):
        pass
    speeds = sorted(r["images_per_sec"] for r in rows if not r.get("partial") and r.get("images_per_sec"))
    return {"steps": s.get("steps"), "epochs_completed": s.get("epochs_completed"), "best_val_acc": s.get("best_val_acc"), "final_val_acc": s.get("final_val_acc"),
            "wall_time_s": round(s.get("wall_time_s") or 0, 1), "run_status": s.get("status"), "device_name": s.get("device"),
            "train_images_per_s_median": speeds[len(speeds) // 2] if speeds else None,
            "epoch_seconds": [round(r["epoch_seconds"], 2) for r in rows if "epoch_seconds" in r]}


def training_envelope(ph: Phase, report: dict) -> dict:
    """The training runs as a results envelope (bench/README.md) for docs/benchmarks.md."""
    rows = []
    device = ""
    for s in ph.summary["steps"]:
        if not s["step"].startswith("train-"):
            continue
        name = s["step"][len("train-"):]
        spec_name = name.removesuffix("-default").removesuffix("-eager")
        argv = shlex.split(s["command"])  # how it ran: --compile, and --compile-mode MODE
        mode = argv[argv.index("--compile-mode") + 1] if "--compile-mode" in argv else "default"
        device = s.get("device_name") or device
        rows.append({"spec": name, "compiled": "--compile" in argv, "compile_mode": mode if "--compile" in argv else None,
                     "epochs": s.get("epochs_completed"), "status": s.get("run_status") or s["status"],
                     "best_val_acc": s.get("best_val_acc"), "final_val_acc": s.get("final_val_acc"), "paper_val_acc": PAPER[spec_name],
                     "train_images_per_s": s.get("train_images_per_s_median"), "wall_time_s": s.get("wall_time_s")})
    machine = device.split("(", 1)[1].rstrip(")") if "(" in device else (device or "unknown")
    prep = next((s for s in ph.summary["steps"] if s["step"] == "prepare-cache"), {})
    return {"kind": "gpu-training", "machine": machine, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "torch": torch_version(ph), "device": "cpu" if ph.args.dry_run else "cuda",
            "command": "bench/gpu/run.sh train (archc train SPEC --data tiny-imagenet:DIR --device cuda --amp bf16 --channels-last --compile --compile-mode reduce-overhead)",
            "figures": {"dataset": report["where"], "decode_and_cache_s": prep.get("seconds"), "recipe": "paper (Adam 1e-3, x0.96 per 1000 steps, batch 32)"},
            "rows": rows}


def torch_version(ph: Phase) -> str:
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True, env=ph.env())
    return r.stdout.strip()


# ------------------------------------------------------------------------------------------ cli

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/gpu/run.py", description="One phase of the GPU programme (bench/gpu/README.md).")
    p.add_argument("phase", choices=("bench", "data", "train"))
    p.add_argument("part", nargs="?", type=int, help="data: the part to unpack (1, 2, ...)")
    p.add_argument("--home", default=os.environ.get("ARCHC_GPU_HOME") or "/tmp/archc-gpu", help="where parts, cache and runs live on the machine")
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "gpu-out"), help="results folder (default $OUT)")
    p.add_argument("--pack", default=str(ROOT / "gpu-pack"), help="the carried pack (default gpu-pack/)")
    p.add_argument("--budget", type=float, default=None, help="seconds this phase may take (default: bench 300, train 300)")
    p.add_argument("--epochs", type=int, default=25, help="train: epochs per spec (default 25, the paper's)")
    p.add_argument("--dry-run", action="store_true", help="the same programme on the CPU with tiny sizes")
    p.add_argument("--only", metavar="STEP,...", help="bench: only the steps whose names start so (as bench.json names them)")
    p.add_argument("--ways", default=None, metavar="WAY,...",
                   help="train: the ways to try, in order, each after the last failed (default reduce-overhead,default,eager); "
                        "e.g. default,eager when an earlier window showed CUDA graphs slower")
    args = p.parse_args(argv)
    if args.ways is not None and (any(w not in WAY_NAMES for w in args.ways.split(",")) or len(set(args.ways.split(","))) != len(args.ways.split(","))):
        p.error(f"--ways takes {', '.join(WAY_NAMES)}, comma-separated, not '{args.ways}'")
    if args.budget is None:
        args.budget = {"bench": 300, "train": 300, "data": 120}[args.phase]  # bench/gpu/README.md: the 15-minute plan
    if args.phase == "data":
        if args.part is None or args.part < 1:
            p.error("data needs the part number: data N")
        return phase_data(args)
    return phase_bench(args) if args.phase == "bench" else phase_train(args)


if __name__ == "__main__":
    sys.exit(main())
