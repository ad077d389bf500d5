"""runtime.allocator: after keep_freed_memory(), big CPU tensors reuse pages instead of faulting in new ones.

Each case runs in a fresh interpreter, so malloc's settings here stay as they were.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")

PROBE = """
import json, resource, sys
import torch
from runtime import allocator

def faults(n=10):
    # 32 MiB tensors, as big as the activations of a training step; each is filled, then freed.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.ones(8 * 1024 * 1024)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults(10)
default = faults()
state = allocator.keep_freed_memory()
faults(20)  # the heap settles within a few rounds
kept = faults()
print(json.dumps({"default": default, "kept": kept, "state": state, "again": allocator.keep_freed_memory(),
                  "describe": allocator.describe(), "released": allocator.release_freed_memory()}))
"""


def probe(**env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kept_memory_stops_the_page_faults():
    r = probe(ARCHC_MALLOC="")
    if "not glibc" in r["state"]:
        pytest.skip(r["state"])
    assert r["state"].startswith("glibc ") and "keeping freed memory" in r["state"]
    assert r["again"] == r["state"] == r["describe"]  # configured once, reported the same everywhere
    # Default malloc maps and unmaps each 32 MiB block: 8,192 fresh pages a tensor.
    assert r["default"] > 10 * 4000
    assert r["kept"] < r["default"] / 20
    assert r["released"] is True


def test_archc_malloc_system_leaves_malloc_alone():
    r = probe(ARCHC_MALLOC="system")
    assert r["state"] == "system malloc as configured (ARCHC_MALLOC=system)"
    assert r["kept"] > 10 * 4000  # still faulting: nothing was changed
