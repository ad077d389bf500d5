"""The front-end as a user meets it: `archc check` output and exit codes, the JSON contract,
the schema that editors use, and the spec files' modelines."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from archcompiler.driver import builtin_registry
from archcompiler.cli.schema import schema_text
from archcompiler.driver import check_file, check_text
from archcompiler.frontend.schema import editor_schema
from archcompiler.tools.blockdocs import render as render_block_docs
from tests.conftest import ALL_SPECS, ROOT, spec_path


def archc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archcompiler", *args], capture_output=True, text=True, cwd=ROOT)


def test_check_prints_figure7_in_order():
    run = archc("check", "specs/attn_reduction.yaml")
    assert run.returncode == 0, run.stderr
    sizes = ["64 x 64 x 64", "64 x 64 x 64", "31 x 31 x 128", "31 x 31 x 128", "15 x 15 x 320", "15 x 15 x 320", "7 x 7 x 832", "832", "200"]
    rows = [line.split() for line in run.stdout.splitlines()]
    seen = [" ".join(r[2:7]) if "x" in r else r[2] for r in rows if r and r[0] in
            {"stem", "attn", "red1", "res1", "red2", "incres", "red3", "pool", "fc"}]
    assert seen == sizes
    assert "3,411,208" in run.stdout and "3.049 G" in run.stdout


def test_json_contract():
    run = archc("check", "--format", "json", "specs/no_attention.yaml")
    assert run.returncode == 0
    report = json.loads(run.stdout)
    assert set(report) == {"files", "diagnostics"}
    entry = report["files"][0]
    assert entry["path"] == "specs/no_attention.yaml" and entry["ok"] is True and entry["name"] == "no_attention"
    assert entry["layers"][0] == {"name": "stem", "type": "conv", "shape": [64, 64, 64], "params": 1792, "flops": 14155776, "activation_bytes": 1048576}
    assert [layer["shape"] for layer in entry["layers"]][-3:] == [[320], [320], [200]]
    assert entry["totals"] == {k: sum(layer[k] for layer in entry["layers"]) for k in ("params", "flops", "activation_bytes")}


def test_json_diagnostics_are_one_based_and_complete(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archc: 1\nname: bad\ninput: [3, 8, 8]\nnodes:\n  a: {type: conv, kernal: 3}\n  b: {type: concat, in: [a, nope]}\n")
    run = archc("check", "--format", "json", str(bad))
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert report["files"][0]["ok"] is False
    got = [(d["line"], d["column"], d["severity"], d["code"]) for d in report["diagnostics"]]
    assert got == [(5, 19, "error", "E101"), (6, 29, "error", "E300")]


def test_exit_codes():
    assert archc("check", *ALL_SPECS).returncode == 0
    assert archc("check", "no/such/file.yaml").returncode == 1
    usage = archc("check", "--format", "xml", "specs/no_attention.yaml")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert archc("chekc").returncode == 2
    assert "did you mean 'check'" in archc("chekc").stderr


def test_warnings_alone_exit_zero(tmp_path):
    spec = tmp_path / "w.yaml"
    spec.write_text("archc: 1\nname: w\ninput: [3, 8, 8]\nnodes:\n  a: {type: conv}\n  b: {type: conv, in: input}\noutput: b\n")
    run = archc("check", str(spec))
    assert run.returncode == 0
    assert "warning[W303]: node 'a' is never used" in run.stderr


def test_a_node_read_only_through_otherwise_is_not_unused():
    """m2 and m3 stand in, in turn, for the optional node before them: some instance reads
    each, so neither is 'never used'; d, which nothing reads either way, still is."""
    text = """archc: 1
name: t
input: [8, 16, 16]
blocks:
  b:
    params: {f: {type: integer, default: 0}}
    nodes:
      c: {type: conv, kernel: 1}
      m1: {type: add, in: [c, input], when: $f == 1, otherwise: m2}
      m2: {type: mul, in: [c, input], when: $f == 2, otherwise: m3}
      m3: {type: concat, in: [c, input], when: $f == 3, otherwise: c}
      d: {type: conv, kernel: 1, in: c}
      r: {type: activation, in: m1}
nodes:
  a: {type: b}
  y: {type: b, f: 1}
  z: {type: b, f: 2}
  w: {type: b, f: 3}
  v: {type: conv, out: 8, kernel: 1}
"""
    r = check_text(text, file="t.yaml")
    assert r.ok
    assert [d.message for d in r.diagnostics] == ["node 'd' is never used: nothing reads it and it is not the output"]


def test_expand_nests_composite_rows():
    run = archc("check", "--expand", "specs/no_attention.yaml")
    lines = run.stdout.splitlines()
    assert any(line.startswith("  branch_conv ") for line in lines) and any(line.startswith("    conv ") for line in lines)
    one = archc("check", "--expand", "--depth", "1", "specs/no_attention.yaml").stdout.splitlines()
    assert any(line.startswith("  branch_conv ") for line in one) and not any(line.startswith("    conv ") for line in one)


@pytest.mark.parametrize("path", ALL_SPECS)
def test_specs_start_with_the_schema_modeline(path):
    first = (ROOT / path).read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    target = (ROOT / path).parent / first.split("$schema=")[1]
    assert target.resolve() == (ROOT / "archcompiler" / "schema" / "spec.schema.json").resolve()


@pytest.mark.parametrize("path", ALL_SPECS + [str(p.relative_to(ROOT)) for p in (ROOT / "archcompiler/blocks/stdlib").glob("*.yaml")])
def test_editor_schema_accepts_every_shipped_spec(path, editor_validator):
    editor_validator.validate(yaml.safe_load((ROOT / path).read_text()))


@pytest.fixture(scope="module")
def editor_validator():
    """One validator for every spec: building and checking the schema is most of the time."""
    schema = editor_schema(builtin_registry())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_editor_schema_takes_expressions_inside_a_pair():
    """`kernel: [1, $k]` is valid for check, so the editor's schema must not flag it."""
    schema = editor_schema(builtin_registry())
    data = yaml.safe_load("""
archc: 1
name: pairs
input: [8, 17, 17]
blocks:
  asym:
    params: {k: {type: integer}}
    nodes:
      conv: {type: conv, kernel: [1, $k], padding: [0, ($k - 1) // 2]}
nodes:
  a: {type: asym, k: 7}
""")
    assert check_text(yaml.safe_dump(data), "pairs.yaml").ok
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    data["blocks"]["asym"]["nodes"]["conv"]["kernel"] = [1, "k"]  # not an expression: still an error
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)


def test_editor_schema_catches_a_typo():
    schema = editor_schema(builtin_registry())
    data = yaml.safe_load(Path(spec_path("no_attention")).read_text())
    data["nodes"]["stem"]["kernal"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)


def test_committed_schema_and_block_docs_are_up_to_date():
    assert (ROOT / "archcompiler/schema/spec.schema.json").read_text() == schema_text(), "run `make docs`"
    assert (ROOT / "docs/blocks.md").read_text() == render_block_docs(), "run `make docs`"


def test_archc_schema_prints_it():
    run = archc("schema")
    assert json.loads(run.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_composites_keep_their_hierarchy():
    graph = check_file(spec_path("attn_simple")).graph
    attn = graph.nodes["attn"]
    assert attn.body is not None and attn.body.nodes["trunk1"].body is not None
    assert attn.meta["params"] == sum(n.meta["params"] for n in attn.body.layers())
    assert [n.name for n in attn.body.nodes["trunk1"].body.layers()] == ["bn1", "relu1", "conv1", "bn2", "relu2", "conv2", "add"]


def test_user_defined_block_with_parameters():
    text = """archc: 1
name: custom
input: [3, 32, 32]
blocks:
  double_conv:
    params:
      width: {type: integer, minimum: 1}
      k: {type: integer, default: 3}
    nodes:
      a: {type: conv, out: $width, kernel: $k, padding: same}
      b: {type: conv, kernel: $k, padding: same}
nodes:
  one: {type: double_conv, width: 16}
  two: {type: double_conv, width: 8, k: 5}
"""
    result = check_text(text, "custom.yaml")
    assert result.ok, [d.concise() for d in result.diagnostics]
    assert result.graph.nodes["two"].shape == (8, 32, 32)
    assert result.graph.nodes["one"].meta["params"] == (3 * 16 * 9 + 16) + (16 * 16 * 9 + 16)


def test_upsample_to_a_named_node_and_broadcast_add():
    text = """archc: 1
name: shapes
input: [4, 16, 16]
nodes:
  down: {type: avgpool, kernel: 4}
  gate: {type: global_avgpool, in: input}
  up: {type: upsample, mode: nearest, size_of: input, in: down}
  merged: {type: add, in: [input, up]}
  flat: {type: flatten}
  fc: {type: affine, out: 3}
  both: {type: concat, in: [gate, fc]}
"""
    result = check_text(text, "s.yaml")
    assert result.ok, [d.concise() for d in result.diagnostics]
    shapes = {n.name: n.shape for n in result.graph.layers()}
    assert shapes == {"down": (4, 4, 4), "gate": (4,), "up": (4, 16, 16), "merged": (4, 16, 16), "flat": (1024,), "fc": (3,), "both": (7,)}


def test_check_does_not_import_torch():
    code = "import sys; from archcompiler.cli.check import main; main(['-q', 'specs/attn_reduction.yaml']); assert 'torch' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("text", ["# \r\x1f-x\n", "# \r\n\x1f-x\n", "a: 1\u2028\x1f\n"])
def test_a_position_counts_every_line_break_yaml_knows(text):
    """An old Mac line end (\r) or U+2028 breaks a line for YAML, so a position after it is on
    line 2 (found by the fuzz test: the column once ran past the end of line 1)."""
    (d,) = check_text(text, "f.yaml").diagnostics
    assert (d.span.line, d.span.column) == (2, 1) and "U+001F" in d.message
