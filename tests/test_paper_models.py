"""The four paper specs reproduce the paper: Figure 7's sizes, paper-facts.md's parameter and
FLOP cross-checks, and a hand-written PyTorch model numerically."""
from __future__ import annotations

import pytest
import torch

import archcompiler
from archcompiler.driver import check_file
from tests.conftest import PAPER_SPECS, spec_path
from tests.reference_models import copy_by_order, reference

# paper-facts.md: "Params" and "Forward FLOPs per image", as rounded there.
CROSS_CHECK = {
    "no_attention": ("0.712", "1.085"),
    "attn_simple": ("1.008", "2.482"),
    "attn_reduction": ("3.411", "3.049"),
    "no_attention_extra": ("1.182", "1.086"),
}


def test_figure7_sizes_in_order():
    result = check_file(spec_path("attn_reduction"))
    assert result.ok
    shapes = [tuple(n.shape) for n in result.graph.layers() if n.type != "dropout"]
    assert shapes == [
        (64, 64, 64), (64, 64, 64), (128, 31, 31), (128, 31, 31), (320, 15, 15), (320, 15, 15), (832, 7, 7), (832,), (200,)
    ]
    types = [n.type for n in result.graph.layers()]
    assert types == ["conv", "soft_attention", "reduction", "residual", "reduction", "residual_inception", "reduction",
                     "global_avgpool", "dropout", "affine"]


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_paper_specs_check_clean(name):
    result = check_file(spec_path(name))
    assert result.ok
    assert list(result.diagnostics) == []  # not even a warning


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_cross_checks_of_paper_facts(name):
    totals = check_file(spec_path(name)).totals
    params, flops = CROSS_CHECK[name]
    assert f"{totals['params'] / 1e6:.3f}" == params
    assert f"{totals['flops'] / 1e9:.3f}" == flops


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_analytic_params_equal_hand_written_model(name):
    ref = reference(name)
    assert check_file(spec_path(name)).totals["params"] == sum(p.numel() for p in ref.parameters())


def _pair(name):
    emitted = archcompiler.compile(spec_path(name)).module(seed=0)
    ref = reference(name)
    copy_by_order(ref, emitted)
    return emitted, ref


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_outputs_match_hand_written_model(name):
    emitted, ref = _pair(name)
    emitted.eval(), ref.eval()
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(emitted(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_training_step_gradients_match(name):
    emitted, ref = _pair(name)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 5, 17, 199])
    grads = []
    for model in (emitted, ref):
        model.train()
        torch.manual_seed(3)  # the same dropout mask in both
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        grads.append([p.grad for p in model.parameters()])
    assert len(grads[0]) == len(grads[1])
    for g_emitted, g_ref in zip(*grads):
        torch.testing.assert_close(g_emitted, g_ref, atol=1e-5, rtol=1e-4)
