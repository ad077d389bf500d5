"""One semantics: what `check` proves is what the emitted code runs.

Each test here pins one failure found when the emitter re-derived everything from YAML
(compiler-core issue), and the front-end hardening that came with it.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import archcompiler
from archcompiler.api import Compiled
from archcompiler.backends import torch_source
from archcompiler.diagnostics import Diagnostics
from archcompiler.blocks.pooling import Upsample
from archcompiler.driver import builtin_registry, check_file, check_text
from archcompiler.frontend.loader import load_text
from tests.conftest import ALL_SPECS, ROOT, TEST_SPECS, spec_params


def spec(body: str) -> str:
    return textwrap.dedent(body).lstrip()


def run(compiled, shape, seed=0):
    model = compiled.module(seed=seed).eval()
    with torch.no_grad():
        return model(torch.randn(*shape, generator=torch.Generator().manual_seed(1)))


# ---------------------------------------------------------------- emitter == check


@dataclass
class Resize(Upsample):
    """upsample under another name: the emitter must read `refs` from the IR, not the type name."""

    name: str = "resize"


def test_a_block_with_size_of_under_another_name_emits_what_check_reports():
    registry = builtin_registry().child()
    registry.register(Resize())
    text = spec("""
        archc: 1
        name: net
        input: [4, 16, 16]
        nodes:
          down: {type: maxpool, kernel: 4}
          up: {type: resize, size_of: input}
    """)
    result = check_text(text, "net.yaml", registry=registry)
    assert result.ok, [d.concise() for d in result.diagnostics]
    assert result.graph.nodes["up"].shape == (4, 16, 16)
    out = run(Compiled(result), (2, 4, 16, 16))
    assert tuple(out.shape) == (2, 4, 16, 16)


FN_SPEC = spec("""
    archc: 1
    name: fnnet
    input: [3, 16, 16]
    blocks:
      cba:
        params:
          out: {type: integer, minimum: 1}
          fn: {enum: [relu, silu], default: silu}
        nodes:
          conv: {type: conv, out: $out, kernel: 3, padding: same}
          bn: {type: batchnorm}
          act: {type: activation, fn: $fn}
    nodes:
      a: {type: cba, out: 8, fn: relu}
      b: {type: cba, out: 8}
      pool: {type: global_avgpool}
""")


def test_an_activation_chosen_by_a_block_parameter_is_an_honest_constructor_argument():
    net = archcompiler.compile(FN_SPEC)
    ns = net._namespace
    classes = [n for n in vars(ns) if isinstance(getattr(ns, n), type) and issubclass(getattr(ns, n), torch.nn.Module)]
    assert sorted(classes) == ["Cba", "Fnnet"]  # one class for both activations
    assert isinstance(ns.Cba(8, out=8, fn="relu").act, torch.nn.ReLU)
    assert isinstance(ns.Cba(8, out=8).act, torch.nn.SiLU)
    model = net.module()
    assert isinstance(model.a.act, torch.nn.ReLU) and isinstance(model.b.act, torch.nn.SiLU)


SE_SPEC = spec("""
    archc: 1
    name: senet
    input: [3, 32, 32]
    blocks:
      se:
        params:
          hidden: {type: integer, minimum: 1}
        nodes:
          pool: {type: avgpool, kernel: $in_height, in: input}
          fc1: {type: conv, out: $hidden, kernel: 1}
          relu: {type: activation, fn: relu}
          fc2: {type: conv, out: $in_channels, kernel: 1}
          gate: {type: activation, fn: sigmoid}
          scale: {type: mul, in: [input, gate]}
    nodes:
      stem: {type: conv, out: 8, kernel: 3, padding: same}
      se1: {type: se, hidden: 4}
      down: {type: maxpool, kernel: 2}
      se2: {type: se, hidden: 4}
      pool: {type: global_avgpool}
""")


@pytest.mark.parametrize("size", [32, 48])
def test_a_block_sized_by_its_input_runs_at_any_input_size(size):
    net = archcompiler.compile(SE_SPEC)
    src = net.source
    assert src.count("class Se(") == 1 and "in_height = x.shape[-2]" in src
    model = net.module().eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model.stem(x)
        # what the spec means: the gate sees the mean over the whole map, at any size
        for se in (model.se1, None, model.se2):
            if se is None:
                y = model.down(y)
                continue
            g = torch.sigmoid(se.fc2(torch.relu(se.fc1(y.mean(dim=(2, 3), keepdim=True)))))
            y = y * g
        torch.testing.assert_close(model(x), y.mean(dim=(2, 3)))


def test_an_explicit_stride_is_kept_where_the_kernel_is_sized_by_the_input():
    """stride defaults to the kernel; written as 1 where the kernel works out to 1, it must
    still be emitted, or the model computes another size at another input size."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: q
        input: [4, 4, 4]
        blocks:
          b:
            nodes:
              q: {type: avgpool, kernel: "max($in_width // 4, 1)", stride: 1}
        nodes:
          a: {type: b}
    """))
    assert "stride=1" in net.source
    assert net.module()(torch.zeros(1, 4, 16, 16)).shape == (1, 4, 13, 13)


def test_floor_division_of_a_decimal_by_one_is_not_dropped():
    net = archcompiler.compile(spec("""
        archc: 1
        name: q
        input: [4, 4, 4]
        blocks:
          b:
            params: {r: {type: number}}
            nodes:
              d: {type: dropout, p: $r // 1 + 0.25}
        nodes:
          a: {type: b, r: 0.5}
    """))
    assert net.graph.nodes["a"].body.nodes["d"].params["p"] == 0.25
    assert net.module().a.d.p == 0.25


@pytest.mark.parametrize("text", [
    """
    archc: 1
    name: m
    input: [3, 8, 8]
    output: a
    nodes:
      a: {type: conv, out: 4, kernel: 1}
      b: {type: conv, out: 8, kernel: 1}
    """,
    """
    archc: 1
    name: m
    input: [4, 8, 8]
    blocks:
      blk:
        output: c1
        nodes:
          c1: {type: conv, out: 4, kernel: 1}
          c2: {type: conv, out: 8, kernel: 1}
    nodes:
      a: {type: blk}
    """,
])
def test_the_output_keeps_its_variable_when_a_later_node_reads_it(text):
    """A node after the output (W303) once took over `x`, so forward returned its value."""
    assert_emitted_equals_inferred(archcompiler.compile(spec(text)), batch=1)


def test_a_node_named_like_a_helper_or_builtin_gets_another_variable():
    """Node names are forward's variables: `channel_shuffle` or `max` must not hide the helper
    or built-in that a later line calls."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: cs
        input: [4, 8, 8]
        blocks:
          b:
            params: {k: {type: integer, default: 1}}
            nodes:
              range: {type: conv, out: "max($k, 4)", kernel: 1, repeat: 2}
              max: {type: maxpool, kernel: "max($in_width // 8, 1)"}
        nodes:
          channel_shuffle: {type: conv, kernel: 1}
          a: {type: conv, kernel: 1, in: input}
          c: {type: channel_shuffle, groups: 2, in: a}
          d: {type: add, in: [c, channel_shuffle]}
          e: {type: b}
    """))
    assert "channel_shuffle_2 = self.channel_shuffle(x)" in net.source
    assert_emitted_equals_inferred(net, batch=1)


def test_generated_class_names_are_unique():
    text = spec("""
        archc: 1
        name: a_b
        input: [3, 8, 8]
        blocks:
          a__b: {nodes: {c: {type: conv, out: 4}}}
          a_b_: {nodes: {c: {type: conv, out: 5}}}
          Net: {nodes: {c: {type: conv, out: 6}}}
        nodes:
          one: {type: a__b}
          two: {type: a_b_}
          three: {type: Net}
    """)
    net = archcompiler.compile(text)
    tree = ast.parse(net.source)
    names = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert len(names) == len(set(names)) == 4
    assert net.class_name == "AB" and names[-1] == "AB"
    out = run(net, (1, 3, 8, 8))
    assert tuple(out.shape) == (1, 6, 2, 2)


def chain(depth: int) -> str:
    blocks = ["  l0: {nodes: {c: {type: conv, out: 4, kernel: 1}}}"]
    blocks += [f"  l{i}: {{nodes: {{inner: {{type: l{i - 1}}}}}}}" for i in range(1, depth)]
    return "archc: 1\nname: deep\ninput: [4, 4, 4]\nblocks:\n" + "\n".join(blocks) + f"\nnodes:\n  top: {{type: l{depth - 1}}}\n"


def test_emit_renders_each_block_instance_once(monkeypatch):
    """Linear in depth: the old emitter rendered a body twice per level (2^depth)."""
    calls = []
    original = torch_source.Emitter._render
    monkeypatch.setattr(torch_source.Emitter, "_render", lambda self, g, frame: calls.append(g.name) or original(self, g, frame))
    net = archcompiler.compile(chain(50))
    assert net.source.count("class L") == 50
    assert len(calls) == 51  # 50 composite instances and the model
    assert tuple(run(net, (1, 4, 4, 4)).shape) == (1, 4, 4, 4)


def test_every_constructor_argument_is_used():
    for path in [ROOT / p for p in SPECS] + [FN_SPEC, SE_SPEC]:
        tree = ast.parse(archcompiler.compile(path).source)
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
            if init is None:  # a helper that only changes forward (LayerNorm2d(nn.LayerNorm))
                assert cls.bases and isinstance(cls.bases[0], ast.Attribute), cls.name
                continue
            args = [a.arg for a in init.args.args[1:]]
            read = {n.id for n in ast.walk(init) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            assert set(args) <= read, f"{path}: {cls.name} ignores {set(args) - read}"


# ---------------------------------------------------------------- front-end hardening


@pytest.mark.parametrize(
    "line, col, text",
    [
        (6, 25, "  d: {type: dropout, p: .nan}\n"),
        (6, 29, "  b: {type: batchnorm, eps: .inf}\n"),
        (6, 38, "  m: {type: mul, in: [c, c], offset: .nan}\n"),
        (8, 7, "train:\n  optimizer: adam\n  lr: .NaN\n"),
        (6, 34, "  b: {type: batchnorm, momentum: -.Inf}\n"),
        (6, 29, "  b: {type: batchnorm, eps: 1e999}\n"),
    ],
)
def test_nan_and_infinity_are_refused_where_they_are_written(line, col, text):
    head = "archc: 1\nname: t\ninput: [3, 8, 8]\nnodes:\n  c: {type: conv, out: 4}\n"
    diags = check_text(head + text, "t.yaml").diagnostics
    e008 = [d for d in diags if d.code == "E008"]
    assert len(e008) == 1 and (e008[0].span.line, e008[0].span.column) == (line, col), [d.concise() for d in diags]
    assert "finite" in e008[0].message


@pytest.mark.parametrize(
    "written, value",
    [("010", 10), ("0o17", 15), ("0x1F", 31), ("+7", 7), ("1:30", None), ("1_0", None), ("0b11", None), ("yes", None), ("on", None)],
)
def test_numbers_follow_yaml_1_2(written, value):
    result = check_text(f"archc: 1\nname: t\ninput: [3, 8, 8]\nnodes:\n  c: {{type: conv, out: {written}}}\n", "t.yaml")
    if value is None:  # a string under YAML 1.2: not an integer
        assert [d.code for d in result.diagnostics] == ["E102"]
        assert f"got '{written}'" in result.diagnostics[0].message
    else:
        assert result.ok and result.graph.nodes["c"].params["out"] == value


def test_yaml_1_2_scalars_elsewhere():
    result = check_text("archc: 1\nname: t\ninput: [3, 8, 8]\nnodes:\n  c: {type: conv, out: 4, bias: FALSE}\n  d: {type: dropout, p: .5}\n", "t.yaml")
    assert result.ok
    assert result.graph.nodes["c"].params["bias"] is False and result.graph.nodes["d"].params["p"] == 0.5


@pytest.mark.parametrize(
    "written, value",
    [
        ("!!str 4", "4"),
        ("!!str 1e3", "1e3"),
        ("!!str true", "true"),
        ("!!str 0x1F", "0x1F"),
        ("!!str", ""),
        ("! 4", "4"),  # the non-specific tag on a scalar means a string
        ('!!int "0o17"', 15),
        ('!!int "0x1F"', 31),
        ('!!int "010"', 10),  # decimal in YAML 1.2; PyYAML's YAML 1.1 constructor reads 8
        ('!!int "+4"', 4),
        ("!!float 4", 4.0),
        ('!!float ".5"', 0.5),
        ('!!bool "false"', False),
        ("!!null", None),
        ('!!null "~"', None),
        ('!!int "1:30"', "E001"),
        ('!!float "1:30"', "E001"),
        ('!!int "0b101"', "E001"),
        ('!!int "1_000"', "E001"),
        ('!!int "-0x1F"', "E001"),
        ('!!int "4.0"', "E001"),
        ("!!int true", "E001"),
        ("!!bool yes", "E001"),
        ("!!bool on", "E001"),
        ("!!null foo", "E001"),
        ("!!str [4]", "E001"),
        ("!!map [4]", "E001"),
        ("!!seq 4", "E001"),
        ('!!float "nan"', "E008"),
    ],
)
def test_explicit_tags_follow_yaml_1_2(written, value):
    """A tag takes exactly the forms YAML 1.2's core schema resolves to it: `!!str` keeps any
    text a string, and YAML 1.1's forms under `!!int`, `!!float` or `!!bool` are errors."""
    diags = Diagnostics()
    doc = load_text(f"v: {written}\n", "t.yaml", diags)
    if isinstance(value, str) and value[:1] == "E":
        assert doc is None and [(d.code, d.span.line, d.span.column) for d in diags] == [(value, 1, 4)]
    else:
        assert not list(diags) and doc.data["v"] == value and type(doc.data["v"]) is type(value)


def test_a_device_is_refused_without_reading_it():
    result = check_file("/dev/zero")
    assert [(d.code, d.message) for d in result.diagnostics] == [("E000", "/dev/zero is not a regular file (a device, FIFO or socket); give a spec file")]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert [d.code for d in check_file(str(fifo)).diagnostics] == ["E000"]


def test_a_directory_is_refused(tmp_path):
    assert [d.message for d in check_file(str(tmp_path)).diagnostics] == [f"{tmp_path} is a directory; give a spec file"]


def test_a_huge_file_is_read_only_up_to_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"archc: 1\n" + b"#" * (10 * 1024 * 1024))
    sizes = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def read(self, n=-1):
            data = self.f.read(n)
            sizes.append(len(data))
            return data

    monkeypatch.setattr("builtins.open", lambda p, mode="r", *a, **k: Counting(real_open(p, mode, *a, **k)) if str(p) == str(path) else real_open(p, mode, *a, **k))
    diags = check_file(str(path)).diagnostics
    assert [d.code for d in diags] == ["E005"]
    assert max(sizes) == 256 * 1024 + 1


# ---------------------------------------------------------------- every block type, every spec

SPECS = ALL_SPECS + TEST_SPECS


def block_spec(block) -> str:
    """A one-block spec from the block's declared example: inputs come through 1x1 convs."""
    inputs = block.example_inputs
    nodes = {}
    names = []
    if len(inputs) == 1 and len(inputs[0]) == 3:
        c, h, w = inputs[0]
        first = (c, h, w)
    else:
        first = (3, 8, 8)
    for i, shape in enumerate(inputs):
        name = f"src{i}"
        if len(shape) == 3:
            nodes[name] = {"type": "conv", "out": shape[0], "kernel": 1, "in": "input"} if (shape[1:] == first[1:]) else {"type": "avgpool", "kernel": first[1] // shape[1], "in": f"pre{i}"}
            if shape[1:] != first[1:]:
                nodes = {f"pre{i}": {"type": "conv", "out": shape[0], "kernel": 1, "in": "input"}, **nodes}
        else:
            nodes[f"flat{i}"] = {"type": "global_avgpool", "in": "input"}
            nodes[name] = {"type": "affine", "out": shape[0], "in": f"flat{i}"}
        names.append(name)
    node = {"type": block.name, **block.example_params, "in": names if block.arity is None else names[0]}
    nodes["block"] = node
    import yaml

    data = {"archc": 1, "name": "example", "input": list(first), "nodes": nodes}
    if isinstance(block.example_params.get("outputs"), list):  # a split: its last part is the output
        data["output"] = block.example_params["outputs"][-1]
    return yaml.safe_dump(data, sort_keys=False)


BLOCKS = [b.name for b in builtin_registry()]


@pytest.mark.parametrize("name", BLOCKS)
def test_every_block_type_emits_what_check_infers(name):
    block = builtin_registry().get(name)
    result = check_text(block_spec(block), f"<example {name}>")
    assert result.ok, [d.concise() for d in result.diagnostics]
    assert_emitted_equals_inferred(Compiled(result), batch=2)


def through_block_params(text: str) -> str:
    """The one-block spec `text` as the body of a composite whose `$parameters` hand the block
    its scalar parameters (and those it defaults): the emitter must store each and use it."""
    import yaml

    data = yaml.safe_load(text)
    node = data["nodes"]["block"]
    block = builtin_registry().get(node["type"])
    written = {k: v for k, v in node.items() if k not in ("type", "in")}
    given = {k: v for k, v in block.with_defaults(written).items()
             if k not in block.refs and k != "outputs" and isinstance(v, (bool, int, float, str))
             and (k in written or block.takes_default(k, written))}
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string"}
    data["nodes"]["block"] = {**node, **{k: f"${k}" for k in given}}
    data["blocks"] = {"wrapped": {"params": {k: {"type": kinds[type(v)]} for k, v in given.items()}, "nodes": data["nodes"]}}
    if "output" in data:  # a split's part is a node of the block now
        data["blocks"]["wrapped"]["output"] = data.pop("output")
    data["nodes"] = {"block": {"type": "wrapped", **given}}
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize("name", [b.name for b in builtin_registry() if not b.is_composite])
def test_every_block_type_takes_its_parameters_from_a_composite(name):
    """A block parameter written as `$param` reaches the emitted code as a stored attribute or
    a constructor argument, never as a bare name (upsample's scale once did: a NameError)."""
    text = through_block_params(block_spec(builtin_registry().get(name)))
    result = check_text(text, f"<{name} through $parameters>")
    assert result.ok, [d.concise() for d in result.diagnostics]
    assert_emitted_equals_inferred(Compiled(result), batch=2)


@pytest.mark.parametrize("path", SPECS)
def test_every_spec_emits_what_check_infers(path):
    assert_emitted_equals_inferred(archcompiler.compile(ROOT / path), batch=1)


def assert_emitted_equals_inferred(net, batch: int) -> None:
    """At every node, through forward hooks: the output shape is the inferred one; and the
    parameter count and FlopCounterMode's FLOPs are the analytic ones."""
    from torch.utils.flop_counter import FlopCounterMode

    model = net.module(seed=0).eval()
    seen = {}
    hooks = []
    for path, module, node in _modules_by_node(model, net.graph):
        hooks.append(module.register_forward_hook(lambda m, i, o, p=path: seen.__setitem__(p, _shapes(o))))
    x = torch.randn(batch, *net.input_shape)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    for h in hooks:
        h.remove()
    expected = {p: tuple(node.meta["shapes"]) if "shapes" in node.meta else node.shape for p, _, node in _modules_by_node(model, net.graph)}
    assert seen == expected
    assert _shapes(out) == (tuple(net.output_shapes) if len(net.output_shapes) > 1 else net.output_shape)
    assert sum(p.numel() for p in model.parameters()) == net.totals["params"]
    assert counter.get_total_flops() == batch * net.totals["flops"]


def _shapes(out) -> tuple:
    """A module's output shape without the batch; a block with several outputs returns a tuple."""
    return tuple(_shapes(o) for o in out) if isinstance(out, tuple) else tuple(out.shape[1:])


def _modules_by_node(model, graph, prefix=""):
    """(path, module, IR node) for every node that owns a module, at every depth."""
    for node in graph.layers():
        path = prefix + node.name
        module = getattr(model, node.name, None)
        if isinstance(module, torch.nn.Module):
            if not isinstance(module, torch.nn.ModuleList):  # a chained repeat's list is looped over, never called
                yield path, module, node
            if node.body is not None:
                yield from _modules_by_node(module, node.body, path + ".")


# ---------------------------------------------------------------- fuzzed plausible specs

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BLOCK_DEF = """
blocks:
  unit:
    params:
      out: {type: integer, minimum: 1, default: $in_channels}
      k: {type: integer, minimum: 1, default: 3}
      fn: {enum: [relu, silu, gelu, tanh], default: relu}
      pad: {oneOf: [{enum: [same, valid]}, {type: integer, minimum: 0}], default: same}
      gated: {type: number, default: 0}
    nodes:
      conv: {type: conv, out: $out, kernel: $k, padding: $pad, bias: false}
      bn: {type: batchnorm}
      act: {type: activation, fn: $fn}
      squeeze: {type: avgpool, kernel: $in_height, in: act}
      gate: {type: activation, fn: sigmoid}
      scale: {type: mul, offset: $gated, in: [act, gate]}
"""


@st.composite
def plausible_specs(draw):
    c, h = draw(st.integers(1, 6)), draw(st.integers(4, 12))
    lines = ["archc: 1", "name: fuzzed", f"input: [{c}, {h}, {h}]", BLOCK_DEF.strip(), "nodes:"]
    prev = "input"
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "norm", "act", "pool", "unit", "residual", "concat", "up"]))
        n = f"n{i}"
        if kind == "conv":
            pad = draw(st.sampled_from(["same", "valid", 0, 1]))
            stride = 1 if pad == "same" else draw(st.integers(1, 2))
            lines.append(f"  {n}: {{type: conv, out: {draw(st.integers(1, 8))}, kernel: {draw(st.sampled_from([1, 2, 3]))}, stride: {stride}, padding: {pad}, in: {prev}}}")
        elif kind == "norm":
            lines.append(f"  {n}: {{type: batchnorm, in: {prev}}}")
        elif kind == "act":
            lines.append(f"  {n}: {{type: activation, fn: {draw(st.sampled_from(['relu', 'sigmoid', 'silu', 'relu6']))}, in: {prev}}}")
        elif kind == "pool":
            lines.append(f"  {n}: {{type: {draw(st.sampled_from(['maxpool', 'avgpool']))}, kernel: 2, in: {prev}}}")
        elif kind == "unit":
            args = {"out": draw(st.integers(1, 8)), "k": draw(st.sampled_from([1, 2, 3])), "fn": draw(st.sampled_from(["relu", "silu", "gelu", "tanh"]))}
            if draw(st.booleans()):
                args["pad"] = draw(st.sampled_from(["same", 1]))
            if draw(st.booleans()):
                args["gated"] = draw(st.sampled_from([0, 1, 0.5]))
            lines.append(f"  {n}: {{type: unit, " + ", ".join(f"{k}: {v}" for k, v in args.items()) + f", in: {prev}}}")
        elif kind == "residual":
            lines.append(f"  {n}_f: {{type: conv, padding: same, in: {prev}}}")
            lines.append(f"  {n}: {{type: add, in: [{prev}, {n}_f]}}")
        elif kind == "concat":
            lines.append(f"  {n}_f: {{type: conv, out: {draw(st.integers(1, 4))}, kernel: 1, in: {prev}}}")
            lines.append(f"  {n}: {{type: concat, in: [{prev}, {n}_f]}}")
        else:
            lines.append(f"  {n}: {{type: upsample, scale: 2, mode: {draw(st.sampled_from(['nearest', 'bilinear']))}, in: {prev}}}")
        prev = n
    lines.append(f"  head: {{type: global_avgpool, in: {prev}}}")
    return "\n".join(lines) + "\n"


@settings(max_examples=int(os.environ.get('ARCHC_FUZZ_EXAMPLES', 25)), deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(plausible_specs())
def test_fuzzed_specs_emit_what_check_infers(text):
    result = check_text(text, "fuzzed.yaml")
    assume(result.ok)  # a map may shrink below 1x1: that is check's job, tested elsewhere
    net = Compiled(result)
    assert_emitted_equals_inferred(net, batch=2)
    tree = ast.parse(net.source)
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        init = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
        read = {n.id for n in ast.walk(init) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert {a.arg for a in init.args.args[1:]} <= read, cls.name


# ---------------------------------------------------------------- a second input size



@pytest.mark.parametrize("path", spec_params(SPECS))
def test_emitted_models_run_at_a_second_input_size(path):
    """The model emitted for a spec, run at another size, equals the model check builds at
    that size (same weights): nothing of the first size is baked in."""
    import yaml

    net = archcompiler.compile(ROOT / path)
    c, h, w = net.input_shape
    h2, w2 = ((h * 3) // 4, (w * 3) // 4) if h >= 128 else ((h * 3) // 2, (w * 3) // 2)  # 224 -> 168, 64 -> 96
    data = yaml.safe_load(net.spec_text)
    data["input"] = [c, h2, w2]
    other = archcompiler.compile(yaml.safe_dump(data, sort_keys=False), file=f"{path}@{h2}")
    a, b = net.module(seed=0).eval(), other.module(seed=0).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, c, h2, w2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert _shapes(ya) == (tuple(other.output_shapes) if len(other.output_shapes) > 1 else other.output_shape)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)  # tuples of outputs compare item by item


# ---------------------------------------------------------------- each primitive's parameter space

GRIDS = {
    "conv": [
        {"out": 4, "kernel": k, "stride": s, "padding": pad, "dilation": d, "groups": g}
        for k in (1, 2, 3) for s in (1, 2) for pad in ("same", "valid", 1) for d in (1, 2) for g in (1, 2)
        if not (pad == "same" and s != 1)
    ] + [
        {"out": 4, "kernel": k, "stride": s, "padding": pad, "dilation": d}
        for k in ([1, 3], [2, 3], [3, 1]) for s in ([1, 2], [2, 1]) for pad in ("valid", [0, 1], [1, 0]) for d in (1, [2, 1])
    ],
    "conv_transpose": [
        {"out": 2, "kernel": k, "stride": s, "padding": pad, "output_padding": op, "dilation": d}
        for k in (1, 2, 3, [2, 3]) for s in (1, 2, [2, 1]) for pad in (0, 1) for op in (0, 1) for d in (1, 2)
    ],
    "maxpool": [{"kernel": k, "stride": s, "padding": pad, "ceil_mode": c} for k in (1, 2, 3) for s in (1, 2, 3) for pad in (0, 1) for c in (False, True) if 2 * pad <= k]
    + [{"kernel": [1, 3], "stride": [1, 2], "padding": [0, 1]}, {"kernel": [3, 2], "padding": [1, 0], "ceil_mode": True}],
    "avgpool": [{"kernel": k, "stride": s, "padding": pad, "ceil_mode": c} for k in (1, 2, 3) for s in (1, 2, 3) for pad in (0, 1) for c in (False, True) if 2 * pad <= k]
    + [{"kernel": [1, 3], "stride": [1, 2], "padding": [0, 1], "count_include_pad": False}, {"kernel": [3, 2], "stride": 1}],
    "groupnorm": [{"groups": g, "affine": a} for g in (1, 2, 3, 4) for a in (False, True)],
    "channel_shuffle": [{"groups": g} for g in (1, 2, 3, 4)],
    "global_avgpool": [{"keep_map": k} for k in (False, True)],
    "global_maxpool": [{"keep_map": k} for k in (False, True)],
    "upsample": [{"scale": s, "mode": m} for s in (1, 2, 3) for m in ("nearest", "bilinear")],
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("block", sorted(GRIDS))
def test_primitive_parameter_grid_shapes_match_pytorch(block):
    """Every combination, on odd and even map sizes: check's shape, parameter count and FLOPs
    are the emitted module's."""
    for params in GRIDS[block]:
        for size in (7, 8):
            node = {"type": block, **params}
            text = "archc: 1\nname: grid\ninput: [4, %d, %d]\nnodes:\n  n: %s\n" % (size, size, str(node).replace("'", ""))
            result = check_text(text, "grid.yaml")
            if not result.ok:
                continue  # refused by check (e.g. a window larger than the map): nothing to run
            try:
                assert_emitted_equals_inferred(Compiled(result), batch=1)
            except AssertionError as e:
                raise AssertionError(f"{block} {params} at {size}x{size}") from e


# ---------------------------------------------------------------- integer arithmetic (language v2)

ARITH_SPEC = spec("""
    archc: 1
    name: arith
    input: [3, 16, 16]
    blocks:
      bottleneck:
        params:
          width: {type: integer, minimum: 1}
          kernel: {type: integer, minimum: 1, default: 3}
          hidden: {type: integer, minimum: 1, default: $in_channels // 2}
        nodes:
          reduce: {type: conv, out: $width, kernel: 1, bias: false}
          conv: {type: conv, out: $width, kernel: $kernel, padding: ($kernel - 1) // 2, bias: false}
          expand: {type: conv, out: 4 * $width, kernel: 1}
          squeeze: {type: conv, out: "max($hidden, 8)", kernel: 1}
    nodes:
      stem: {type: conv, out: 16, kernel: 3, padding: 1}
      b1: {type: bottleneck, width: 8}
      b2: {type: bottleneck, width: 2, kernel: 5}
""")


def test_arithmetic_values_reach_shapes_and_the_code_keeps_the_expression():
    net = archcompiler.compile(ARITH_SPEC)
    b1, b2 = net.graph.nodes["b1"], net.graph.nodes["b2"]
    assert b1.body.nodes["expand"].shape == (32, 16, 16) and b1.body.nodes["squeeze"].shape == (8, 16, 16)
    assert b2.body.nodes["conv"].params["padding"] == 2 and b2.body.nodes["squeeze"].shape == (8, 16, 16)
    src = net.source
    assert "nn.Conv2d(width, 4 * width, kernel_size=1)" in src
    assert "padding=(kernel - 1) // 2" in src and "max(hidden, 8)" in src
    assert src.count("class Bottleneck(") == 1
    assert_emitted_equals_inferred(net, batch=1)


# ---------------------------------------------------------------- repetition (language v2)

REPEAT_SPEC = spec("""
    archc: 1
    name: rep
    input: [3, 32, 32]
    blocks:
      basic:
        params:
          out: {type: integer, minimum: 1, default: $in_channels}
          stride: {type: integer, minimum: 1, default: 1}
        nodes:
          conv1: {type: conv, out: $out, kernel: 3, stride: $stride, padding: 1, bias: false}
          bn1: {type: batchnorm}
          relu: {type: activation}
      stage:
        params:
          blocks: {type: integer, minimum: 1}
          out: {type: integer, minimum: 1}
        nodes:
          body: {type: basic, repeat: $blocks, out: $out, first: {stride: 2}}
    nodes:
      stem: {type: conv, out: 16, kernel: 3, padding: 1}
      layer1: {type: basic, repeat: 2}
      layer2: {type: basic, repeat: 3, out: 32, first: {stride: 2}}
      layer3: {type: stage, blocks: 2, out: 48}
      convs: {type: conv, repeat: 2, kernel: 1}
      pool: {type: global_avgpool}
""")


def test_a_repeated_block_reads_like_torchvision():
    net = archcompiler.compile(REPEAT_SPEC)
    assert net.graph.nodes["layer2"].shape == (32, 16, 16) and net.graph.nodes["layer3"].shape == (48, 8, 8)
    src = net.source
    assert "self.layer1 = nn.Sequential(Basic(16, out=16), Basic(16, out=16))" in src
    assert "self.layer2 = nn.Sequential(Basic(16, out=32, stride=2), *[Basic(32, out=32) for _ in range(2)])" in src
    assert "Basic(in_channels, out=out, stride=2), *[Basic(out, out=out) for _ in range(blocks - 1)]" in src  # a loop over a parameter
    keys = net.module().state_dict().keys()
    assert {"layer2.0.conv1.weight", "layer2.2.bn1.running_mean", "layer3.body.1.conv1.weight", "convs.1.weight"} <= set(keys)
    assert_emitted_equals_inferred(net, batch=1)
    table = net.table()
    rows = [line.split()[:2] for line in table.splitlines()]
    assert ["layer2", "basic"] in rows and "layer2  basic x3" in table and ["0", "basic"] not in rows  # collapsed by default
    assert ["0", "basic"] in [line.split()[:2] for line in net.table(expand=True).splitlines()]


# ---------------------------------------------------------------- optional nodes (language v2)

OPTIONAL_SPEC = spec("""
    archc: 1
    name: irnet
    input: [3, 32, 32]
    blocks:
      inverted_residual:
        params:
          out: {type: integer, minimum: 1}
          stride: {type: integer, minimum: 1, default: 1}
          expand: {type: integer, minimum: 1, default: 6}
        nodes:
          expand_conv: {type: conv, out: $in_channels * $expand, kernel: 1, bias: false, when: $expand != 1}
          expand_bn: {type: batchnorm, when: $expand != 1}
          dw: {type: conv, kernel: 3, stride: $stride, padding: 1, groups: $in_channels * $expand, bias: false}
          project: {type: conv, out: $out, kernel: 1, bias: false}
          add: {type: add, in: [input, project], when: $stride == 1 and $in_channels == $out, otherwise: project}
    nodes:
      stem: {type: conv, out: 16, kernel: 3, stride: 2, padding: 1}
      b1: {type: inverted_residual, out: 16, expand: 1}
      b2: {type: inverted_residual, out: 24, stride: 2}
      b3: {type: inverted_residual, out: 24}
""")


def test_optional_nodes_are_left_out_and_the_flow_reconnects():
    net = archcompiler.compile(OPTIONAL_SPEC)
    bodies = {n: set(net.graph.nodes[n].body.nodes) - {"input"} for n in ("b1", "b2", "b3")}
    assert bodies["b1"] == {"dw", "project", "add"}  # no expansion
    assert bodies["b2"] == {"expand_conv", "expand_bn", "dw", "project"}  # no residual: stride 2
    assert bodies["b3"] == {"expand_conv", "expand_bn", "dw", "project", "add"}
    assert net.graph.nodes["b1"].body.nodes["dw"].inputs == ["input"]
    assert net.graph.nodes["b2"].body.output == "project"
    assert_emitted_equals_inferred(net, batch=1)
    model = net.module()
    # one class, as torchvision writes one InvertedResidual: absent modules are None, so
    # they have no state_dict keys; the residual add is a flag read in forward
    assert net.source.count("class InvertedResidual(") == 1 and "InvertedResidual2" not in net.source
    assert model.b1.expand_conv is None and model.b3.expand_conv is not None
    assert not any(k.startswith("b1.expand") for k in model.state_dict())
    assert (model.b1.use_add, model.b2.use_add, model.b3.use_add) == (True, False, True)


def test_spec_wide_defaults_reach_every_node_of_their_type_and_lose_to_a_nodes_own():
    net = archcompiler.compile(spec("""
        archc: 1
        name: defs
        input: [3, 16, 16]
        defaults:
          batchnorm: {eps: 0.001, momentum: 0.01}
          conv: {bias: false}
        nodes:
          c: {type: conv, out: 8, padding: 1}
          bn: {type: batchnorm}
          r: {type: residual}
          c2: {type: conv, out: 8, bias: true}
    """))
    model = net.module()
    assert (model.bn.eps, model.bn.momentum) == (0.001, 0.01)
    assert (model.r.bn1.eps, model.r.bn2.momentum) == (0.001, 0.01)  # inside a stdlib block
    assert model.c.bias is None and model.c2.bias is not None
    assert_emitted_equals_inferred(net, batch=1)


def test_a_split_takes_its_sizes_from_defaults_but_not_its_parts():
    """`sizes` is a value like any other (a split's own wins); `outputs` names nodes and
    `take` is set by the compiler, so as defaults they were misbuilt or overridden silently."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: d
        input: [16, 8, 8]
        defaults:
          split: {sizes: [4, 12]}
        nodes:
          s: {type: split, outputs: [a, b]}
          t: {type: split, outputs: [c, d], sizes: [8, 8], in: input}
          cat: {type: concat, in: [a, b, c, d]}
    """))
    assert [net.graph.nodes[n].shape[0] for n in "abcd"] == [4, 12, 8, 8]
    assert_emitted_equals_inferred(net, batch=1)
    for key in ("outputs: [a, b]", "take: a"):
        text = f"archc: 1\nname: d\ninput: [16, 8, 8]\ndefaults:\n  split: {{{key}}}\nnodes:\n  s: {{type: split, outputs: [l, r]}}\n  c: {{type: concat, in: [l, r]}}\n"
        diags = check_text(text, "t.yaml").diagnostics
        assert [(d.code, d.span.line, d.span.column) for d in diags] == [("E212", 5, 11)], [d.concise() for d in diags]


def test_a_default_for_one_variants_option_leaves_the_other_variants_alone():
    net = archcompiler.compile(spec("""
        archc: 1
        name: d
        input: [3, 8, 8]
        defaults:
          activation: {negative_slope: 0.2}
        nodes:
          c: {type: conv, out: 4}
          r: {type: activation}
          l: {type: activation, fn: leaky_relu}
    """))
    model = net.module()
    assert isinstance(model.r, torch.nn.ReLU) and model.l.negative_slope == 0.2


def test_variants_whose_code_differs_keep_a_class_each_and_stay_exact():
    """An optional node that changes the width makes a later node's code differ between
    instances in a way no single expression covers (in_channels * 2 against in_channels):
    the emitter must not merge them into one wrong class."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: widen
        input: [4, 8, 8]
        blocks:
          maybe_wide:
            params:
              wide: {type: boolean, default: false}
            nodes:
              widen: {type: conv, out: $in_channels * 2, kernel: 1, when: $wide}
              c: {type: conv, kernel: 3, padding: 1}
        nodes:
          a: {type: maybe_wide, wide: true}
          b: {type: maybe_wide}
    """))
    assert "class MaybeWide2(" in net.source
    assert_emitted_equals_inferred(net, batch=1)


def test_conditions_group_with_parentheses_and_read_as_python_in_the_class():
    net = archcompiler.compile(spec("""
        archc: 1
        name: cond
        input: [8, 8, 8]
        blocks:
          gated:
            params:
              k: {type: integer, default: 1}
              on: {type: boolean, default: true}
            nodes:
              c: {type: conv, kernel: 1, when: "not ($k == 1 and $on) and ($k + 1) * 2 != 8"}
              r: {type: activation}
        nodes:
          a: {type: gated}
          b: {type: gated, on: false}
          d: {type: gated, k: 3}
    """))
    bodies = {n: set(net.graph.nodes[n].body.nodes) - {"input"} for n in "abd"}
    # `not` binds to the parenthesised group and `and` joins both sides: a fails the first
    # side, d the second (read as not ((...) and ...), d would keep its conv)
    assert bodies == {"a": {"r"}, "b": {"c", "r"}, "d": {"r"}}
    assert "        if not (k == 1 and on) and (k + 1) * 2 != 8:\n            self.c = nn.Conv2d(" in net.source
    assert_emitted_equals_inferred(net, batch=1)


def test_a_string_parameter_compares_with_a_quoted_string():
    """An enum-valued parameter picks a variant (EfficientNetV2's fused or plain MBConv)."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: modes
        input: [8, 8, 8]
        blocks:
          mb:
            params:
              mode: {enum: [plain, fused], default: plain}
            nodes:
              fused: {type: conv, kernel: 3, padding: 1, when: "$mode == 'fused'"}
              plain: {type: conv, kernel: 1, when: '$mode != "fused" and $in_channels > 4'}
        nodes:
          a: {type: mb, mode: fused}
          b: {type: mb}
    """))
    assert {n: set(net.graph.nodes[n].body.nodes) - {"input"} for n in "ab"} == {"a": {"fused"}, "b": {"plain"}}
    assert 'nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1) if mode == "fused" else None' in net.source
    assert_emitted_equals_inferred(net, batch=1)


@pytest.mark.parametrize("cond, message", [
    ("$mode < 'x'", "a string compares only with == and !=, not <"),
    ("$mode == fused", "a parameter is written $fused, and a string to compare with is quoted, 'fused'"),
    ("$k + 'x' == 1", "the string 'x' is not a number"),
    ("abs($k) == 1", "unknown function 'abs': the functions are min(), max(), round() and int()"),
    ("$k == 'x'", "$k holds no strings, so it never equals 'x'"),
    ("$u == 'two'", "cannot compare 2 with 'two'"),
    ("$mode == 'a\\\\b'", "a quoted string may not hold a backslash"),  # YAML's "\\" is one backslash
    ("$mode == 'abc", "the string opened here is never closed with '"),
])
def test_strings_and_words_in_conditions_are_explained(cond, message):
    result = check_text(spec(f"""
        archc: 1
        name: modes
        input: [8, 8, 8]
        blocks:
          mb:
            params: {{mode: {{type: string, default: a}}, k: {{type: integer, default: 1}}, u: {{default: 2}}}}
            nodes:
              c: {{type: conv, when: "{cond}"}}
        nodes:
          a: {{type: mb}}
    """), "modes.yaml")
    assert not result.ok
    assert message in result.diagnostics[0].message, result.diagnostics[0].message


def test_a_condition_is_written_from_its_tree_not_computed():
    """`$flag or 4 // $z > 1` never divides when flag holds; the emitted condition must not
    compute the skipped side either (it once raised division by zero in emit)."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: m
        input: [4, 8, 8]
        blocks:
          b:
            params:
              flag: {type: boolean, default: true}
              z: {type: integer, default: 0}
            nodes:
              c: {type: conv, out: 4, kernel: 1, when: "$flag or 4 // $z > 1"}
        nodes:
          a: {type: b}
          a2: {type: b, z: 1, flag: false}
    """))
    assert "if flag or 4 // z > 1 else None" in net.source
    assert_emitted_equals_inferred(net, batch=1)


def test_a_switched_off_node_may_read_a_split_part():
    result = check_text(spec("""
        archc: 1
        name: m
        input: [4, 8, 8]
        nodes:
          s: {type: split, outputs: [p, q]}
          a: {type: conv, in: p, when: false}
          b: {type: concat, in: [p, q]}
    """), "m.yaml")
    assert result.ok, [d.concise() for d in result.diagnostics]


def test_round_is_pythons_and_the_code_keeps_it():
    """RegNet's squeeze width is int(round(0.25 * w)): halves go to the even integer, as in
    Python, and the emitted constructor computes it from its own arguments."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: r
        input: [10, 8, 8]
        blocks:
          se:
            params: {ratio: {type: number, default: 0.25}}
            nodes:
              pool: {type: global_avgpool, keep_map: true}
              fc1: {type: conv, out: "round($in_channels * $ratio)", kernel: 1}
        nodes:
          a: {type: se}
          b: {type: se, ratio: 0.45, in: input}
    """))
    assert [net.graph.nodes[n].shape[0] for n in "ab"] == [round(2.5), round(4.5)] == [2, 4]
    assert "nn.Conv2d(in_channels, round(in_channels * ratio), kernel_size=1)" in net.source
    assert_emitted_equals_inferred(net, batch=1)


MAKE_DIVISIBLE = "max(8, int({v} + 4) // 8 * 8)"  # torchvision's _make_divisible(v, 8), before its 10% rule


@pytest.mark.parametrize("ratio, expected", [(0.75, 16), (0.35, 8), (0.625, 16), (6.25, 104)])
def test_a_conditional_value_is_pythons_and_the_code_keeps_it(ratio, expected):
    """torchvision's _make_divisible adds a divisor when rounding lost more than 10%: one
    value with int() and `A if C else B`, computed as Python computes it (only the branch
    chosen) and emitted as the same expression over the constructor's own arguments."""
    v = "$in_channels * $ratio"
    rounded = MAKE_DIVISIBLE.format(v=v)
    width = f"{rounded} + (8 if {rounded} < 0.9 * {v} else 0)"
    net = archcompiler.compile(spec(f"""
        archc: 1
        name: divisible
        input: [16, 8, 8]
        blocks:
          expand:
            params: {{ratio: {{type: number, exclusiveMinimum: 0}}}}
            nodes:
              conv: {{type: conv, out: "{width}", kernel: 1}}
        nodes:
          a: {{type: expand, ratio: {ratio}}}
    """))
    c = 16 * ratio
    made = max(8, int(c + 8 / 2) // 8 * 8)
    assert net.graph.nodes["a"].shape[0] == expected == (made + 8 if made < 0.9 * c else made)
    assert "+ (8 if max(8, int(in_channels * ratio + 4) // 8 * 8) < 0.9 * in_channels * ratio else 0)," in net.source
    assert_emitted_equals_inferred(net, batch=1)


@pytest.mark.parametrize("expr, a, b, value", [
    ("($a if $a > $b else $b) if $a > 2 else 100", 5, 9, 9),
    ("($a if $a > $b else $b) if $a > 2 else 100", 2, 1, 100),
    ("$a if $a > 2 else $b if $b > 2 else 7", 1, 1, 7),
    ("2 * ($a if $a > 2 else $b) - ($b if $b < 4 else 4 // ($a - 1))", 1, 3, 3),
    ("$b // $a if $a > 0 else 0", 3, 9, 3),
    ("$a if ($a > 2) else 8", 5, 0, 5),  # the condition in parentheses, as Python allows
    ("$a if not ($a > 2) else 8", 5, 0, 8),
    ("$a if ($b > 2 or $a == $b - 1) else 7", 1, 2, 1),  # Xception's grow_first rule
    ("$a if (($a > 2) and not ($b > 2)) else 7", 5, 1, 5),
    ("($a if ($a > 2) else 8) * ($b if ($b + 1) * 2 > 4 else 3)", 1, 2, 16),
])
def test_conditional_values_group_as_python_reads_them(expr, a, b, value):
    """A conditional in the branch Python would read as part of the else branch is written
    bracketed, and a branch not taken is never computed (4 // 0 above)."""
    from archcompiler.ir.arith import evaluate, parse
    from archcompiler.ir.expr import Sym, render

    sym = evaluate(parse(expr), {"a": Sym.var("a", a), "b": Sym.var("b", b)})
    assert evaluate(parse(expr), {"a": a, "b": b}) == sym.value == value
    assert eval(render(sym.expr), {}, {"a": a, "b": b}) == value  # noqa: S307 (generated arithmetic)


def test_a_conditional_in_a_condition_or_without_else_is_explained():
    result = check_text(spec("""
        archc: 1
        name: c
        input: [8, 8, 8]
        blocks:
          b:
            params: {k: {type: integer, default: 3}}
            nodes:
              c: {type: conv, out: $k if $k > 2, kernel: 1}
              d: {type: conv, kernel: 1, when: $k if $k > 1 else 2 == 3}
        nodes:
          x: {type: b}
    """))
    messages = [d.message for d in result.diagnostics]
    assert any("the expression ends too early" in m for m in messages), messages
    assert any("a conditional value inside a condition is bracketed" in m for m in messages), messages


INDEX_SPEC = spec("""
    archc: 1
    name: idx
    input: [8, 16, 16]
    blocks:
      res:
        params:
          sd: {type: number, minimum: 0, maximum: 1, default: 0}
          width: {type: integer, default: 8}
        nodes:
          c: {type: conv, out: $width, kernel: 3, padding: 1}
          dp: {type: drop_path, p: $sd}
          add: {type: add, in: [input, dp]}
      stage:
        params:
          n: {type: integer, default: 3}
        nodes:
          blocks: {type: res, repeat: $n, sd: 0.1 * $index / $n}
    nodes:
      a: {type: res, repeat: 4, sd: "0.2 * ($index + 1) / 8"}
      s: {type: stage}
      t: {type: stage, n: 2}
""")


def test_index_numbers_a_repeated_nodes_instances_for_a_drop_path_schedule():
    """Stochastic depth grows linearly with depth (torchvision's EfficientNet and ConvNeXt):
    `$index` is each instance's number and `/` gives the decimal probability."""
    net = archcompiler.compile(INDEX_SPEC)
    model = net.module()
    assert [m.dp.p for m in model.a] == [0.2 * (i + 1) / 8 for i in range(4)]
    assert [m.dp.p for m in model.s.blocks] == [0.1 * i / 3 for i in range(3)]
    assert [m.dp.p for m in model.t.blocks] == [0.1 * i / 2 for i in range(2)]
    # inside a block, the count and the schedule stay expressions: one loop, right for any n
    assert "nn.Sequential(*[Res(in_channels, sd=0.1 * index / n) for index in range(n)])" in net.source
    assert_emitted_equals_inferred(net, batch=2)


def test_index_outside_a_repeat_and_a_decimal_where_an_integer_goes_are_errors():
    bad = spec("""
        archc: 1
        name: bad
        input: [8, 16, 16]
        blocks:
          b:
            params:
              w: {type: integer, default: 8}
            nodes:
              c: {type: conv, out: $w / 2, kernel: 1}
        nodes:
          x2: {type: b}
    """)
    msgs = [d.message for d in check_text(bad, "<bad>").diagnostics]
    assert msgs == ["node 'x2' (b) > 'out' in node 'c' of block 'b' must be an integer, got 4.0, from $w / 2; // divides to an integer"]
    msgs = [d.message for d in check_text(bad.replace("x2: {type: b}", "x1: {type: conv, out: \"8 + $index\"}"), "<bad>").diagnostics]
    assert msgs == ["'$index' numbers the instances of a repeated node, but node 'x1' has no 'repeat'"]


SPLIT_SPEC = spec("""
    archc: 1
    name: shuf
    input: [16, 16, 16]
    blocks:
      shuffle_unit:
        nodes:
          halves: {type: split, outputs: [keep, branch]}
          c1: {type: conv, kernel: 1, in: branch}
          dw: {type: conv, kernel: 3, padding: 1, groups: $in_channels // 2}
          c2: {type: conv, kernel: 1}
          cat: {type: concat, in: [keep, c2]}
          shuffle: {type: channel_shuffle, groups: 2}
    nodes:
      u: {type: shuffle_unit, repeat: 2}
      parts: {type: split, outputs: [a, b, c], sizes: [2, 4, 10]}
      ca: {type: conv, out: 4, kernel: 1, in: c}
      cat: {type: concat, in: [a, b, ca]}
""")


def test_split_parts_are_nodes_read_by_name_and_views_of_the_right_channels():
    net = archcompiler.compile(SPLIT_SPEC)
    assert [net.graph.nodes[n].shape[0] for n in "abc"] == [2, 4, 10]
    assert "a = x.narrow(1, 0, 2)" in net.source and "x = x.narrow(1, 6, 10)" in net.source
    # inside a block the offsets follow the input: right for any width
    assert "keep = x.narrow(1, 0, self.in_channels // 2)" in net.source
    model = net.module().eval()
    x = torch.randn(1, 16, 16, 16)
    with torch.no_grad():
        u = model.u(x)
        assert torch.equal(model(x)[:, :6], u[:, :6])  # a and b pass through untouched
    assert_emitted_equals_inferred(net, batch=2)


@pytest.mark.parametrize("change, code, message", [
    ("ca: {type: conv, out: 4, kernel: 1, in: parts}", "E300", "node 'ca' reads 'parts', a split: read one of its parts (a, b, c)"),
    ("parts: {type: split, outputs: [a, b, c, ca], sizes: [2, 4, 5, 5]}", "E212", "split 'parts' names a part 'ca', which is the name of a node; choose another"),
    ("parts: {type: split, outputs: [a, b, c], sizes: [2, 4, 9]}", "E412", "sizes add up to 15, but the input has 16 channels"),
    ("parts: {type: split, outputs: [a, b, c]}", "E412", "16 channels do not split into 3 equal parts; give sizes"),
])
def test_split_misuse_is_reported_at_the_split(change, code, message):
    key = change.split(":")[0]
    lines = [line[: len(line) - len(line.lstrip())] + change if line.strip().startswith(key + ":") and line.startswith("  ") and not line.startswith("    ") else line for line in SPLIT_SPEC.splitlines()]
    diags = check_text("\n".join(lines) + "\n", "<split>").diagnostics
    assert [d.code for d in diags] == [code] and message in diags[0].message, [d.concise() for d in diags]


# Found by review: three ways the one-class-per-block emitter went wrong.
LONG_OPTIONAL_MERGE = spec("""
    archc: 1
    name: t
    input: [8, 16, 16]
    blocks:
      blk:
        params: {out: {type: integer, minimum: 1}}
        nodes:
          a_really_quite_long_projection_batchnorm_name_here: {type: conv, out: $out, kernel: 1}
          add_the_residual_shortcut: {type: add, in: [input, a_really_quite_long_projection_batchnorm_name_here], when: $in_channels == $out, otherwise: a_really_quite_long_projection_batchnorm_name_here}
    nodes:
      a: {type: blk, out: 8}
      b: {type: blk, out: 16}
""")


def test_a_long_optional_merge_keeps_the_input_it_adds():
    """Split over lines, `x = x + y if flag else y` must not assign x before reading it."""
    model = archcompiler.compile(LONG_OPTIONAL_MERGE).module().eval()
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(model.a(x), x + model.a.a_really_quite_long_projection_batchnorm_name_here(x))


def test_a_split_inside_a_block_with_optional_nodes():
    net = archcompiler.compile(spec("""
        archc: 1
        name: t
        input: [8, 8, 8]
        blocks:
          blk:
            params: {expand: {type: integer, default: 1}}
            nodes:
              pre: {type: conv, out: $in_channels * $expand, kernel: 1, when: $expand != 1}
              halves: {type: split, outputs: [keep, branch]}
              c1: {type: conv, kernel: 1, in: branch}
              cat: {type: concat, in: [keep, c1]}
        nodes:
          a: {type: blk, expand: 2}
          b: {type: blk}
    """))
    assert net.source.count("class Blk(") == 1
    assert_emitted_equals_inferred(net, batch=1)


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(sys.executable), "ruff")), reason="ruff not installed")
def test_long_conditions_are_laid_out_as_ruff_format_does(tmp_path):
    net = archcompiler.compile(spec("""
        archc: 1
        name: t
        input: [8, 16, 16]
        blocks:
          blk:
            params:
              alpha_parameter_name: {type: integer, default: 1}
              beta_parameter_name: {type: integer, default: 2}
              gamma_parameter_name: {type: integer, default: 3}
            nodes:
              c: {type: conv, out: 8, kernel: 1, when: $alpha_parameter_name == 1 and $beta_parameter_name == 2 and $gamma_parameter_name == 3 and $in_channels == 8 and $alpha_parameter_name != $beta_parameter_name}
              add: {type: add, in: [input, c], when: $alpha_parameter_name == 1 and $beta_parameter_name == 2 and $gamma_parameter_name == 3 and $in_channels == 8, otherwise: c}
              fin: {type: activation, fn: relu}
        nodes:
          a: {type: blk}
          b: {type: blk, alpha_parameter_name: 2}
    """))
    target = tmp_path / "model.py"
    target.write_text(net.source)
    ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
    fmt = subprocess.run([ruff, "format", "--isolated", "--line-length", "120", "--check", str(target)], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr + net.source
    assert "        if (\n" in net.source and "        self.use_add = (\n" in net.source


def test_an_instance_whose_optional_nodes_are_all_absent_is_the_identity(tmp_path):
    """Like torchvision's nn.Identity in place of a block: check, emit and draw it."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: ident
        input: [8, 16, 16]
        blocks:
          maybe:
            params: {on: {type: boolean, default: false}}
            nodes:
              c: {type: conv, kernel: 3, padding: 1, when: $on}
              r: {type: activation, when: $on}
        nodes:
          a: {type: maybe}
          b: {type: maybe, on: true}
    """))
    assert net.graph.nodes["a"].body.output == "input" and net.graph.nodes["a"].meta["params"] == 0
    assert_emitted_equals_inferred(net, batch=1)
    model = net.module().eval()
    x = torch.randn(1, 8, 16, 16)
    assert torch.equal(model.a(x), x)
    from archcompiler.backends.dot import to_dot

    to_dot(net.graph, net.result.registry, expand=True)  # draws without a node in its cluster


def test_expressions_inside_lists_kernel_pairs_and_split_sizes():
    net = archcompiler.compile(spec("""
        archc: 1
        name: lst
        input: [8, 16, 16]
        blocks:
          sep:
            params:
              k: {type: integer, default: 7}
              a: {type: integer, default: 4}
            nodes:
              h: {type: conv, kernel: [1, $k], padding: [0, ($k - 1) // 2]}
              v: {type: conv, kernel: [$k, 1], padding: ["($k - 1) // 2", 0]}
              parts: {type: split, outputs: [p, q], sizes: [$a, $in_channels - $a]}
              cat: {type: concat, in: [q, p]}
        nodes:
          s: {type: sep}
          t: {type: sep, k: 3, a: 2}
    """))
    assert "kernel_size=[1, k], padding=[0, (k - 1) // 2]" in net.source
    assert net.graph.nodes["t"].body.nodes["q"].shape == (6, 16, 16)
    assert_emitted_equals_inferred(net, batch=1)
    bad = check_text(spec("""
        archc: 1
        name: lst
        input: [8, 16, 16]
        blocks:
          sep:
            nodes:
              h: {type: conv, kernel: [1, $kk]}
        nodes:
          s: {type: sep}
    """), "<bad>").diagnostics
    assert [(d.code, d.span.column) for d in bad] == [("E206", 35)], [d.concise() for d in bad]  # at the $


def test_index_that_changes_the_width_inside_a_block_hands_each_instance_its_input():
    """Found by a hostile-input hunt: `out: 8 + $index` inside a block crashed (KeyError), and
    each instance must read the previous one's width, 8 + (index - 1), in the emitted loop."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: t
        input: [16, 32, 32]
        blocks:
          stage:
            params: {n: {type: integer, default: 3}}
            nodes:
              u: {type: conv, repeat: $n, out: 8 + $index, kernel: 1}
              v: {type: conv, repeat: 2, out: 4 + $index, kernel: 1, first: {out: 5}}
        nodes:
          s: {type: stage}
          t: {type: stage, n: 4}
    """))
    assert "*[nn.Conv2d(8 + (index - 1), 8 + index, kernel_size=1) for index in range(1, n)]" in net.source
    assert net.graph.nodes["t"].shape == (5, 32, 32) and net.graph.nodes["t"].body.nodes["u"].shape == (11, 32, 32)
    assert_emitted_equals_inferred(net, batch=1)


# ---------------------------------------------------------------- blocks with several outputs

SEVERAL = ROOT / "tests" / "specs" / "several_outputs.yaml"


def test_a_block_with_several_outputs_emits_what_check_infers():
    net = archcompiler.compile(SEVERAL)
    assert_emitted_equals_inferred(net, batch=2)
    assert "c3, c4, x = self.body(x)  # (B, 32, 16, 16), (B, 64, 8, 8), (B, 128, 4, 4)" in net.source
    assert "p3, p4, x = self.neck(c3, c4, x)" in net.source
    assert "-> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:" in net.source
    assert "lat5 = self.lat5(c5)  # (B, out, H_c5, W_c5)" in net.source  # sized by a named input: relative to it


def test_several_outputs_inside_a_block_with_variants_and_optional_nodes():
    """A block with several outputs used inside another block, whose instances differ in an
    optional node: one class for the outer block, its tuple unpacked where it is used."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: nested
        input: [8, 16, 16]
        blocks:
          two:
            params: {s: {type: integer, default: 1}, extra: {type: boolean, default: false}}
            nodes:
              a: {type: conv, out: 8, kernel: 3, stride: $s, padding: 1}
              b: {type: conv, out: 4, kernel: 1, in: input, stride: $s}
              c: {type: activation, fn: relu, in: b, when: $extra}
            output: [a, c]
          stage:
            params: {extra: {type: boolean, default: false}}
            nodes:
              t: {type: two, s: 2, extra: $extra, outputs: [hi, lo]}
              cat: {type: concat, in: [hi, lo]}
        nodes:
          s1: {type: stage}
          s2: {type: stage, extra: true}
          pool: {type: global_avgpool}
    """))
    assert net.graph.nodes["s1"].body.nodes["t"].meta["shapes"] == [(8, 8, 8), (4, 8, 8)]
    assert "hi, x = self.t(x)  # (B, 8, H/2, W/2), (B, 4, H/2, W/2)" in net.source and net.source.count("class Two(") == 1
    assert "self.c = nn.ReLU() if extra else None" in net.source and "return a, x" in net.source  # c absent: b stands in
    assert_emitted_equals_inferred(net, batch=2)


def test_an_unread_output_is_a_warning_and_a_block_output_may_stand_in_for_an_absent_node():
    text = spec("""
        archc: 1
        name: unread
        input: [8, 16, 16]
        blocks:
          two:
            params: {extra: {type: boolean, default: false}}
            nodes:
              a: {type: conv, out: 8, kernel: 1}
              b: {type: activation, fn: relu, in: input, when: $extra}
            output: [a, b]
        nodes:
          t: {type: two, outputs: [hi, lo]}
          pool: {type: global_avgpool, in: hi}
    """)
    result = check_text(text)
    assert result.ok
    assert [d.message for d in result.diagnostics] == ["output 'lo' of node 't' is never used: nothing reads it"]
    net = archcompiler.compile(text)
    assert net.graph.nodes["t"].meta["shapes"] == [(8, 16, 16), (8, 16, 16)]  # b absent: its input stands in
    assert "return x, x" not in net.source
    assert_emitted_equals_inferred(net, batch=1)


def test_a_parameter_typed_as_a_pair_is_checked_at_each_use_and_emitted_as_a_tuple():
    """`type: array` with `items`, `minItems` and `maxItems`: Inception's factorised 1x7 and
    7x1 convolutions as one block, whose kernel is a pair checked where it is given."""
    block = """
        archc: 1
        name: pairs
        input: [8, 16, 16]
        blocks:
          sep:
            params:
              k: {type: array, items: {type: integer, minimum: 1}, minItems: 2, maxItems: 2, default: [1, 7]}
              pad: {oneOf: [{type: integer, minimum: 0}, {type: array, items: {type: integer, minimum: 0}, minItems: 2, maxItems: 2}], default: 0}
            nodes:
              a: {type: conv, out: 8, kernel: $k, padding: $pad}
        nodes:
          {}
    """
    net = archcompiler.compile(spec(block.replace("{}", "t: {type: sep, pad: [0, 3]}\n          u: {type: sep, k: [7, 1], pad: [3, 0]}")))
    assert [net.graph.nodes[n].shape for n in "tu"] == [(8, 16, 16), (8, 16, 16)]
    assert "def __init__(self, in_channels: int, k: tuple[int, int] = (1, 7), pad: int | tuple[int, int] = 0):" in net.source
    assert "self.u = Sep(8, k=(7, 1), pad=(3, 0))" in net.source
    assert_emitted_equals_inferred(net, batch=1)
    bad = check_text(spec(block.replace("{}", "t: {type: sep, k: 3}\n          u: {type: sep, k: [7, 0]}\n          v: {type: sep, k: [7, 1, 1]}")))
    assert [(d.code, d.span.line, d.message) for d in bad.diagnostics] == [
        ("E102", 12, "'k' in node 't' must be a list, got 3"),
        ("E103", 13, "'k' in node 'u' must be at least 1, got 0"),
        ("E103", 14, "'k' in node 'v' must list exactly 2 values, got 3"),
    ]


def test_a_conditional_offset_of_mul_is_bracketed():
    """`(o if o > 0 else 1 + x) * x` would read as a choice of `1 + x`: the value is bracketed."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: mul_offset
        input: [4, 8, 8]
        blocks:
          gate:
            params: {o: {type: number, default: 2}}
            nodes:
              m: {type: mul, in: [input, input], offset: "$o if $o > 0 else 1"}
        nodes:
          g: {type: gate}
    """))
    assert "((self.o if self.o > 0 else 1) + x) * x" in net.source
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net.module(seed=0)(x), (x + 2) * x)


@pytest.mark.parametrize("value", ["int($a * {big} * 0)", "round($a * {big} * 0)", "$a * {big} * 0", "1 / ($a * {big})"])
def test_a_value_that_overflows_to_infinity_or_nan_is_refused(value):
    """Decimals past 1e308 become inf (and inf * 0 NaN) without an OverflowError: each is
    E208 where it is computed, not a NaN dropout rate or an `inf` name in the emitted code."""
    big = " * ".join(["1000000000000000000000000000.0"] * 12)
    result = check_text(spec(f"""
        archc: 1
        name: nan
        input: [4, 8, 8]
        blocks:
          b:
            params: {{a: {{type: number, default: 2}}}}
            nodes:
              d: {{type: dropout, p: "{value.format(big=big)}"}}
        nodes:
          x1: {{type: b}}
    """))
    assert [d.code for d in result.diagnostics] == ["E208"]
    assert "not a finite number" in result.diagnostics[0].message or "too large" in result.diagnostics[0].message


def test_outputs_named_l_o_i_get_variables_pycodestyle_accepts(tmp_path):
    from tests.test_codegen import assert_ruff_clean

    net = archcompiler.compile(spec("""
        archc: 1
        name: ambiguous
        input: [4, 8, 8]
        blocks:
          three:
            nodes:
              a: {type: conv, out: 4, kernel: 1}
              b: {type: conv, out: 4, kernel: 1, in: input}
              c: {type: conv, out: 4, kernel: 1, in: input}
            output: [a, b, c]
        nodes:
          t: {type: three, outputs: [l, O, I]}
          s: {type: add, in: [l, O, I]}
    """))
    assert "l_2, O_2, x = self.t(x)" in net.source
    assert_ruff_clean(net.source, tmp_path)
    assert_emitted_equals_inferred(net, batch=1)


def test_a_switched_off_node_may_read_a_blocks_output_and_a_reserved_use_does_not_cascade():
    pair = """
        archc: 1
        name: off
        input: [4, 8, 8]
        blocks:
          pair:
            nodes:
              a: {type: conv, out: 8, kernel: 1}
              b: {type: conv, out: 8, kernel: 1, in: input}
            output: [a, b]
        nodes:
    """
    ok = check_text(spec(pair + "      u: {type: pair, outputs: [m, n]}\n          t: {type: conv, kernel: 1, in: m, when: false}\n          c: {type: add, in: [m, n]}\n"))
    assert ok.ok, [d.concise() for d in ok.diagnostics]
    bad = check_text(spec(pair + "      x: {type: pair, outputs: [m, n]}\n          c: {type: add, in: [m, n]}\n"))
    assert [d.code for d in bad.diagnostics] == ["E105"]  # the name x is reserved; m and n are not then 'not defined'


def test_block_outputs_drawn_alone_are_labelled_with_their_names_where_a_stand_in_computes_them():
    from archcompiler.backends.dot import to_dot
    from archcompiler.cli.render import block_graph
    from tests.test_render import parse_dot

    result = check_text(spec("""
        archc: 1
        name: stand_in
        input: [4, 8, 8]
        blocks:
          pair:
            params: {f: {type: boolean, default: false}}
            nodes:
              a: {type: conv, out: 8, kernel: 1}
              b: {type: activation, fn: relu, when: $f}
            output: [a, b]
        nodes:
          u: {type: pair, outputs: [m, n]}
          c: {type: add, in: [m, n]}
    """))
    body, registry, _ = block_graph("pair", result)
    _, _, edges = parse_dot(to_dot(body, registry))
    assert sorted(e for e in edges if e[1] == "@output") == [("a", "@output", "a: 8 x 8 x 8", False), ("a", "@output", "b: 8 x 8 x 8", False)]


def test_memory_holds_an_input_a_block_passes_through_as_an_output():
    """`keep, x = self.p(x)` where `keep` is the block's input passed through (its optional
    node is absent): the value stays alive in `keep` after `x` moves on."""
    from archcompiler.passes.memory import predict

    net = archcompiler.compile(spec("""
        archc: 1
        name: mem
        input: [3, 32, 32]
        blocks:
          pick:
            params: {f: {type: boolean, default: false}}
            nodes:
              a: {type: conv, out: 64, kernel: 1, when: $f}
              b: {type: conv, out: 64, kernel: 1, in: input}
            output: [a, b]
        nodes:
          s: {type: conv, out: 64, kernel: 3, padding: 1}
          p: {type: pick, outputs: [keep, small]}
          c1: {type: conv, out: 64, kernel: 3, padding: 1, in: small}
          c2: {type: conv, out: 64, kernel: 3, padding: 1}
          sum: {type: add, in: [keep, c2]}
          gp: {type: global_avgpool}
    """))
    assert "keep, x = self.p(x)" in net.source
    m = predict(net.graph, net.result.registry, 8, "infer")
    tensor = 8 * 64 * 32 * 32 * 4
    assert m.peak_bytes - m.params_bytes >= 3 * tensor  # keep (s), x (b) and c1's output, at c1


def test_an_input_of_a_block_may_be_one_of_its_outputs():
    """A block that passes its input on beside what it computes (`output: [input, a]`), as it
    may pass on a named input."""
    from archcompiler.passes.memory import predict

    net = archcompiler.compile(spec("""
        archc: 1
        name: through
        input: [3, 16, 16]
        blocks:
          pair:
            nodes:
              a: {type: conv, out: 8, kernel: 3, padding: 1}
            output: [input, a]
        nodes:
          p: {type: pair, outputs: [x1, x2]}
          c: {type: conv, out: 8, kernel: 1, in: x1}
          s: {type: add, in: [c, x2]}
    """))
    assert "return x, a" in net.source and "x1, x = self.p(x)" in net.source
    assert_emitted_equals_inferred(net, batch=2)
    assert predict(net.graph, net.result.registry, 4, "train").peak_bytes > 0


def test_a_block_whose_outputs_are_its_inputs_repeats_as_a_loop_equal_to_its_uses_written_out():
    """BiFPN layers stacked with `repeat:`: each layer's three outputs are the next one's three
    inputs. The emitted model loops over an nn.ModuleList and computes what the same layers
    written out one by one compute, with the same weights."""
    text = (ROOT / "tests" / "specs" / "bifpn.yaml").read_text()
    stacked = archcompiler.compile(text)
    assert "self.bifpn = nn.ModuleList([BifpnLayer(32, 32, 32), BifpnLayer(32, 32, 32)])" in stacked.source
    assert "for layer in self.bifpn[1:]:" in stacked.source
    assert stacked.graph.nodes["bifpn"].meta["shapes"] == [(32, 16, 16), (32, 8, 8), (32, 4, 4)]
    written = text.replace("  bifpn: {type: bifpn_layer, repeat: 2, in: [l3, l4, l5], outputs: [p3, p4, p5]}",
                           "  bifpn0: {type: bifpn_layer, in: [l3, l4, l5], outputs: [q3, q4, q5]}\n"
                           "  bifpn1: {type: bifpn_layer, in: [q3, q4, q5], outputs: [p3, p4, p5]}")
    unrolled = archcompiler.compile(written)
    assert stacked.totals == unrolled.totals
    ours, theirs = stacked.module(seed=0).eval(), unrolled.module(seed=1).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    state = {k.replace("bifpn.0.", "bifpn0.").replace("bifpn.1.", "bifpn1."): v for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    assert_emitted_equals_inferred(stacked, batch=2)


def test_a_repeated_block_with_several_outputs_must_return_as_many_as_it_reads():
    result = check_text(spec("""
        archc: 1
        name: uneven
        input: [4, 8, 8]
        blocks:
          pair:
            nodes:
              a: {type: conv, out: 4, kernel: 1}
              b: {type: conv, out: 4, kernel: 1, in: input}
            output: [a, b]
        nodes:
          p: {type: pair, repeat: 2, outputs: [m, n]}
          s: {type: add, in: [m, n]}
    """))
    assert [(d.code, d.message) for d in result.diagnostics] == [
        ("E209", "'pair' has 2 outputs (a, b) but reads 1 input (input), so it cannot be repeated: each instance's outputs are "
                 "the next one's inputs, in order")]


def test_a_chained_repeat_frees_what_its_first_call_rebinds_and_comments_its_loop():
    """`u, x = self.p[0](x, s1)` rebinds `x`: the value it held is gone once instance 0 returns,
    one map fewer than the same blocks written out hold; the outputs' shapes (the last
    instance's) are commented where the loop assigns them."""
    from archcompiler.passes.memory import predict

    stacked = """
        archc: 1
        name: r1
        input: [3, 16, 16]
        blocks:
          pair:
            inputs: [skip]
            nodes:
              a: {type: conv, out: 8, kernel: 3, padding: 1}
              b: {type: conv, out: 8, kernel: 3, padding: 1, in: skip}
              c: {type: add, in: [a, b]}
            output: [c, a]
        nodes:
          s0: {type: conv, out: 8, kernel: 3, padding: 1}
          s1: {type: conv, out: 8, kernel: 1, in: s0}
          p: {type: pair, repeat: 3, in: [s0, s1], outputs: [u, v]}
          m: {type: add, in: [u, v]}
    """
    written = stacked.replace("p: {type: pair, repeat: 3, in: [s0, s1], outputs: [u, v]}",
                              "p0: {type: pair, in: [s0, s1], outputs: [u0, v0]}\n"
                              "          p1: {type: pair, in: [u0, v0], outputs: [u1, v1]}\n"
                              "          p2: {type: pair, in: [u1, v1], outputs: [u, v]}")
    loop, flat = archcompiler.compile(spec(stacked)), archcompiler.compile(spec(written))
    peak = [predict(n.graph, n.result.registry, 4, "infer").peak_bytes for n in (loop, flat)]
    assert peak[1] - peak[0] == 4 * 8 * 16 * 16 * 4  # s0's map, at batch 4 in fp32
    lines = loop.source.splitlines()
    first = next(i for i, line in enumerate(lines) if "self.p[0](" in line)
    assert not lines[first - 1].strip().startswith("#")
    assert "u, x = layer(u, x)  # (B, 8, 16, 16), (B, 8, 16, 16)" in loop.source


def test_a_splits_sizes_may_be_a_blocks_array_parameter():
    """`sizes: $sz` once exited 70 (a Sym holding a list has no len()): the parts are sized by
    the parameter's items in each instance, and the emitted code indexes the argument."""
    net = archcompiler.compile(spec("""
        archc: 1
        name: m
        input: [4, 8, 8]
        blocks:
          b:
            params: {sz: {type: array, items: {type: integer, minimum: 1}, minItems: 2, maxItems: 2, default: [1, 3]}}
            nodes:
              s: {type: split, sizes: $sz, outputs: [p, q]}
              c: {type: concat, in: [q, p]}
        nodes:
          x1: {type: b}
          x2: {type: b, sz: [2, 2]}
    """))
    assert "x = x.narrow(1, self.sz[0], self.sz[1])" in net.source
    assert [n.shape for n in net.graph.nodes["x1"].body.layers() if n.name in "pq"] == [(1, 8, 8), (3, 8, 8)]
    assert_emitted_equals_inferred(net, batch=1)


# ---------------------------------------------------------------- a condition as a boolean value

CONDITION_VALUES = spec("""
    archc: 1
    name: se_every_other
    input: [8, 16, 16]
    blocks:
      b:
        params: {se: {type: boolean, default: false}}
        nodes:
          c: {type: conv, kernel: 1}
          s: {type: activation, fn: sigmoid, when: $se}
          m: {type: mul, in: [c, s], when: $se, otherwise: c}
      stage:
        params: {width: {type: integer, minimum: 1}}
        nodes:
          w: {type: conv, out: $width, kernel: 1}
          b: {type: b, se: $width >= 16 and $width != 24}
    nodes:
      ghost: {type: b, repeat: 4, se: $index % 2 == 1}
      s8: {type: stage, width: 8}
      s16: {type: stage, width: 16}
""")


def test_a_boolean_parameter_takes_a_condition_per_instance_and_inside_a_block():
    """GhostNet's squeeze-excitation on every other block (`se: $index % 2 == 1`), and a
    block that decides from its own parameters: the condition is written into the code."""
    net = Compiled(check_text(CONDITION_VALUES, "c.yaml"))
    model = net.module(seed=0)
    assert [hasattr(m, "s") and m.s is not None for m in model.ghost] == [False, True, False, True]
    assert (model.s8.b.s is None, model.s16.b.s is not None) == (True, True)
    assert "self.b = B(width, se=width >= 16 and width != 24)" in net.source
    assert_emitted_equals_inferred(net, batch=1)


def test_a_malformed_condition_as_a_value_is_named_as_a_condition():
    text = CONDITION_VALUES.replace("se: $index % 2 == 1", "se: $index % 2 ==")
    (message,) = [d.concise() for d in check_text(text, "c.yaml").diagnostics]
    assert "E208" in message and "the expression ends too early" in message, message


def test_a_condition_given_where_a_number_belongs_is_a_type_error():
    text = CONDITION_VALUES.replace("w: {type: conv, out: $width, kernel: 1}", "w: {type: conv, out: $width, kernel: $width > 4}")
    messages = [d.concise() for d in check_text(text, "c.yaml").diagnostics]
    assert any("E102" in m and "'kernel'" in m for m in messages), messages


AUTOPAD = spec("""
    archc: 1
    name: autopad
    input: [3, 32, 32]
    blocks:
      cbs:
        params:
          out: {type: integer, minimum: 1}
          kernel: {type: integer, minimum: 1, default: 1}
          stride: {type: integer, minimum: 1, default: 1}
          padding: {type: integer, minimum: 0, default: $kernel // 2}
        nodes:
          conv: {type: conv, out: $out, kernel: $kernel, stride: $stride, padding: $padding, bias: false}
          bn: {type: batchnorm}
          act: {type: activation, fn: silu}
      pair:
        params:
          out: {type: integer, minimum: 1}
          k: {type: integer, minimum: 1, default: 3}
        nodes:
          a: {type: cbs, out: $out, kernel: $k}
          b: {type: cbs, out: $out, kernel: $k, padding: 0}
    nodes:
      stem: {type: cbs, out: 16, kernel: 6, stride: 2, padding: 2}
      down: {type: cbs, out: 32, kernel: 3, stride: 2}
      five: {type: pair, out: 32, k: 5}
      one: {type: pair, out: 32, k: 1}
""")


def test_a_default_may_read_the_blocks_other_parameters():
    """Ultralytics' Conv: `padding` defaults to `kernel // 2`, computed from the value a use
    gives; a given padding wins. Inside a block the call passes the expression."""
    net = Compiled(check_text(AUTOPAD, "a.yaml"))
    pads = {name: tuple(m.padding) for name, m in net.module(seed=0).named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert pads == {"stem.conv": (2, 2), "down.conv": (1, 1), "five.a.conv": (2, 2), "five.b.conv": (0, 0),
                    "one.a.conv": (0, 0), "one.b.conv": (0, 0)}
    assert "self.a = Cbs(in_channels, out=out, padding=k // 2, kernel=k)" in net.source
    assert_emitted_equals_inferred(net, batch=1)


def test_a_count_that_is_a_parameter_gives_one_class_whatever_its_value():
    """YOLOv5's C3 repeats its bottleneck `$n` times, once in some stages: the single instance
    is written as the loop the others are, so every use shares one class."""
    net = Compiled(check_text(spec("""
        archc: 1
        name: c3s
        input: [8, 16, 16]
        blocks:
          unit:
            params: {k: {type: integer, minimum: 1, default: 1}}
            nodes:
              conv: {type: conv, kernel: $k, padding: $k // 2}
          c3:
            params: {n: {type: integer, minimum: 1}}
            nodes:
              m: {type: unit, repeat: $n, k: 2 * ($index % 2) + 1}
        nodes:
          one: {type: c3, n: 1}
          three: {type: c3, n: 3}
    """), "c3s.yaml"))
    classes = [line.split("(")[0][6:] for line in net.source.splitlines() if line.startswith("class ")]
    assert classes == ["Unit", "C3", "C3s"], classes
    assert "*[Unit(in_channels, k=2 * (index % 2) + 1) for index in range(n)]" in net.source
    model = net.module(seed=0)
    assert [len(model.one.m), len(model.three.m)] == [1, 3]
    assert [m.conv.kernel_size for m in model.three.m] == [(1, 1), (3, 3), (1, 1)]
    assert_emitted_equals_inferred(net, batch=1)


def test_a_chained_repeats_output_read_only_by_its_next_instance_is_no_warning():
    """Res2Net's step passes (y, acc, rest) on to the next instance and the block reads only
    acc and rest after the last: y is used, by the chain; an unread output of a block that is
    not repeated is still W303."""
    text = (Path(__file__).parent / "specs" / "bifpn.yaml").read_text().replace("in: [g3, g4, g5]", "in: [g4, g5]").replace("  g3: {type: global_avgpool, in: p3}\n", "")
    assert [d.code for d in check_text(text, "b.yaml").diagnostics] == []
    once = text.replace("bifpn: {type: bifpn_layer, repeat: 2, in: [l3, l4, l5], outputs: [p3, p4, p5]}",
                        "bifpn: {type: bifpn_layer, in: [l3, l4, l5], outputs: [p3, p4, p5]}")
    assert [d.message for d in check_text(once, "b.yaml").diagnostics] == ["output 'p3' of node 'bifpn' is never used: nothing reads it"]


def test_modules_register_in_the_order_the_spec_writes_them():
    """timm's FasterNet block declares its MLP before the partial conv it reads: state_dict
    follows the spec, so weights copied by order line up; forward still runs in dataflow order."""
    net = Compiled(check_text(spec("""
        archc: 1
        name: t
        input: [8, 8, 8]
        blocks:
          blk:
            nodes:
              mlp: {type: conv, out: 16, kernel: 1, in: mix}
              mix: {type: conv, kernel: 3, padding: 1, in: input}
              opt: {type: batchnorm, in: mlp, when: $in_channels == 8}
            output: opt
        nodes:
          late: {type: conv, out: 4, kernel: 1, in: b}
          b: {type: blk, in: input}
          c: {type: blk, in: late}
        output: c
    """), "t.yaml"))
    keys = list(net.module(seed=0).state_dict())
    assert [k for k in keys if k.endswith("weight")] == ["late.weight", "b.mlp.weight", "b.mix.weight", "b.opt.weight", "c.mlp.weight", "c.mix.weight"]
    assert_emitted_equals_inferred(net, batch=2)


def test_a_node_left_out_by_when_false_beside_a_conditional_one_emits():
    """GhostNet's `when: false` beside a node whose condition varies: the class over instances
    finds the stand-in of the one that is never there (emit was exit 70, KeyError)."""
    net = Compiled(check_text(spec("""
        archc: 1
        name: m
        input: [1, 4, 4]
        blocks:
          b:
            params: {out: {}}
            nodes:
              a: {type: batchnorm, when: false}
              c: {type: batchnorm, when: $in_channels != $out}
        nodes:
          n: {type: b, out: 1}
          w: {type: b, out: 2}
          fc: {type: conv, out: 2}
    """), "m.yaml"))
    assert "self.a" not in net.source and "self.c = nn.BatchNorm2d(in_channels) if in_channels != out else None" in net.source
    assert_emitted_equals_inferred(net, batch=2)


def test_a_single_instance_with_a_first_or_a_new_width_shares_the_class_of_longer_stacks():
    """A ResNet stage of one block (`first: {stride: 2}`), or a stack whose first instance
    reads other channels than the rest: the single instance is the first of the loop that a
    longer use writes (`range(n - 1)` is empty), so both uses share one class."""
    net = Compiled(check_text(spec("""
        archc: 1
        name: stages
        input: [3, 32, 32]
        blocks:
          stage:
            params: {n: {type: integer, minimum: 1}, out: {type: integer}}
            nodes:
              body: {type: conv, out: $out, kernel: 3, padding: 1, repeat: $n, first: {stride: 2}}
          widen:
            params: {n: {type: integer, minimum: 1}, out: {type: integer}}
            nodes:
              body: {type: conv, out: $out, kernel: 1, repeat: $n}
        nodes:
          s1: {type: stage, n: 1, out: 16}
          s2: {type: stage, n: 3, out: 32}
          w1: {type: widen, n: 1, out: 48}
          w2: {type: widen, n: 2, out: 64}
          w3: {type: widen, n: 1, out: 64}
    """), "stages.yaml"))
    classes = [line.split("(")[0][6:] for line in net.source.splitlines() if line.startswith("class ")]
    assert classes == ["Stage", "Widen", "Stages"], classes
    assert "*[nn.Conv2d(out, out, kernel_size=3, padding=1) for _ in range(n - 1)]" in net.source
    model = net.module(seed=0)
    assert [len(model.s1.body), len(model.s2.body), len(model.w1.body), len(model.w2.body), len(model.w3.body)] == [1, 3, 1, 2, 1]
    assert [model.s1.body[0].stride, model.s2.body[0].stride, model.s2.body[1].stride] == [(2, 2), (2, 2), (1, 1)]
    assert [model.w1.body[0].in_channels, model.w2.body[0].in_channels, model.w2.body[1].in_channels, model.w3.body[0].in_channels] == [32, 48, 64, 64]
    assert_emitted_equals_inferred(net, batch=1)


def test_a_conditional_default_over_expressions_keeps_their_grouping():
    """Ultralytics' dilated autopad as one conditional default, given a kernel that is itself an
    expression at the use: `k` as `kk + 2` must read `(kk + 2) // 2`, never `kk + 2 // 2`."""
    net = Compiled(check_text(spec("""
        archc: 1
        name: autopad
        input: [4, 16, 16]
        blocks:
          cv:
            params:
              k: {type: integer, minimum: 1, default: 1}
              d: {type: integer, minimum: 1, default: 1}
              p: {type: integer, minimum: 0, default: "($d * ($k - 1) + 1) // 2 if $d > 1 else $k // 2"}
            nodes:
              conv: {type: conv, out: 4, kernel: $k, dilation: $d, padding: $p}
          outer:
            params:
              kk: {type: integer, minimum: 1, default: 1}
            nodes:
              a: {type: cv, k: $kk + 2}
              b: {type: cv, k: $kk * 2 + 1, d: $kk}
        nodes:
          o1: {type: outer}
          o2: {type: outer, kk: 2}
          o3: {type: outer, kk: 3}
    """), "autopad.yaml"))
    assert "else (kk + 2) // 2" in net.source
    assert net.output_shape == (4, 17, 17)  # an even kernel (kk = 2: k = 4, p = 2) grows the map by one
    assert_emitted_equals_inferred(net, batch=1)
