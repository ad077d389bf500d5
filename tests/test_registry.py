"""Every registered block type, tested the same way (after timm's test_models.py): it is
documented and has an example that checks. (tests/test_compiler_core.py builds each block's
example and compares the emitted module's shapes, parameters and FLOPs with the analysis.)"""
from __future__ import annotations

import pytest

import archcompiler.driver
from archcompiler.blocks.conv import Conv
from archcompiler.blocks.registry import FAMILIES, Registry, RegistryError
from archcompiler.driver import builtin_registry
from archcompiler.tools.blockdocs import render as render_block_docs

REGISTRY = builtin_registry()
BLOCKS = [b.name for b in REGISTRY]


@pytest.mark.parametrize("name", BLOCKS)
def test_block_is_documented(name):
    block = REGISTRY.get(name)
    assert block.family in FAMILIES
    assert block.summary and not block.summary.startswith("composite block")
    for param, frag in block.params.items():
        assert frag.get("description"), f"{name}.{param} has no description"
    assert f"### `{name}`" in render_block_docs()


def test_duplicate_registration_is_an_error():
    reg = Registry()
    reg.register(Conv())
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register(Conv())


def test_a_spec_can_not_redefine_a_built_in_block():
    text = "archc: 1\nname: probe\ninput: [3, 8, 8]\nblocks:\n  residual:\n    nodes:\n      c: {type: conv}\nnodes:\n  a: {type: conv}\n"
    result = archcompiler.driver.check_text(text, "x.yaml")
    assert [d.code for d in result.diagnostics] == ["E207"]
