"""The model zoo in specs/examples/ equals torchvision, numerically.

For each spec, torchvision's model is built and its weights (by key where the names match,
else in order) are loaded into the emitted module. Then: parameter counts equal; at the spec's
input size FlopCounterMode counts the same FLOPs on both models and the analysis predicts them;
and at two odd sizes the FLOPs agree again and eval-mode outputs agree within 1e-4 relative. Batch norm
statistics are randomised and the weights re-initialised so that features do not vanish:
torchvision's default init would let some models' logits collapse to the classifier's bias,
which would hide any difference before it.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archcompiler
from tests.conftest import ROOT

tv = pytest.importorskip("torchvision")

from archcompiler.tools.zoo import SLOW, ZOO, table  # noqa: E402  (after torchvision's skip)


def lively(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights that keep activations alive through depth, and non-trivial batch-norm statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        for name, p in model.named_parameters():  # ConvNeXt's 1e-6 layer scale would mute every block
            if name.endswith("layer_scale"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.25)
    return model.eval()


def load(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """torchvision's weights into ours: by key where every key matches, else in order. In
    order, two things differ from torchvision's layout, and only in ConvNeXt: its blocks
    register `layer_scale` before their layers (here it is a node after them), and its MLP is
    nn.Linear on channels-last maps, whose (out, in) weight is our 1x1 conv's (out, in, 1, 1)."""
    a, b = ours.state_dict(), theirs.state_dict()
    if set(a) == set(b):
        ours.load_state_dict(b)
        return
    keys = list(b)
    for k in [k for k in keys if k.endswith(".layer_scale")]:
        block = k.removesuffix("layer_scale")
        keys.remove(k)
        keys.insert(max(i for i, j in enumerate(keys) if j.startswith(block)) + 1, k)
    values = [b[k] for k in keys]
    assert len(a) == len(values) and all(x.numel() == y.numel() and (x.shape == y.shape or x.squeeze().shape == y.squeeze().shape) for x, y in zip(a.values(), values))
    ours.load_state_dict({k: v.reshape(a[k].shape) for k, v in zip(a, values)})


def run_counted(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        return model(x), counter.get_total_flops()


# Outputs are compared at two odd sizes, where a padding or pooling rule that differs (ceil
# against floor, "same" padding's extra pixel) changes the shape or the values; the FLOPs at the
# spec's own input size are counted on the meta device, which runs no arithmetic.
SIZES = ((97, 97), (129, 113))


@pytest.mark.parametrize("spec", [pytest.param(s, marks=[pytest.mark.slow] * (s in SLOW)) for s in sorted(ZOO)])
def test_zoo_model_equals_torchvision(spec):
    net = archcompiler.compile(ROOT / "specs" / "examples" / f"{spec}.yaml")
    name, kwargs, _ = ZOO[spec]
    theirs = lively(getattr(tv.models, name)(**kwargs))
    ours = net.module(seed=0).eval()
    load(ours, theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == net.totals["params"]
    x = torch.empty(1, *net.input_shape, device="meta")
    (_, fa), (_, fb) = run_counted(copy.deepcopy(ours).to("meta"), x), run_counted(copy.deepcopy(theirs).to("meta"), x)
    assert fa == fb == net.totals["flops"]
    for size in SIZES:
        x = torch.randn(1, net.input_shape[0], *size, generator=torch.Generator().manual_seed(1))
        (a, fa), (b, fb) = run_counted(ours, x), run_counted(theirs, x)
        assert fa == fb and a.shape == b.shape
        assert b.std() > 1e-3  # the check below is not vacuous
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


@pytest.mark.parametrize("spec", sorted(ZOO))
def test_zoo_source_has_one_class_per_block_kind(spec):
    """As torchvision writes one Bottleneck: variants that differ in optional nodes share a
    class whose constructor decides which modules exist."""
    import re

    net = archcompiler.compile(ROOT / "specs" / "examples" / f"{spec}.yaml")
    from archcompiler.backends.torch_source import _helpers

    helpers = set(_helpers(net.result.registry))  # LayerNorm2d, DropPath & co., written once when used
    classes = [c for c in re.findall(r"^class (\w+)\(", net.source, flags=re.M) if c not in helpers]
    assert len(classes) == len(_block_types(net.graph)) + 1, classes  # one per composite type, and the model
    assert not any(re.search(r"\d$", c) and c.rstrip("0123456789") in classes for c in classes), classes


def _block_types(graph) -> set:
    return {node.type for _, node in graph.walk() if node.kind == "composite"}


def test_unet_equals_a_hand_written_one():
    """The U-Net's decoder stage is one block with a named second input (the skip)."""
    from tests.unet_reference import UNet

    net = archcompiler.compile(ROOT / "specs" / "examples" / "unet.yaml")
    theirs = lively(UNet())
    ours = net.module(seed=0).eval()
    load(ours, theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == net.totals["params"]
    for size in ((128, 128), (160, 160)):
        x = torch.randn(1, 1, *size, generator=torch.Generator().manual_seed(1))
        (a, fa), (b, fb) = run_counted(ours, x), run_counted(theirs, x)
        assert a.shape == b.shape == (1, 2, *size) and fa == fb
        if size == (128, 128):
            assert fa == net.totals["flops"]
        assert b.std() > 1e-3
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def fpn_pair(net):
    """(ours, torchvision's, our key -> theirs): the emitted resnet18_fpn module with the weights of
    torchvision's resnet_fpn_backbone, whose FPN keeps ModuleLists and whose projection is `downsample`."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    theirs = lively(resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5, returned_layers=[1, 2, 3, 4]))
    ours = net.module(seed=0).eval()
    b = theirs.state_dict()
    mapped = {}
    for k in ours.state_dict():
        if k.startswith("body.") and not k.endswith("num_batches_tracked"):  # FrozenBatchNorm2d counts nothing
            mapped[k] = k.replace("down_conv", "downsample.0").replace("down_bn", "downsample.1")
        elif k.startswith(("fpn.inner", "fpn.layer")):
            kind, level, tensor = k[4:9], int(k[9]), k.rsplit(".", 1)[1]
            mapped[k] = f"fpn.{kind}_blocks.{level - 2}.0.{tensor}"
    assert set(mapped.values()) == set(b)
    ours.load_state_dict({k: b[v] for k, v in mapped.items()}, strict=False)
    return ours, theirs, mapped


def test_resnet18_fpn_levels_equal_torchvisions():
    """Blocks with several outputs: the trunk returns C2..C5 and the pyramid P2..P5 and
    "pool", each level equal to torchvision's BackboneWithFPN (resnet_fpn_backbone), at odd
    sizes where the top-down path upsamples to a lateral's size rather than by 2."""
    net = archcompiler.compile(ROOT / "specs" / "examples" / "resnet18_fpn.yaml")
    ours, theirs, mapped = fpn_pair(net)
    b = theirs.state_dict()
    head = net.graph.nodes["fc"].meta["params"]
    weights = sum(b[v].numel() for v in mapped.values() if not v.endswith(("running_mean", "running_var")))  # frozen BN's are buffers
    assert sum(p.numel() for p in ours.parameters()) - head == weights == net.totals["params"] - head
    for size in SIZES:
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            levels = ours.fpn(*ours.body(x))
            expected = theirs(x)
        assert list(expected) == ["0", "1", "2", "3", "pool"] and len(levels) == 5
        for a, (name, e) in zip(levels, expected.items()):
            assert a.shape == e.shape and e.std() > 1e-3, name
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())
    x = torch.empty(1, *net.input_shape, device="meta")
    _, flops = run_counted(copy.deepcopy(theirs).to("meta"), x)
    assert flops == net.graph.nodes["body"].meta["flops"] + net.graph.nodes["fpn"].meta["flops"]


def test_a_model_returning_the_pyramid_equals_torchvisions_backbone():
    """A model with several outputs: resnet18_fpn without its classifier returns P2..P6 as a
    tuple, each equal to what torchvision's BackboneWithFPN returns in its OrderedDict, and
    check reports their shapes in order."""
    text = (ROOT / "specs" / "examples" / "resnet18_fpn.yaml").read_text()
    text = text[:text.index("  g2: {type: global_avgpool")] + "output: [p2, p3, p4, p5, p6]\n"
    net = archcompiler.compile(text, file="resnet18_fpn_backbone.yaml")
    ours, theirs, _ = fpn_pair(net)
    x = torch.randn(1, 3, 97, 97, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        levels, expected = ours(x), theirs(x)
    assert isinstance(levels, tuple) and len(levels) == len(expected) == 5
    for a, e in zip(levels, expected.values()):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())
    assert net.graph.results == ["p2", "p3", "p4", "p5", "p6"]
    assert net.output_shapes == [(256, 56, 56), (256, 28, 28), (256, 14, 14), (256, 7, 7), (256, 4, 4)]
    assert "-> tuple[torch.Tensor, ...]:" in net.source and "return p2, p3, p4, p5, x" in net.source  # p6 runs on in x
    _, flops = run_counted(copy.deepcopy(theirs).to("meta"), torch.empty(1, *net.input_shape, device="meta"))
    assert flops == net.totals["flops"]


@pytest.mark.parametrize("width_mult", [0.35, 0.5, 0.75, 1.0, 1.3, 1.4])
def test_width_rules_in_arithmetic_equal_torchvisions_make_divisible(width_mult):
    """MobileNetV2's widths, _make_divisible(c * width_mult, 8) with its "add a divisor if
    rounding lost more than 10%" rule, are computed inside the spec's blocks (int() and a
    conditional value): every multiplier torchvision documents gives its parameter count,
    and at 0.35 its outputs."""
    text = (ROOT / "tests" / "specs" / "mobilenet_v2_width.yaml").read_text()
    net = archcompiler.compile(text.replace("wm: 1.0}", f"wm: {width_mult}}}"))
    theirs = tv.models.mobilenet_v2(width_mult=width_mult)
    assert net.totals["params"] == sum(p.numel() for p in theirs.parameters())
    if width_mult == 0.35:
        theirs, ours = lively(theirs), net.module(seed=0).eval()
        load(ours, theirs)
        x = torch.randn(1, 3, *SIZES[0], generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            a, b = ours(x), theirs(x)
        assert b.std() > 1e-3
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_readme_zoo_table_is_current():
    """The README's table is what `python -m archcompiler.tools.zoo` prints now."""
    assert table() in (ROOT / "README.md").read_text(encoding="utf-8"), "run python -m archcompiler.tools.zoo and paste it into README.md"


@pytest.mark.parametrize("spec", ["efficientnet_b0", "convnext_tiny"])
def test_stochastic_depth_schedule_equals_torchvisions(spec):
    """Eval outputs cannot see stochastic depth; the probabilities can be compared directly.
    torchvision gives every block one (used only on a residual block); ours has a drop_path
    node exactly where the block adds its shortcut."""
    name, kwargs, _ = ZOO[spec]
    theirs = [m.p for m in getattr(tv.models, name)(**kwargs).modules() if type(m).__name__ == "StochasticDepth"]
    ours = archcompiler.compile(ROOT / "specs" / "examples" / f"{spec}.yaml").module()
    block = {"efficientnet_b0": "Mbconv", "convnext_tiny": "CnBlock"}[spec]  # the emitted class of its blocks
    mine = [getattr(m.drop, "p", None) for m in ours.modules() if type(m).__name__ == block]
    assert len(mine) == len(theirs)
    assert all(p is None or p == q for p, q in zip(mine, theirs)), list(zip(mine, theirs))
    assert sum(p is not None for p in mine) == (9 if spec == "efficientnet_b0" else 18)
