"""Shared test helpers: where the specs and the real data sample are."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAPER_SPECS = ["no_attention", "attn_simple", "attn_reduction", "no_attention_extra"]
ALL_SPECS = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("specs/*.yaml"), *ROOT.glob("specs/examples/*.yaml")])


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
