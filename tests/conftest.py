"""Shared test helpers: where the specs and the real data sample are."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

# pytest-xdist runs one worker per core (the Makefile's `-n auto`), and each worker's torch would
# start a thread per core as well: on the 2-core machine these oversubscribed OpenMP threads made
# the zoo, memory and paper-model tests 2.7x slower (87 s against 33 s, side by side). So each
# worker, and each process its tests start, gets its share of the cores; a value set by hand wins.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
# A suite started as a background job (`make test &` in a script) inherits SIGINT ignored, and
# so would every process its tests start, which then cannot be interrupted: the tests that
# send Ctrl-C would wait out their timeouts. A handled signal is reset to the default on exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

if _WORKERS > 1 and not os.environ.get("OMP_NUM_THREADS"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(max(1, _cores // _WORKERS))
    if "torch" in sys.modules:  # imported by a plugin before this file: set it there too
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parent.parent
PAPER_SPECS = ["no_attention", "attn_simple", "attn_reduction", "no_attention_extra"]
ALL_SPECS = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("specs/*.yaml"), *ROOT.glob("specs/examples/*.yaml")])
TEST_SPECS = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("tests/specs/*.yaml"))  # small specs of features the zoo shows at full size
# The zoo's models of over 5 GFLOPs at their input size. Each but vgg11_bn (archcompiler.tools.zoo.SLOW)
# is checked against torchvision (or its hand-written reference) in `make test`; the per-spec
# checks that run them again at full size (memory against autograd, a second input size, SVG
# drawings) are slow tests, run by `make test-all`, to keep `make test` near 3 minutes on the
# 2-core CI machine. What those checks cover is also covered by the smaller specs, or below.
HEAVY_SPECS = {"resnet50", "resnext50_32x4d", "densenet121", "convnext_tiny", "efficientnet_v2_s", "inception_v3", "unet", "vgg11_bn",
               "resnet18_fpn"}


def spec_params(specs) -> list:
    """`specs` as pytest parameters, the heavy zoo models marked slow."""
    return [pytest.param(s, marks=pytest.mark.slow) if Path(s).stem in HEAVY_SPECS else s for s in specs]


def spec_path(name: str) -> str:
    return str(ROOT / "specs" / f"{name}.yaml")


def sample_dir() -> Path | None:
    """The Tiny ImageNet sample: $ARCHC_TINY_IMAGENET, else ../shared beside the checkout."""
    env = os.environ.get("ARCHC_TINY_IMAGENET")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "data" / "tiny-imagenet-sample")
    for c in candidates:
        if (c / "wnids.txt").is_file():
            return c
    return None


@pytest.fixture
def tiny_imagenet() -> Path:
    d = sample_dir()
    if d is None:
        pytest.skip("Tiny ImageNet sample not found: set ARCHC_TINY_IMAGENET or place it at ../shared/data/tiny-imagenet-sample")
    return d


@pytest.fixture(autouse=True)
def _run_from_root(monkeypatch):
    """Specs name each other by paths relative to the repository root."""
    monkeypatch.chdir(ROOT)
