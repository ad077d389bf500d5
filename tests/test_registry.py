"""Every registered block type, tested the same way (after timm's test_models.py): it
appears in the schema and the docs, and a one-node spec using it compiles to a module whose
parameters, FLOPs and output shape equal the compiler's analysis."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archcompiler
import archcompiler.driver
from archcompiler.blocks.conv import Conv
from archcompiler.blocks.registry import FAMILIES, Registry, RegistryError
from archcompiler.driver import builtin_registry
from archcompiler.tools.blockdocs import render as render_block_docs

REGISTRY = builtin_registry()
BLOCKS = [b.name for b in REGISTRY]

# Values for required parameters, so that each block can be used on its own.
REQUIRED = {"affine": {"out": 10}, "reduction": {"conv_out": 8, "double_out": 8}, "residual_inception": {"reduce": 4}}


def one_node_spec(name: str) -> str:
    block = REGISTRY.get(name)
    params = dict(REQUIRED.get(name, {}))
    if name == "upsample":
        params = {"scale": 2, "mode": "bilinear"}
    args = "".join(f", {k}: {v}" for k, v in params.items())
    if block.arity is None:
        body = f"  a: {{type: conv, out: 8, kernel: 1}}\n  b: {{type: conv, out: 8, kernel: 1, in: input}}\n  node: {{type: {name}, in: [a, b]{args}}}\n"
    elif name == "affine":
        body = f"  pool: {{type: global_avgpool}}\n  node: {{type: {name}{args}}}\n"
    else:
        body = f"  node: {{type: {name}{args}}}\n"
    return f"archc: 1\nname: probe_{name}\ninput: [8, 16, 16]\nnodes:\n{body}"


@pytest.mark.parametrize("name", BLOCKS)
def test_block_is_documented(name):
    block = REGISTRY.get(name)
    assert block.family in FAMILIES
    assert block.summary and not block.summary.startswith("composite block")
    for param, frag in block.params.items():
        assert frag.get("description"), f"{name}.{param} has no description"
    assert f"### `{name}`" in render_block_docs()


@pytest.mark.parametrize("name", BLOCKS)
def test_block_compiles_and_costs_are_exact(name):
    net = archcompiler.compile(one_node_spec(name))
    model = net.module(seed=0).eval()
    assert net.totals["params"] == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, *net.input_shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(x)
    assert tuple(out.shape[1:]) == tuple(net.output_shape)
    assert 2 * net.totals["flops"] == counter.get_total_flops()  # the analysis is per image


def test_duplicate_registration_is_an_error():
    reg = Registry()
    reg.register(Conv())
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register(Conv())


def test_a_spec_can_not_redefine_a_built_in_block():
    text = "archc: 1\nname: probe\ninput: [3, 8, 8]\nblocks:\n  residual:\n    nodes:\n      c: {type: conv}\nnodes:\n  a: {type: conv}\n"
    result = archcompiler.driver.check_text(text, "x.yaml")
    assert [d.code for d in result.diagnostics] == ["E207"]
