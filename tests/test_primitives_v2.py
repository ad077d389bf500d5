"""The primitives of spec language v2 (issue 12), where the tests over every block type cannot
see: their values (the generic tests compare shapes, parameter counts and FLOPs), their
training-mode behaviour, and their use inside a composite with `$param` arguments."""
from __future__ import annotations

import ast
import textwrap

import pytest
import torch
import torch.nn.functional as F

from archcompiler.api import Compiled
from archcompiler.driver import check_text
from tests.test_compiler_core import assert_emitted_equals_inferred


def net(nodes: str, input_shape=(8, 9, 10), blocks: str = "") -> Compiled:
    head = f"archc: 1\nname: probe\ninput: [{', '.join(map(str, input_shape))}]\n"
    text = head + textwrap.dedent(blocks) + "nodes:\n" + textwrap.indent(textwrap.dedent(nodes).strip(), "  ") + "\n"
    result = check_text(text, "probe.yaml")
    assert result.ok, [d.concise() for d in result.diagnostics]
    return Compiled(result)


def errors(nodes: str) -> list[str]:
    text = "archc: 1\nname: probe\ninput: [8, 9, 10]\nnodes:\n" + textwrap.indent(textwrap.dedent(nodes).strip(), "  ") + "\n"
    return [d.concise() for d in check_text(text, "probe.yaml").diagnostics]


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def randomise(model):
    """Weights away from their initial ones (ones and zeros would hide a wrong formula)."""
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(randn(*p.shape, seed=100 + i))
    return model


# ---------------------------------------------------------------- normalisation


def test_layernorm_on_a_map_is_convnext_layernorm2d():
    from torchvision.models.convnext import LayerNorm2d

    model = randomise(net("ln: {type: layernorm, eps: 1.0e-6}").module()).eval()
    x = randn(2, 8, 9, 10)
    w, b = model.ln.weight, model.ln.bias
    # ConvNeXt's formula, per pixel over the channels
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    expected = (x - u) / torch.sqrt(s + 1e-6) * w[:, None, None] + b[:, None, None]
    reference = LayerNorm2d(8, eps=1e-6)
    reference.load_state_dict(model.ln.state_dict())
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(y, expected)
        torch.testing.assert_close(y, reference(x), rtol=0, atol=0)
        group = torch.nn.GroupNorm(1, 8, eps=1e-6)
        group.load_state_dict(model.ln.state_dict())
        assert not torch.allclose(y, group(x), atol=1e-3)  # GroupNorm(1, C) also normalises over H x W


def test_layernorm_on_a_vector_and_without_affine():
    compiled = net("pool: {type: global_avgpool}\nln: {type: layernorm, affine: false}")
    model = compiled.module().eval()
    assert compiled.totals["params"] == 0 and not list(model.parameters())
    x = randn(3, 8, 9, 10)
    torch.testing.assert_close(model(x), F.layer_norm(x.mean((2, 3)), (8,)))


def test_groupnorm_normalises_each_group_over_its_channels_and_the_map():
    model = randomise(net("gn: {type: groupnorm, groups: 2, eps: 0.001}").module()).eval()
    x = randn(2, 8, 9, 10)
    g = x.view(2, 2, 4 * 9 * 10)
    expected = ((g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, unbiased=False, keepdim=True) + 1e-3)).view_as(x)
    expected = expected * model.gn.weight[:, None, None] + model.gn.bias[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


def test_groupnorm_groups_must_divide_the_channels():
    assert errors("gn: {type: groupnorm, groups: 3}") == [
        "probe.yaml:5:33: error[E402]: node 'gn' (groupnorm): groups=3 must divide the input channels (8)"
    ]


def test_batchnorm_without_affine_or_running_statistics():
    compiled = net("bn: {type: batchnorm, affine: false, track_running_stats: false, eps: 0.001}")
    model = compiled.module().eval()
    assert compiled.totals["params"] == 0 and not list(model.parameters()) and not list(model.buffers())
    x = randn(4, 8, 9, 10)
    # without running statistics, eval normalises by the batch's own statistics
    mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(model(x), (x - mean) / torch.sqrt(var + 1e-3))


# ---------------------------------------------------------------- activations


@pytest.mark.parametrize("fn, reference", [
    ("hardswish", F.hardswish), ("hardsigmoid", F.hardsigmoid), ("relu6", F.relu6),
    ("gelu", lambda x: F.gelu(x)), ("leaky_relu", lambda x: F.leaky_relu(x, 0.01)),
    ("elu", F.elu), ("selu", F.selu), ("mish", F.mish), ("softplus", F.softplus),
])
def test_each_activation_is_pytorchs(fn, reference):
    x = 4 * randn(2, 8, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(net(f"a: {{type: activation, fn: {fn}}}").module()(x), reference(x), rtol=0, atol=0)


def test_leaky_relu_slope_and_gelu_tanh():
    model = net("a: {type: activation, fn: leaky_relu, negative_slope: 0.2}\n"
                "b: {type: activation, fn: gelu, approximate: tanh}").module()
    assert model.a.negative_slope == 0.2 and model.b.approximate == "tanh"
    x = 4 * randn(2, 8, 9, 10)
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(y, F.gelu(F.leaky_relu(x, 0.2), approximate="tanh"), rtol=0, atol=0)
    assert not torch.equal(y, F.gelu(F.leaky_relu(x, 0.2)))  # the approximation is not the exact gelu


def test_an_option_of_another_function_is_refused_where_it_is_written():
    assert errors("a: {type: activation, fn: relu, negative_slope: 0.2}") == [
        "probe.yaml:5:51: error[E408]: node 'a' (activation): 'negative_slope' applies to fn: leaky_relu, not to fn: relu"
    ]
    assert errors("a: {type: activation, approximate: tanh}")[0].endswith("'approximate' applies to fn: gelu, not to fn: relu")
    assert errors("a: {type: activation, fn: elu, beta: 2}")[0].endswith("'beta' applies to fn: softplus, not to fn: elu")
    assert "'beta' in node 'a' must be greater than 0" in errors("a: {type: activation, fn: softplus, beta: 0}")[0]


def test_elu_alpha_and_softplus_beta_also_inside_a_block():
    """DPN ends with ELU, YOLOv4's CSPDarknet uses Mish: written directly, or as a block's `fn`
    parameter (make_activation), each is PyTorch's function with its option."""
    model = net("a: {type: activation, fn: elu, alpha: 0.5}\nb: {type: activation, fn: softplus, beta: 2}").module()
    x = 4 * randn(2, 8, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(x), F.softplus(F.elu(x, 0.5), beta=2), rtol=0, atol=0)
    for fn, reference in (("mish", F.mish), ("selu", F.selu), ("elu", F.elu), ("softplus", F.softplus)):
        inner = net(f"y: {{type: act, fn: {fn}}}", blocks="""
            blocks:
              act:
                params: {fn: {type: string}}
                nodes:
                  a: {type: activation, fn: $fn}
        """)
        assert "make_activation(fn)" in inner.source
        with torch.no_grad():
            torch.testing.assert_close(inner.module()(x), reference(x), rtol=0, atol=0)


# ---------------------------------------------------------------- convolutions


def test_non_square_kernel_stride_padding_and_dilation():
    compiled = net("c: {type: conv, out: 6, kernel: [1, 7], stride: [2, 1], padding: [0, 3], dilation: [1, 2], groups: 2}")
    assert compiled.graph.nodes["c"].shape == (6, 5, 4)
    assert "nn.Conv2d(8, 6, kernel_size=(1, 7), stride=(2, 1), padding=(0, 3), dilation=(1, 2), groups=2)" in compiled.source
    assert_emitted_equals_inferred(compiled, batch=2)


def tf_same_conv(x, conv):
    """TensorFlow's SAME, written from its definition: out = ceil(in / stride); the total
    padding is what the last window needs; top and left get half, rounded down."""
    pads = []
    for i in (1, 0):  # F.pad's order: width, then height
        n, s, k, d = x.shape[2 + i], conv.stride[i], conv.kernel_size[i], conv.dilation[i]
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


@pytest.mark.parametrize("params", ["kernel: 3, stride: 2", "kernel: 5, stride: 2, groups: 8", "kernel: [1, 4], stride: [1, 3], dilation: 2",
                                    "kernel: 2, stride: 2", "kernel: 3, stride: 1", "kernel: 4, stride: 1", "kernel: 1, stride: 2"])
@pytest.mark.parametrize("size", [(9, 10), (16, 16), (1, 7)])
def test_same_padding_at_a_stride_is_tensorflows(params, size):
    """padding: same at any stride is TensorFlow's SAME (EfficientNet's TF checkpoints): the
    shape check infers, the emitted module's output, and its parameters and FLOPs."""
    compiled = net(f"c: {{type: conv, out: 8, padding: same, {params}}}", input_shape=(8, *size))
    model = randomise(compiled.module(seed=0)).eval()
    x = randn(2, 8, *size)
    with torch.no_grad():
        got, want = model(x), tf_same_conv(x, model.c)
    assert got.shape[1:] == compiled.graph.nodes["c"].shape
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert_emitted_equals_inferred(compiled, batch=2)


def test_a_pair_with_equal_sides_is_written_as_one_integer():
    compiled = net("c: {type: conv, out: 6, kernel: [3, 3], padding: [1, 1]}")
    assert "nn.Conv2d(8, 6, kernel_size=3, padding=1)" in compiled.source


@pytest.mark.parametrize("params, shape", [
    ("kernel: 2, stride: 2", (6, 18, 20)),
    ("kernel: 3, stride: 2, padding: 1, output_padding: 1", (6, 18, 20)),
    ("kernel: [1, 3], stride: [1, 2], padding: [0, 1], groups: 2", (6, 9, 19)),
    ("kernel: 3, dilation: 2, stride: 3, output_padding: [2, 1], bias: false", (6, 31, 33)),
])
def test_conv_transpose_shape_params_and_flops_are_pytorchs(params, shape):
    compiled = net(f"up: {{type: conv_transpose, out: 6, {params}}}")
    assert compiled.graph.nodes["up"].shape == shape
    assert_emitted_equals_inferred(compiled, batch=2)


def test_conv_transpose_output_padding_must_be_below_stride_or_dilation():
    assert errors("up: {type: conv_transpose, kernel: 2, stride: 2, output_padding: 2}") == [
        "probe.yaml:5:68: error[E407]: node 'up' (conv_transpose): output_padding 2 must be smaller than the stride (2) or the dilation (1)"
    ]


def test_channel_shuffle_is_nn_channel_shuffle_and_shufflenets():
    from torchvision.models.shufflenetv2 import channel_shuffle as shufflenet

    model = net("s: {type: channel_shuffle, groups: 4}").module()
    x = randn(2, 8, 9, 10)
    y = model(x)
    assert torch.equal(y, torch.nn.ChannelShuffle(4)(x)) and torch.equal(y, shufflenet(x, 4))
    assert torch.equal(y[:, 1], x[:, 2])  # channel 0 of group 1 comes second


# ---------------------------------------------------------------- pooling


@pytest.mark.parametrize("pool", ["maxpool", "avgpool"])
def test_ceil_mode_shapes_equal_pytorchs(pool):
    """Including the clause that drops a last window starting in the right padding."""
    fn = F.max_pool2d if pool == "maxpool" else F.avg_pool2d
    seen_dropped = False
    for size in range(3, 12):
        for kernel in (2, 3, 4):
            for stride in (1, 2, 3):
                for padding in range(kernel // 2 + 1):
                    text = (f"archc: 1\nname: g\ninput: [2, {size}, {size + 1}]\nnodes:\n"
                            f"  p: {{type: {pool}, kernel: {kernel}, stride: {stride}, padding: {padding}, ceil_mode: true}}\n")
                    result = check_text(text, "g.yaml")
                    x = torch.zeros(1, 2, size, size + 1)
                    try:
                        expected = tuple(fn(x, kernel, stride, padding, ceil_mode=True).shape[1:])
                    except RuntimeError:  # PyTorch refuses it: so must check
                        assert not result.ok
                        continue
                    assert result.ok and result.graph.nodes["p"].shape == expected, (size, kernel, stride, padding)
                    naive = -(-(size + 2 * padding - kernel) // stride) + 1
                    seen_dropped |= naive != expected[1]
    assert seen_dropped  # the grid reaches the clause


def test_googlenet_pools_keep_their_sizes_with_ceil_mode():
    compiled = net("""
        p1: {type: maxpool, kernel: 3, stride: 2, ceil_mode: true}
        p2: {type: maxpool, kernel: 3, stride: 2, ceil_mode: true}
        p3: {type: avgpool, kernel: 3, stride: 1, padding: 1, ceil_mode: true, count_include_pad: false}
    """, input_shape=(3, 112, 112))
    assert [compiled.graph.nodes[n].shape[1] for n in ("p1", "p2", "p3")] == [56, 28, 28]
    x = randn(1, 3, 112, 112)
    expected = F.avg_pool2d(F.max_pool2d(F.max_pool2d(x, 3, 2, ceil_mode=True), 3, 2, ceil_mode=True), 3, 1, 1, ceil_mode=True, count_include_pad=False)
    torch.testing.assert_close(compiled.module()(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("pool, reduce", [("global_avgpool", torch.mean), ("global_maxpool", torch.amax)])
def test_a_global_pool_that_keeps_the_map_gates_by_broadcasting(pool, reduce):
    compiled = net(f"""
        g: {{type: {pool}, keep_map: true}}
        gate: {{type: activation, fn: hardsigmoid}}
        scaled: {{type: mul, in: [input, gate]}}
    """)
    assert compiled.graph.nodes["g"].shape == (8, 1, 1)
    x = randn(2, 8, 9, 10)
    expected = x * F.hardsigmoid(reduce(x, dim=(2, 3), keepdim=True))
    torch.testing.assert_close(compiled.module()(x), expected)


@pytest.mark.parametrize("size, out", [(1, (1, 1)), ([3, 4], (3, 4)), (7, (7, 7))])
def test_adaptive_avgpool_is_pytorchs_and_sizes_a_head_for_any_input(size, out):
    """VGG's classifier reads a 7 x 7 map whatever the input size (AdaptiveAvgPool2d((7, 7)));
    a map smaller than the size is spread, as PyTorch does."""
    nodes = f"pool: {{type: adaptive_avgpool, size: {size}}}\nflat: {{type: flatten}}\nfc: {{type: affine, out: 5}}"
    for shape in ((8, 9, 10), (8, 33, 21)):
        compiled = net(nodes, input_shape=shape)
        assert compiled.graph.nodes["pool"].shape == (8, *out)
        model = randomise(compiled.module()).eval()
        x = randn(2, *shape)
        with torch.no_grad():
            torch.testing.assert_close(model(x), model.fc(F.adaptive_avg_pool2d(x, out).flatten(1)))


def test_channel_pools_feed_cbams_spatial_attention():
    """CBAM's spatial gate: the channels' mean and max at each pixel, a 7x7 conv, a sigmoid,
    and the map scaled by it (Woo et al. 2018, written out in torch)."""
    compiled = net("""
        avg: {type: channel_pool, in: input}
        peak: {type: channel_pool, op: max, in: input}
        both: {type: concat, in: [avg, peak]}
        conv: {type: conv, out: 1, kernel: 7, padding: 3, bias: false}
        gate: {type: activation, fn: sigmoid}
        scaled: {type: mul, in: [input, gate]}
    """)
    assert compiled.graph.nodes["avg"].shape == (1, 9, 10) and compiled.graph.nodes["both"].shape == (2, 9, 10)
    model = randomise(compiled.module()).eval()
    x = randn(2, 8, 9, 10)
    pooled = torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values], dim=1)
    expected = x * torch.sigmoid(F.conv2d(pooled, model.conv.weight, padding=3))
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


def test_a_channel_pool_needs_a_map():
    assert any("E401" in e for e in errors("flat: {type: global_avgpool}\npool: {type: channel_pool}"))


def test_grn_is_convnext_v2s_global_response_norm():
    """ConvNeXt V2's GRN as its authors write it, channels last (facebookresearch/ConvNeXt-V2,
    models/utils.py): the emitted channels-first module computes the same, and starts as the
    identity."""
    compiled = net("grn: {type: grn}")
    assert compiled.graph.nodes["grn"].params == {"eps": 1e-6}
    x = randn(2, 8, 9, 10)
    model = compiled.module().eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), x, rtol=0, atol=0)
    model = randomise(model)
    gamma, beta = model.grn.weight.view(1, 1, 1, -1), model.grn.bias.view(1, 1, 1, -1)
    xl = x.permute(0, 2, 3, 1)
    gx = torch.norm(xl, p=2, dim=(1, 2), keepdim=True)
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    expected = (gamma * (xl * nx) + beta + xl).permute(0, 3, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)
    assert sorted(model.grn.state_dict()) == ["bias", "weight"]  # timm's GlobalResponseNorm keys


# ---------------------------------------------------------------- drop_path and layer_scale


def test_drop_path_is_the_identity_in_eval_and_torchvisions_stochastic_depth_in_training():
    from torchvision.ops import stochastic_depth

    model = net("d: {type: drop_path, p: 0.3}").module()
    assert "torchvision" not in model.__class__.__module__
    x = randn(64, 8, 9, 10)
    assert model.eval()(x) is x
    model.train()
    for seed in (0, 1):
        torch.manual_seed(seed)
        y = model(x)
        torch.manual_seed(seed)
        torch.testing.assert_close(y, stochastic_depth(x, 0.3, "row", training=True), rtol=0, atol=0)


def test_drop_path_drops_whole_samples_at_rate_p_and_scales_the_rest():
    model = net("d: {type: drop_path, p: 0.25}", input_shape=(2, 3, 3)).module().train()
    x = torch.ones(20000, 2, 3, 3)
    torch.manual_seed(0)
    y = model(x)
    per_sample = y.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 1 / 0.75).all(1)
    assert bool((dropped | kept).all())  # each sample is dropped or scaled as a whole
    # binomial(20000, 0.25): standard deviation 61, so 5 of them is a real disagreement
    assert abs(int(dropped.sum()) - 5000) < 5 * 61


def test_drop_path_with_p_0_is_the_identity_in_training():
    model = net("d: {type: drop_path, p: 0}").module().train()
    x = randn(4, 8, 9, 10)
    assert model(x) is x


def test_layer_scale_starts_at_its_init_value():
    compiled = net("s: {type: layer_scale, init: 0.001}\npool: {type: global_avgpool}\nv: {type: layer_scale, init: 2}")
    assert compiled.totals["params"] == 16 and compiled.totals["flops"] == 0
    model = compiled.module()
    assert model.s.scale.shape == (8, 1, 1) and bool((model.s.scale == 0.001).all())
    assert model.v.scale.shape == (8,) and bool((model.v.scale == 2).all())
    x = randn(2, 8, 9, 10)
    torch.testing.assert_close(model(x), 2 * (0.001 * x).mean((2, 3)))
    assert set(model.state_dict()) == {"s.scale", "v.scale"}


# ---------------------------------------------------------------- inside a composite

BLOCK = """
blocks:
  unit:
    params:
      k: {default: [1, 3], description: a kernel pair}
      g: {type: integer, default: 2}
      fn: {enum: [leaky_relu, gelu, relu], default: leaky_relu}
      slope: {type: number, default: 0.1}
      init: {type: number, default: 0.5}
      drop: {type: number, default: 0.2}
      up: {type: integer, default: 2}
      ceil: {type: boolean, default: true}
    nodes:
      conv: {type: conv, out: $in_channels, kernel: $k, padding: same, groups: $g}
      ln: {type: layernorm}
      gn: {type: groupnorm, groups: $g}
      act: {type: activation, fn: $fn, negative_slope: $slope}
      shuffle: {type: channel_shuffle, groups: $g}
      scale: {type: layer_scale, init: $init}
      drop: {type: drop_path, p: $drop}
      tconv: {type: conv_transpose, kernel: $up, stride: $up, groups: $g}
      pool: {type: maxpool, kernel: 3, stride: $up, ceil_mode: $ceil}
      gate: {type: global_avgpool, keep_map: true}
      out: {type: mul, in: [pool, gate]}
"""


def test_new_primitives_inside_a_composite_take_their_parameters_as_constructor_arguments():
    compiled = net("""
        a: {type: unit}
        b: {type: unit, k: [3, 1], g: 4, slope: 0.3, init: 2, drop: 0.5, up: 3, ceil: false}
    """, input_shape=(8, 9, 11), blocks=BLOCK)
    src = compiled.source
    assert src.count("class Unit(") == 1
    tree = ast.parse(src)
    init = next(f for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "Unit" for f in c.body if getattr(f, "name", "") == "__init__")
    assert [a.arg for a in init.args.args[1:]] == ["in_channels", "k", "g", "fn", "slope", "init", "drop", "up", "ceil"]
    for line in ("nn.Conv2d(in_channels, in_channels, kernel_size=k, padding=\"same\", groups=g)",
                 "nn.GroupNorm(g, in_channels)", "activation(fn, negative_slope=slope)", "LayerScale(in_channels, init)", "DropPath(drop)",
                 "nn.ConvTranspose2d(in_channels, in_channels, kernel_size=up, stride=up, groups=g)",
                 "nn.MaxPool2d(3, stride=up, ceil_mode=ceil)", ", self.g)"):
        assert line in src, line
    # the second instance really gets its own values
    assert compiled.graph.nodes["a"].shape == (8, 9, 11)
    assert compiled.graph.nodes["b"].shape == (8, 9, 11)  # 9 -> 27 -> 9, floor mode
    model = compiled.module()
    assert model.b.conv.kernel_size == (3, 1) and model.b.act.negative_slope == 0.3 and bool((model.b.scale.scale == 2).all())
    assert model.b.drop.p == 0.5 and model.b.tconv.stride == (3, 3) and model.b.pool.ceil_mode is False
    assert_emitted_equals_inferred(compiled, batch=2)


def test_a_symbolic_activation_passes_its_options_to_the_helper():
    compiled = net("""
        a: {type: unit}
        b: {type: unit, fn: gelu}
    """, input_shape=(8, 9, 11), blocks=BLOCK.replace("negative_slope: $slope", "").replace("slope: {type: number, default: 0.1}", ""))
    assert "self.act = make_activation(fn)" in compiled.source
    model = compiled.module()
    assert isinstance(model.a.act, torch.nn.LeakyReLU) and isinstance(model.b.act, torch.nn.GELU)
    gelu_tanh = net("a: {type: u, fn: gelu}", blocks="""
        blocks:
          u:
            params:
              fn: {enum: [gelu, relu], default: gelu}
            nodes:
              act: {type: activation, fn: $fn, approximate: tanh}
    """)
    assert 'make_activation(fn, approximate="tanh")' in gelu_tanh.source
    assert gelu_tanh.module().a.act.approximate == "tanh"


# ---------------------------------------------------------------- misuse


@pytest.mark.parametrize("node, hint", [
    ("{type: layer_norm}", "archc calls it 'layernorm'"),
    ("{type: group_norm, groups: 2}", "archc calls it 'groupnorm'"),
    ("{type: convtranspose}", "did you mean 'conv_transpose'?"),
    ("{type: activation, fn: hard_swish}", "did you mean 'hardswish'?"),
    ("{type: maxpool, ceilmode: true}", "did you mean 'ceil_mode'?"),
    ("{type: global_avgpool, keepmap: true}", "did you mean 'keep_map'?"),
])
def test_near_misses_of_the_new_names_get_a_did_you_mean(node, hint):
    (line,) = errors(f"n: {node}")
    assert line.endswith(hint), line


def test_a_transposed_conv_whose_padding_eats_the_map_is_refused_at_the_padding():
    assert errors("up: {type: conv_transpose, kernel: 3, padding: [1, 6]}") == [
        "probe.yaml:5:50: error[E404]: node 'up' (conv_transpose): padding [1, 6] on each side removes more than the 11x12 that the 9x10 input grows to; "
        "the map would shrink below 1x1"
    ]


def test_new_primitives_take_arithmetic_on_block_parameters():
    compiled = net("a: {type: u}\nb: {type: u, s: 3}", blocks="""
        blocks:
          u:
            params:
              s: {type: integer, default: 2}
            nodes:
              gn: {type: groupnorm, groups: $in_channels // 4}
              shuffle: {type: channel_shuffle, groups: $in_channels // 4}
              up: {type: conv_transpose, kernel: 2 * $s, stride: $s, padding: $s // 2, output_padding: $s - 1}
              pool: {type: avgpool, kernel: $s, ceil_mode: true}
    """)
    assert "nn.GroupNorm(in_channels // 4, in_channels)" in compiled.source
    assert "kernel_size=2 * s, stride=s, padding=s // 2, output_padding=s - 1" in compiled.source
    # a: 9 x 10 grows to (9 - 1) * 2 - 2 + 3 + 1 + 1 = 19 x 21, and a 2x2 pool in ceil mode keeps the odd row: 10 x 11
    assert compiled.graph.nodes["a"].shape == (8, 10, 11) and compiled.graph.nodes["b"].shape == (8, 11, 12)
    assert_emitted_equals_inferred(compiled, batch=2)


# ---------------------------------------------------------------- weighted_add


@pytest.mark.parametrize("normalize", ["fast", "softmax", "none"])
def test_weighted_add_is_efficientdets_bifpn_fusion(normalize):
    """EfficientDet's fusion as zylo117/Yet-Another-EfficientDet-Pytorch writes it (fast:
    `w = relu(w); w = w / (sum(w) + 1e-4); w[0] * a + w[1] * b`), its softmax variant, and
    the plain weighted sum: a learned weight per input, starting at 1."""
    compiled = net(f"""
        a: {{type: conv, out: 8, kernel: 1}}
        b: {{type: conv, out: 8, kernel: 3, padding: 1, in: input}}
        c: {{type: conv, out: 8, kernel: 1, in: input}}
        f: {{type: weighted_add, in: [a, b, c], normalize: {normalize}}}
    """)
    assert compiled.graph.nodes["f"].meta["params"] == 3
    model = compiled.module().eval()
    assert sorted(model.f.state_dict()) == ["weight"] and torch.equal(model.f.weight, torch.ones(3))
    model = randomise(model)
    x = randn(2, 8, 9, 10)
    w = model.f.weight
    w = {"fast": F.relu(w) / (F.relu(w).sum() + 1e-4), "softmax": torch.softmax(w, dim=0), "none": w}[normalize]
    with torch.no_grad():
        a, b, c = model.a(x), model.b(x), model.c(x)
        torch.testing.assert_close(model(x), w[0] * a + w[1] * b + w[2] * c)


def test_weighted_add_needs_matching_maps_and_a_positive_eps():
    assert any("E410" in e and "weighted_add needs matching channels" in e for e in errors("""
        a: {type: conv, out: 8, kernel: 1}
        b: {type: conv, out: 4, kernel: 1, in: input}
        f: {type: weighted_add, in: [a, b]}
    """))
    assert any("E103" in e for e in errors("""
        a: {type: conv, out: 8, kernel: 1}
        f: {type: weighted_add, in: [a, input], eps: 0}
    """))


# ---------------------------------------------------------------- padding


PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


@pytest.mark.parametrize("mode", sorted(PAD_MODES))
def test_pad_refuses_exactly_what_pytorch_refuses_and_equals_f_pad(mode):
    """Every side count from 0 to one past the map, on a 3 x 4 map: check accepts a pad if and
    only if F.pad runs it, with F.pad's shape and values (four sides, then the short forms)."""
    x = randn(2, 2, 3, 4)
    forms = [[t, b, l, r] for t in (0, 1, 3, 4) for b in (0, 2, 3) for l in (0, 1, 4, 5) for r in (1, 4)] + [2, 3, 4, [1, 3], [3, 1]]
    accepted = 0
    for pad in forms:
        top, bottom, left, right = pad if isinstance(pad, list) and len(pad) == 4 else (
            [pad[0], pad[0], pad[1], pad[1]] if isinstance(pad, list) else [pad] * 4)
        try:
            want = F.pad(x, (left, right, top, bottom), mode=PAD_MODES[mode])
        except RuntimeError:
            want = None
        result = check_text(f"archc: 1\nname: p\ninput: [2, 3, 4]\nnodes:\n  p: {{type: pad, pad: {pad}, mode: {mode}}}\n", "p.yaml")
        assert result.ok == (want is not None), (pad, [d.concise() for d in result.diagnostics])
        if want is None:
            assert [d.code for d in result.diagnostics] == ["E409"], pad
            continue
        accepted += 1
        compiled = Compiled(result)
        assert compiled.output_shape == tuple(want.shape[1:])
        with torch.no_grad():
            assert torch.equal(compiled.module()(x), want), pad
    assert accepted >= 5  # not a test of refusals only


def test_pad_before_a_strided_conv_is_keras_zero_padding_and_reflect_is_cyclegans():
    """The pad-then-valid-conv of Keras applications (`correct_pad`: ZeroPadding2D(((0, 1), (0, 1)))
    before a 3x3 conv at stride 2, ((1, 2), (1, 2)) before a 4x4), and the
    ReflectionPad2d(3) + 7x7 conv that opens a CycleGAN generator, inside composites whose
    pads are expressions of the block's parameters."""
    compiled = net("""
        stem: {type: gen_in, p: 3}
        down: {type: tf_down, k: 3, width: 16}
        down4: {type: tf_down, k: 4, width: 16, mode: reflect}
    """, input_shape=(3, 16, 16), blocks="""
        blocks:
          gen_in:
            params: {p: {type: integer, minimum: 0}}
            nodes:
              pad: {type: pad, pad: $p, mode: reflect}
              conv: {type: conv, out: 8, kernel: 2 * $p + 1}
          tf_down:
            params:
              k: {type: integer, minimum: 1}
              width: {type: integer, minimum: 1}
              mode: {enum: [zeros, reflect], default: zeros}
            nodes:
              pad: {type: pad, pad: [$k // 2 - 1, $k // 2, $k // 2 - 1, $k // 2], mode: $mode}
              conv: {type: conv, out: $width, kernel: $k, stride: 2}
    """)
    assert "F.pad(x, (self.k // 2 - 1, self.k // 2, self.k // 2 - 1, self.k // 2))" in compiled.source
    model = randomise(compiled.module()).eval()
    x = randn(2, 3, 16, 16)
    with torch.no_grad():
        stem = model.stem.conv(torch.nn.ReflectionPad2d(3)(x))
        down = model.down.conv(torch.nn.ZeroPad2d((0, 1, 0, 1))(stem))
        down4 = model.down4.conv(torch.nn.ReflectionPad2d((1, 2, 1, 2))(down))
        torch.testing.assert_close(model(x), down4)
    assert compiled.output_shape == tuple(down4.shape[1:]) == (16, 4, 4)
    assert_emitted_equals_inferred(compiled, batch=1)


def test_pad_with_reflect_larger_than_the_map_is_refused_at_the_pad():
    (message,) = errors("p: {type: pad, pad: [0, 0, 10, 0], mode: reflect}")
    assert "E409" in message and "reflect padding of 10 needs a width above 10, but the input's is 10" in message


# ---------------------------------------------------------------- sub, softmax, pixel (un)shuffle


def test_sub_is_the_difference_with_broadcasting_as_poolformers_mixer():
    """PoolFormer's token mixer, `pool(x) - x`, and a broadcast operand."""
    compiled = net("""
        pool: {type: avgpool, kernel: 3, stride: 1, padding: 1, count_include_pad: false}
        mixer: {type: sub, in: [pool, input]}
        gate: {type: global_avgpool, keep_map: true, in: input}
        centred: {type: sub, in: [mixer, gate, gate]}
    """)
    x = randn(2, 8, 9, 10)
    pool = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    with torch.no_grad():
        torch.testing.assert_close(compiled.module()(x), pool - x - 2 * x.mean((2, 3), keepdim=True))
    assert "mixer = pool - x" in compiled.source or "pool - x" in compiled.source
    assert any("E410" in e and "sub needs matching channels" in e for e in errors("""
        a: {type: conv, out: 4, kernel: 1}
        d: {type: sub, in: [a, input]}
    """))


def test_softmax_over_channels_and_across_parts_as_sknet_weighs_its_branches():
    compiled = net("""
        plain: {type: softmax}
        across: {type: softmax, parts: 2, in: input}
        both: {type: add, in: [plain, across]}
    """)
    x = randn(2, 8, 9, 10)
    sk = x.view(2, 2, 4, 9, 10).softmax(dim=1).view(2, 8, 9, 10)  # timm's SelectiveKernelAttn: (B, M, C/M, H, W), softmax over M
    with torch.no_grad():
        torch.testing.assert_close(compiled.module()(x), x.softmax(dim=1) + sk)
    assert "x.softmax(dim=1)" in compiled.source and "split_softmax(x, 2)" in compiled.source


def test_softmax_with_groups_is_resnests_rsoftmax_inside_split_attention():
    """ResNeSt's split attention (radix 2, cardinality 2) with rSoftMax written as the paper's
    code writes it: `x.view(B, card, radix, -1).transpose(1, 2)`, softmax over radix, then one
    slice of the channels per radix for the weighted sum."""
    compiled = net("""
        attn: {type: split_attention, radix: 2, card: 2}
    """, input_shape=(16, 5, 5), blocks="""
        blocks:
          split_attention:
            params: {radix: {type: integer, minimum: 2}, card: {type: integer, minimum: 1}}
            nodes:
              conv: {type: conv, out: 2 * $in_channels, kernel: 3, padding: 1, groups: $card * $radix}
              parts: {type: split, outputs: [u0, u1]}
              gap_sum: {type: add, in: [u0, u1]}
              gap: {type: global_avgpool, keep_map: true}
              fc1: {type: conv, out: 8, kernel: 1, groups: $card}
              relu: {type: activation}
              fc2: {type: conv, out: 2 * $in_channels, kernel: 1, groups: $card}
              rsoftmax: {type: softmax, parts: $radix, groups: $card}
              weights: {type: split, outputs: [a0, a1]}
              w0: {type: mul, in: [u0, a0]}
              w1: {type: mul, in: [u1, a1]}
              out: {type: add, in: [w0, w1]}
    """)
    model = randomise(compiled.module()).eval()
    a = model.attn
    x = randn(2, 16, 5, 5)
    with torch.no_grad():
        u = a.conv(x)
        u0, u1 = torch.split(u, 16, dim=1)
        logits = a.fc2(F.relu(a.fc1((u0 + u1).mean((2, 3), keepdim=True))))
        r = logits.view(2, 2, 2, -1).transpose(1, 2)  # (B, card, radix, rest) -> (B, radix, card, rest)
        att0, att1 = torch.split(F.softmax(r, dim=1).reshape(2, -1).view(2, -1, 1, 1), 16, dim=1)
        torch.testing.assert_close(model(x), att0 * u0 + att1 * u1)
    assert "split_softmax(fc2, self.radix, self.card)" in compiled.source


def test_softmax_parts_must_divide_and_groups_need_parts():
    (message,) = errors("s: {type: softmax, parts: 3}")
    assert "E402" in message and "parts=3 must divide the input channels (8)" in message
    (message,) = errors("s: {type: softmax, parts: 2, groups: 3}")
    assert "parts x groups = 6 must divide the input channels (8)" in message
    (message,) = errors("s: {type: softmax, groups: 2}")
    assert "groups applies to a softmax across parts; give parts too" in message


def test_pixel_shuffle_and_unshuffle_are_pytorchs_and_undo_each_other():
    compiled = net("""
        down: {type: pixel_unshuffle, factor: 3}
        up: {type: pixel_shuffle, factor: 3}
    """, input_shape=(2, 9, 6))
    model = compiled.module()
    x = randn(2, 2, 9, 6)
    assert compiled.graph.nodes["down"].shape == (18, 3, 2) and compiled.output_shape == (2, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(model.forward(x), x)
        assert torch.equal(F.pixel_unshuffle(x, 3), torch.nn.PixelUnshuffle(3)(x))
    assert "F.pixel_unshuffle(x, 3)" in compiled.source and "F.pixel_shuffle(x, 3)" in compiled.source
    (message,) = errors("d: {type: pixel_unshuffle, factor: 2}")  # the map is 9x10
    assert "E413" in message and "factor 2 must divide the input's height and width, but it is 9x10" in message
    (message,) = errors("u: {type: pixel_shuffle, factor: 2, in: input}\nv: {type: pixel_shuffle, factor: 2}")
    assert "E413" in message and "factor 2 needs channels divisible by 4, but the input has 2" in message


@pytest.mark.slow  # about 20 s of torch.compile; test_pad_refuses_exactly_what_pytorch_refuses_and_equals_f_pad checks the values
def test_every_pad_mode_trains_compiled():
    """torch.compile differentiates each mode: F.pad's replicate failed inductor's stride check
    in its backward (archc train --compile exited 70), so replicate is emitted as indexing."""
    compiled = net("""
        z: {type: pad, pad: [1, 0, 2, 1]}
        r: {type: pad, pad: 1, mode: reflect}
        p: {type: pad, pad: [0, 2, 1, 0], mode: replicate}
        c: {type: pad, pad: 1, mode: circular}
        conv: {type: conv, out: 4, kernel: 3}
    """, input_shape=(3, 6, 5))
    assert "replicate_pad(x, (1, 0, 0, 2))" in compiled.source
    model = compiled.module(seed=0)
    x = randn(2, 3, 6, 5)
    eager = torch.autograd.grad(model(x).square().sum(), list(model.parameters()))
    fast = torch.compile(model, fullgraph=True)
    graded = torch.autograd.grad(fast(x).square().sum(), list(model.parameters()))
    for a, b in zip(eager, graded):
        torch.testing.assert_close(a, b)
