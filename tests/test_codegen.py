"""Code generation: emitted modules are exact (costs, shapes, torchvision), readable,
standalone, traceable back to the spec, and compile without graph breaks."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import archcompiler
from tests.conftest import ALL_SPECS, TEST_SPECS, PAPER_SPECS, spec_path


def _compiled(path):
    return archcompiler.compile(path)


def test_state_dict_keys_mirror_the_spec():
    keys = set(_compiled(spec_path("attn_reduction")).module().state_dict())
    assert "red1.branch_conv.conv.weight" in keys
    assert "attn.mask_res1.conv2.weight" in keys
    assert "incres.project.bias" in keys
    assert "fc.weight" in keys


def test_source_reads_like_hand_written_code():
    net = _compiled(spec_path("attn_simple"))
    src = net.source
    assert f"sha256 {hashlib.sha256(net.spec_text.encode()).hexdigest()[:16]}" in src
    assert f"archc {archcompiler.__version__}" in src
    assert '__all__ = ["AttnSimple"]' in src
    assert "class SoftAttention(nn.Module):" in src and "class Reduction(nn.Module):" in src
    assert src.count("class Reduction(") == 1  # one class per composite type, shared by red1 and red2
    assert "x = self.red1(x)  # (B, 128, 31, 31)" in src
    assert "getattr" not in src and "exec" not in src and "eval(" not in src
    imports = [line for line in src.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["import torch", "import torch.nn.functional as F", "from torch import nn"]


@pytest.mark.skipif(shutil.which("ruff") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "ruff")), reason="ruff not installed")
@pytest.mark.parametrize("path", ALL_SPECS + TEST_SPECS)
def test_emitted_source_is_lint_clean_and_formatted(path, tmp_path):
    assert_ruff_clean(_compiled(path).source, tmp_path)


UNTYPED_PARAMS = """
archc: 1
name: untyped
input: [8, 17, 17]
blocks:
  basic_conv:
    params:
      out: {type: integer, minimum: 1}
      kernel: {default: [1, 7]}
      pad: {default: 1}
      scale: {type: integer, default: 2}
    nodes:
      conv: {type: conv, out: $out, kernel: $kernel, padding: $pad, bias: false}
      up: {type: upsample, scale: $scale}
nodes:
  c: {type: basic_conv, out: 8, kernel: [1, 7], pad: [0, 3]}
  d: {type: basic_conv, out: 8, scale: 1}
"""


@pytest.mark.skipif(shutil.which("ruff") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "ruff")), reason="ruff not installed")
def test_untyped_and_pair_defaults_are_formatted_and_immutable(tmp_path):
    """A parameter declared with no type, or with a [h, w] default, is written `kernel=(1, 7)`
    (ruff format's spacing, and a tuple: a list would be a mutable default)."""
    source = _compiled(UNTYPED_PARAMS).source
    assert "def __init__(self, in_channels: int, out: int, kernel=(1, 7), pad=1, scale: int = 2):" in source
    assert_ruff_clean(source, tmp_path)


@pytest.mark.skipif(shutil.which("ruff") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "ruff")), reason="ruff not installed")
def test_odd_text_from_the_spec_cannot_break_the_emitted_file(tmp_path):
    """The spec's path and summary go into docstrings: a backslash, triple quotes, a NUL, a
    lone surrogate or a closing quote once made a file that did not parse (or exit 70)."""
    from archcompiler.api import Compiled
    from archcompiler.driver import check_text

    text = 'archc: 1\nname: m\nsummary: "a\\0b \\ud800 \\\\N ends in a quote\\""\ninput: [3, 8, 8]\nnodes:\n  a: {type: conv, out: 4}\n'
    result = check_text(text, 'we"ird\\x/q"""q\\N.yaml')
    assert result.ok, [d.concise() for d in result.diagnostics]
    assert "\0" in result.data["summary"] and "\ud800" in result.data["summary"]
    source = Compiled(result).source
    assert "<U+0000>b <U+D800>" in source and "we\"ird\\\\x/q'''q\\\\N.yaml" in source
    assert_ruff_clean(source, tmp_path)
    namespace: dict = {}
    exec(compile(source, "model.py", "exec"), namespace)  # the docstring reads the backslashes as written
    assert "\\N ends in a quote" in namespace["M"].__doc__ and "we\"ird\\x/q" in namespace["__doc__"]


def test_a_shared_lines_comment_holds_for_every_instance():
    """One MBConv class serves blocks with and without the residual add, at stride 1 and 2:
    the add's line holds project_bn's value where the add is left out, so its comment may
    not claim the block's input channels and size."""
    source = _compiled("specs/examples/efficientnet_b0.yaml").source
    assert "x = x + drop if self.use_add else project_bn  # (B, C', H', W')" in source


def assert_ruff_clean(source: str, tmp_path) -> None:
    ruff = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")
    target = tmp_path / "model.py"
    target.write_text(source)
    lint = subprocess.run([ruff, "check", "--isolated", "--select", "F,E,W", "--line-length", "120", str(target)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run([ruff, "format", "--isolated", "--line-length", "120", "--check", str(target)], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_emitted_file_runs_without_archc(tmp_path):
    net = _compiled(spec_path("no_attention"))
    out = tmp_path / "no_attention_model.py"
    subprocess.run([sys.executable, "-m", "archcompiler", "emit", spec_path("no_attention"), "-o", str(out)], check=True, capture_output=True)
    script = (
        "import sys\n"
        "sys.modules['archcompiler'] = None  # any import of archc now fails\n"
        "try:\n    import archcompiler\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('archcompiler importable')\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import torch, no_attention_model as m\n"
        "torch.manual_seed(0)\n"
        "net = m.NoAttention().eval()\n"
        "print(tuple(net(torch.randn(2, 3, 64, 64)).shape), sum(p.numel() for p in net.parameters()))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["(2,", "200)", str(net.totals["params"])]


def test_module_is_what_emit_writes():
    net = _compiled(spec_path("no_attention"))
    import inspect

    assert inspect.getsource(net.model_class()) in net.source


def test_initialisation_is_seeded_and_leaves_global_rng_alone():
    net = _compiled(spec_path("no_attention"))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = net.module(seed=1), net.module(seed=1), net.module(seed=2)
    assert torch.equal(torch.get_rng_state(), before)
    for (k, va), (_, vb), (_, vc) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.stem.weight, c.stem.weight)


def test_runtime_error_is_reported_against_the_spec_line():
    net = _compiled(spec_path("no_attention"))
    model = net.module().eval()
    red1 = net.graph.nodes["red1"].span
    with pytest.raises(RuntimeError) as info:
        model(torch.randn(1, 3, 2, 2))  # the stem keeps 2x2; red1's 3x3 max-pool cannot fit
    message = net.explain(info.value)
    assert message.startswith(f"{red1.file}:{red1.line}:{red1.column}: error in node 'red1' > 'pool' (<stdlib>/reduction.yaml:")
    assert "RuntimeError" in message


def test_line_map_points_every_forward_line_at_its_node():
    net = _compiled(spec_path("attn_simple"))
    lines = net.source.splitlines()
    for number, info in net.emitted.line_map.items():
        code = lines[number - 1].strip()
        assert code.startswith((f"self.{info.node} =", "x =", f"{info.node} =", "return")), (number, code, info)
        assert info.span is not None and info.span.line >= 1


def test_channels_last_gives_the_same_outputs():
    net = _compiled(spec_path("attn_simple"))
    a, b = net.module(seed=0).eval(), net.module(seed=0, channels_last=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x.contiguous(memory_format=torch.channels_last)), atol=1e-4, rtol=1e-4)


# torch.compile takes 4-5 s a model on 2 cores: make test compiles the plain model, make test-all every one.
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] * (n != "no_attention")) for n in PAPER_SPECS])
def test_compiles_fullgraph_without_graph_breaks(name):
    # aot_eager traces forward and backward exactly as inductor would, without generating
    # C++; fullgraph=True turns any graph break into an error.
    torch._dynamo.reset()
    model = archcompiler.compile(spec_path(name)).module(seed=0, compile=True, backend="aot_eager")
    out = model(torch.randn(2, 3, 64, 64))
    out.sum().backward()
    assert out.shape == (2, 200)


@pytest.mark.slow  # about 20 s of inductor's C++ build on 2 cores
def test_inductor_compile_matches_eager():
    torch._dynamo.reset()
    net = archcompiler.compile(spec_path("no_attention"))
    eager, compiled = net.module(seed=0).eval(), net.module(seed=0, compile=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), atol=1e-4, rtol=1e-4)


def test_emit_cli_refuses_a_bad_spec_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archc: 1\nname: bad\ninput: [3, 8, 8]\nnodes:\n  a: {type: convv}\n")
    run = subprocess.run([sys.executable, "-m", "archcompiler", "emit", str(bad), "-o", str(tmp_path / "x.py")], capture_output=True, text=True)
    assert run.returncode == 1
    assert "unknown block type 'convv'; did you mean 'conv'?" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "x.py").exists()


@pytest.mark.slow  # about 11 s of torch.export and onnxruntime
def test_onnx_export_checks_and_matches(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "m.onnx"
    run = subprocess.run([sys.executable, "-m", "archcompiler", "export", spec_path("no_attention"), "--format", "onnx", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "onnx.checker ok" in run.stderr
    import numpy as np
    import onnxruntime as ort

    net = archcompiler.compile(spec_path("no_attention"))
    model = net.module(seed=0).eval()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 64, 64)  # batch 1: the batch axis is dynamic
    got = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-4)


def test_export_without_onnx_says_how_to_install(tmp_path, monkeypatch):
    script = (
        "import sys\nsys.modules['onnx'] = None\n"
        "from archcompiler.cli.main import entry\n"
        f"sys.argv = ['archc', 'export', {spec_path('no_attention')!r}, '-o', {str(tmp_path / 'm.onnx')!r}]\nentry()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 1
    assert "pip install -e '.[onnx]'" in run.stderr and "archc[" not in run.stderr  # never 'archc[onnx]': that PyPI name is someone else's
    assert "Traceback" not in run.stderr


@pytest.mark.skipif(shutil.which("ruff") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "ruff")), reason="ruff not installed")
def test_a_node_nothing_reads_is_computed_into_a_name_linters_know_is_unused(tmp_path):
    """A spec valid with warnings (W303: a node nothing reads) still emits lint-clean code."""
    from archcompiler.api import compile as compile_spec
    from tests.conftest import ROOT

    net = compile_spec(ROOT / "tests" / "bad_specs" / "034_unused_node_warning.yaml")
    assert re.search(r"^        _\w+ = self\.\w+\(", net.source, flags=re.M)
    assert_ruff_clean(net.source, tmp_path)


LAYOUT_SPECS = sorted((Path(__file__).parent / "layout_specs").glob("*.yaml"))


@pytest.mark.skipif(shutil.which("ruff") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "ruff")), reason="ruff not installed")
@pytest.mark.parametrize("path", LAYOUT_SPECS, ids=lambda p: p.stem)
def test_long_names_and_expressions_are_laid_out_as_ruff_format_does(path, tmp_path):
    """Specs found by a generator of long names (up to 60 characters), long width rules and
    conditionals, many outputs and merges: each emitted file passes ruff and runs as check says.
    Each one failed `ruff check` or `ruff format --check` before the layout handled its case."""
    from tests.test_compiler_core import assert_emitted_equals_inferred

    net = _compiled(str(path))
    assert_ruff_clean(net.source, tmp_path)
    assert_emitted_equals_inferred(net, batch=1)


def test_emit_of_a_block_library_says_there_is_no_model(capsys, tmp_path):
    from archcompiler.cli.main import main

    spec = tmp_path / "lib.yaml"
    spec.write_text("archc: 1\nblocks:\n  b:\n    nodes:\n      c: {type: conv, kernel: 1}\n")
    assert main(["emit", str(spec), "-o", str(tmp_path / "m.py")]) == 1
    assert "defines blocks only (b), no model" in capsys.readouterr().err
    assert not (tmp_path / "m.py").exists()
