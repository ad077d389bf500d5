"""`archc render`: the diagram is the IR, node for node and edge for edge.

The DOT text is parsed back and compared with the graph IR and with the `check` table's rows,
collapsed and expanded; SVGs are parsed as XML; one small spec has golden DOT files; a
missing `dot` program is simulated by emptying PATH.
"""
from __future__ import annotations

import os
import textwrap
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from archcompiler.backends.dot import OUTPUT, to_dot
from archcompiler.backends.table import fmt_shape, rows, shown
from archcompiler.driver import builtin_registry
from archcompiler.cli.render import SpecError, block_graph, diagram, render
from archcompiler.errors import ArchcError
from archcompiler.driver import check_file
from tests.conftest import spec_params

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(str(p) for p in [*(ROOT / "specs").rglob("*.yaml"), *(ROOT / "tests" / "specs").glob("*.yaml")])
GOLDEN = ROOT / "tests" / "golden"
SMALL = str(GOLDEN / "render_small.yaml")
COMPOSITES = [b.name for b in builtin_registry() if b.is_composite]
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot program is not installed")
# (expand, depth) settings, as `archc check --expand --depth N` takes them
MODES = [(False, None), (True, 0), (True, 1), (True, None)]


# --- reading DOT back ---

_ID = r'"(?:[^"\\]|\\.)*"|[A-Za-z0-9_@.]+'
_EDGE = re.compile(rf"^\s*({_ID}) -> ({_ID})(?: \[(.*)\])?$")
_NODE = re.compile(rf"^\s*({_ID})(?: \[(.*)\])?$")
_CLUSTER = re.compile(rf"^\s*subgraph ({_ID}) \{{$")


def _unquote(s: str) -> str:
    return s[1:-1].replace('\\"', '"') if s.startswith('"') else s


def _label(attrs: str | None) -> str | None:
    m = re.search(r'(?:^| )label=("(?:[^"\\]|\\.)*"|[^ \]<]+)', attrs or "")
    return _unquote(m.group(1)) if m else None


def parse_dot(text: str):
    """(node ids in order, clusters in order, edges as (src, dst, label, dashed))."""
    nodes, clusters, edges = [], [], []
    for line in text.splitlines():
        if m := _CLUSTER.match(line):
            clusters.append(_unquote(m.group(1)))
        elif m := _EDGE.match(line):
            attrs = m.group(3) or ""
            edges.append((_unquote(m.group(1)), _unquote(m.group(2)), _label(attrs), "style=dashed" in attrs))
        elif (m := _NODE.match(line)) and m.group(1) not in ("graph", "node", "edge"):
            nodes.append(_unquote(m.group(1)))
    return nodes, clusters, edges


# --- what the IR says should be drawn ---

def walk_paths(graph):
    """(path, depth, node, the graph it lives in) over Graph.walk."""
    path, graphs = [], [graph]
    for d, node in graph.walk():
        del path[d:], graphs[d + 1:]
        path.append(node.name)
        yield tuple(path), d, node, graphs[d]
        if node.body is not None:
            graphs.append(node.body)


def expected_edges(graph, expand, depth) -> Counter:
    """The documented rule (archcompiler/backends/dot.py): one edge per dependency of each
    drawn node; `input` of a body is its cluster's head, and so is a named input (an edge
    labelled with its name); a cluster's value is its body output's, and for one output of a
    block with several (a `part` node), the body node that computes that output."""
    opened = {p: n.body for p, d, n, _ in walk_paths(graph) if shown(d, expand, depth) and n.body is not None and shown(d + 1, expand, depth)}

    def source(prefix, name, index=0):
        if name == "input" or (prefix and name in opened[prefix].inputs):
            return ".".join(prefix) or "input"
        inner = prefix + (name,)
        return source(inner, opened[inner].results[index]) if inner in opened else ".".join(inner)

    out = Counter()
    for path, d, node, g in walk_paths(graph):
        if not shown(d, expand, depth):
            continue
        prefix, me = path[:-1], ".".join(path)
        for i in node.inputs:
            if node.kind == "part":  # the output it is, of the composite it reads
                out[(source(prefix, i, node.meta["index"]), me, fmt_shape(node.shape), False)] += 1
                continue
            label = (None if i == "input" else i) if (prefix and i in g.inputs) else fmt_shape(g.nodes[i].shape)
            out[(source(prefix, i), me, label, False)] += 1
        for param, r in node.refs.items():
            if r not in node.inputs:
                out[(source(prefix, r), me, f"{param}: {fmt_shape(g.nodes[r].shape)}", True)] += 1
    out.update(output_edges(graph, lambda o: source((), o)))
    return out


def output_edges(graph, source=lambda o: o) -> Counter:
    """The edges into the output marker: one, labelled with its shape; or one per output of a
    model with several, each labelled with its name too."""
    several = len(graph.results) > 1
    return Counter((source(o), OUTPUT, f"{o}: " * several + fmt_shape(graph.nodes[o].shape), False) for o in graph.results)


@pytest.fixture(scope="module")
def checked():
    cache = {}

    def get(path):
        if path not in cache:
            cache[path] = check_file(path)
            assert cache[path].ok, path
        return cache[path]

    return get


# --- the drawing is the IR ---

@pytest.mark.parametrize("spec", SPECS + [SMALL], ids=os.path.basename)
def test_collapsed_dot_is_the_top_level_graph(spec, checked):
    r = checked(spec)
    nodes, clusters, edges = parse_dot(to_dot(r.graph, r.registry))
    assert nodes == ["input", *[n.name for n in r.graph.layers()], OUTPUT]
    assert clusters == []
    want = Counter((d, n.name, fmt_shape((n if n.kind == "part" else r.graph.nodes[d]).shape), False) for n in r.graph.layers() for d in n.inputs)
    want.update((ref, n.name, f"{p}: {fmt_shape(r.graph.nodes[ref].shape)}", True) for n in r.graph.layers() for p, ref in n.refs.items() if ref not in n.inputs)
    want.update(output_edges(r.graph))
    assert Counter(edges) == want


@pytest.mark.parametrize("expand,depth", MODES)
@pytest.mark.parametrize("spec", SPECS + [SMALL], ids=os.path.basename)
def test_nodes_are_the_check_table_rows(spec, expand, depth, checked):
    """One DOT node per row of `archc check --expand --depth N`, in the same order, and a
    cluster exactly for each composite whose contents are rows too."""
    r = checked(spec)
    nodes, clusters, _ = parse_dot(to_dot(r.graph, r.registry, expand=expand, depth=depth))
    assert nodes[0] == "input" and nodes[-1] == OUTPUT
    drawn = [(n.count("."), n.rsplit(".", 1)[-1]) for n in nodes[1:-1]]
    assert drawn == [(row["depth"], row["name"]) for row in rows(r.graph, expand, depth)]
    opened = [f"cluster_{'.'.join(p)}" for p, d, n, _ in walk_paths(r.graph) if n.body is not None and shown(d, expand, depth) and shown(d + 1, expand, depth)]
    assert clusters == opened


@pytest.mark.parametrize("expand,depth", MODES)
@pytest.mark.parametrize("spec", SPECS + [SMALL], ids=os.path.basename)
def test_edges_are_the_ir_dependencies(spec, expand, depth, checked):
    r = checked(spec)
    _, _, edges = parse_dot(to_dot(r.graph, r.registry, expand=expand, depth=depth))
    assert Counter(edges) == expected_edges(r.graph, expand, depth)


@pytest.mark.parametrize("spec", SPECS, ids=os.path.basename)
def test_fully_expanded_edges_carry_their_producers_shape(spec, checked):
    """Independent of how edges are routed: every labelled edge starts at a node whose IR
    shape is its label, and the primitives are exactly the non-head nodes."""
    r = checked(spec)
    by_path = {".".join(p): n for p, _, n, _ in walk_paths(r.graph)}
    nodes, _, edges = parse_dot(to_dot(r.graph, r.registry, expand=True))
    assert sorted(n for n in nodes if n in by_path and by_path[n].kind == "call") == sorted(
        ".".join(p) for p, _, n, _ in walk_paths(r.graph) if n.kind == "call"
    )
    for src, dst, label, dashed in edges:
        if dst == OUTPUT and len(r.graph.results) > 1:  # each output's edge is labelled "name: shape"
            name, label = label.split(": ", 1)
            assert name in r.graph.results
        if label is not None and src != "input":
            if by_path[src].body is not None and not dashed:  # out of a head: only a named input, by its name
                assert label in by_path[src].body.inputs[1:]
                continue
            if by_path[src].body is not None:  # a shape read off one of the block's inputs (size_of: input, or a skip)
                body = by_path[src].body
                assert label.split(": ")[1] in [fmt_shape(body.nodes[i].shape) for i in body.inputs]
                continue
            shape = fmt_shape(by_path[src].shape)
            assert label == (label.split(": ")[0] + ": " + shape if dashed else shape)


def test_soft_attention_reads_as_two_branches_joining_at_the_gate():
    graph, registry, _ = block_graph("soft_attention", None)
    text = to_dot(graph, registry)
    _, _, edges = parse_dot(text)
    into_gate = sorted(src for src, dst, *_ in edges if dst == "gate")
    assert into_gate == ["mask", "trunk2"]
    assert re.search(r"gate \[label=<.*\(1 \+ mask\) \* trunk2", text)
    assert ("input", "up", "size_of: 64 x 64 x 64", True) in edges  # the shape-only edge is dashed


@pytest.mark.parametrize("name", COMPOSITES)
def test_blocks_draw_their_body_at_the_papers_shape(name):
    graph, registry, title = block_graph(name, None)
    nodes, _, edges = parse_dot(to_dot(graph, registry))
    assert nodes == ["input", *[n.name for n in graph.layers()], OUTPUT]  # the formal input and output
    want = {"residual": "31 x 31 x 128", "residual_inception": "15 x 15 x 320", "reduction": "64 x 64 x 64", "soft_attention": "64 x 64 x 64"}
    if name in want:
        assert f"at {want[name]}" in title
        assert all(label.endswith(want[name]) for src, _, label, _ in edges if src == "input")


# --- golden DOT ---

@pytest.mark.parametrize("expand", [False, True], ids=["collapsed", "expanded"])
def test_golden_dot(expand, checked):
    golden = GOLDEN / ("render_small.expanded.dot" if expand else "render_small.dot")
    r = checked(SMALL)
    text = diagram(SMALL, expand=expand).source
    if os.environ.get("ARCHC_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "diagram changed; rerun with ARCHC_UPDATE_GOLDEN=1 if intended, and look at it"
    assert r.ok


# --- SVG ---

def _svg_texts(path: Path) -> tuple[list[str], list[str]]:
    """(every <text> string, every node/edge <title>) of an SVG written by dot."""
    root = ET.parse(path).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    texts = [(t.text or "").strip() for t in root.iter(f"{ns}text")]
    titles = [t.text for g in root.iter(f"{ns}g") if g.get("class") in ("node", "edge") for t in g.findall(f"{ns}title")]
    return texts, titles


@needs_dot
@pytest.mark.parametrize("expand", [False, True], ids=["collapsed", "expanded"])
@pytest.mark.parametrize("spec", spec_params(SPECS), ids=os.path.basename)
def test_svg_carries_names_and_shapes(spec, expand, tmp_path, checked):
    r = checked(spec)
    out = tmp_path / "x.svg"
    render(spec, str(out), expand=expand)
    texts, titles = _svg_texts(out)
    nodes, _, edges = parse_dot(diagram(spec, expand=expand).source)
    for row in rows(r.graph, expand):
        assert row["name"] in texts
    for _, _, label, _ in edges:
        if label is not None:
            assert label in texts
    assert Counter(titles) == Counter(nodes) + Counter(f"{s}->{d}" for s, d, *_ in edges)


@needs_dot
@pytest.mark.parametrize("name", COMPOSITES)
def test_block_svg(name, tmp_path):
    out = tmp_path / f"{name}.png"
    render(None, str(out), block=name)
    assert out.read_bytes().startswith(b"\x89PNG")
    out = tmp_path / f"{name}.svg"
    render(None, str(out), block=name)
    graph, _, _ = block_graph(name, None)
    texts, _ = _svg_texts(out)
    assert {n.name for n in graph.layers()} <= set(texts)


# --- a missing dot program ---

def test_missing_dot_program(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    old = tmp_path / "old.svg"
    old.write_text("<svg/>")
    for target in (tmp_path / "new.svg", old):
        with pytest.raises(ArchcError, match=r"'dot' program.*apt-get install graphviz"):
            render(SMALL, str(target))
    assert not (tmp_path / "new.svg").exists() and old.read_text() == "<svg/>"  # nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.svg"]
    render(SMALL, str(tmp_path / "ok.dot"))  # DOT needs only the Python package
    assert (tmp_path / "ok.dot").read_text().startswith("digraph render_small {")


def archc(*args, env=None):
    return subprocess.run([sys.executable, "-m", "archcompiler", *args], check=False, capture_output=True, text=True, cwd=ROOT, env=env)


def test_cli_missing_dot_program(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    p = archc("render", SMALL, "-o", str(tmp_path / "x.png"), env=env)
    assert p.returncode == 1
    assert p.stderr.startswith("archc: error: writing .png needs graphviz's 'dot' program") and "apt-get install graphviz" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "x.png").exists()


# --- the command line ---

@needs_dot
def test_cli_renders_by_extension(tmp_path):
    for ext, magic in (("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF"), ("dot", b"digraph")):
        out = tmp_path / f"m.{ext}"
        p = archc("render", SMALL, "--expand", "--rankdir", "LR", "-o", str(out))
        assert p.returncode == 0, p.stderr
        assert out.read_bytes().startswith(magic)
    assert "rankdir=LR" in (tmp_path / "m.dot").read_text()


def test_cli_unknown_extension_is_a_usage_error(tmp_path):
    p = archc("render", SMALL, "-o", str(tmp_path / "m.jpeg"))
    assert p.returncode == 2 and "use one of the extensions .svg, .png, .pdf, .dot" in p.stderr
    assert not (tmp_path / "m.jpeg").exists()


def test_cli_bad_spec_prints_diagnostics(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archc: 1\nname: bad\ninput: [3, 8, 8]\nnodes:\n  a: {type: convv}\n")
    p = archc("render", str(bad), "-o", str(tmp_path / "bad.svg"))
    assert p.returncode == 1
    assert f"{bad}:5:" in p.stderr and "convv" in p.stderr and "^" in p.stderr  # with the caret snippet
    assert "Traceback" not in p.stderr and not (tmp_path / "bad.svg").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--block", "resdual"], "unknown block 'resdual'; did you mean 'residual'?"),
        ([], "give a SPEC to draw, or --block NAME"),
        ([SMALL, "--depth", "1"], "--depth N limits --expand"),
        ([SMALL, "--input", "3,8,8"], "--input and --set apply to --block only"),
        (["--block", "residual", "--input", "8,8"], "--input wants C,H,W"),
        (["--block", "soft_attention", "--set", "pool=[a"], "--set pool: cannot read '[a' as a value: invalid YAML"),
        (["--block", "soft_attention", "--set", "pool=!!python/name:os.system"], "the tag '!!python/name:os.system' is not allowed"),
        (["--block", "soft_attention", "--set", "pool=.nan"], "not a finite number"),
        (["--block", "soft_attention", "--set", "pool=1:30"], "--set: 'pool' in node 'soft_attention' must be an integer, got '1:30'"),
    ],
)
def test_cli_usage_errors(args, message, tmp_path):
    p = archc("render", *args, "-o", str(tmp_path / "x.dot"))
    assert p.returncode == 2 and message in p.stderr, p.stderr


def test_cli_block_input_and_params(tmp_path):
    out = tmp_path / "r.dot"
    p = archc("render", "--block", "reduction", "--input", "16,9,9", "--set", "conv_out=8", "--set", "double_out=4", "-o", str(out))
    assert p.returncode == 0, p.stderr
    _, _, edges = parse_dot(out.read_text())
    assert ("cat", "relu", "4 x 4 x 28", False) in edges  # 16 + 8 + 4 channels at (9 - 3) // 2 + 1
    p = archc("render", "--block", "reduction", "--input", "16,2,2", "-o", str(out))
    assert p.returncode == 1 and "<block" not in p.stderr, p.stderr  # at the body's lines in the library
    assert p.stderr.startswith("<stdlib>/reduction.yaml:13:37: error[E404]: node 'reduction' (reduction) > 'pool' (maxpool): the 3x3 window")
    assert "  13 |       pool: {type: maxpool, kernel: 3" in p.stderr
    assert "note: the reduction drawn here has --input 16,2,2; the rest from the block's example" in p.stderr


def test_cli_block_errors_point_at_the_spec_not_the_generated_instance(tmp_path):
    """An instance that fails in its block's body is reported at the body's line in the
    spec, saying which --set made it; a failure at the instance itself names no generated
    line; a --set value at fault is a usage error."""
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "archc: 1\nname: s\ninput: [16, 32, 32]\n"
        "blocks:\n  stage:\n    params:\n      width: {type: integer, minimum: 1}\n      k: {type: integer, default: 3}\n"
        "    nodes:\n      c1: {type: conv, out: $width, kernel: $k}\n      p: {type: maxpool, kernel: $k * 4}\n"
        "      c2: {type: conv, out: $width // 3 * 2, kernel: 1, groups: 4}\n"
        "nodes:\n  s: {type: stage, width: 12}\n"
    )
    out = str(tmp_path / "x.dot")
    p = archc("render", str(spec), "--block", "stage", "--set", "width=16", "-o", out)
    assert p.returncode == 1 and "<block" not in p.stderr, p.stderr
    assert p.stderr.splitlines() == [
        f"{spec}:12:65: error[E402]: node 'stage' (stage) > 'c2' (conv): groups=4 must divide both the input channels (16) and out (10)",
        "  12 |       c2: {type: conv, out: $width // 3 * 2, kernel: 1, groups: 4}",
        " " * 71 + "^",
        f"  note: the stage drawn here has --set width=16; the rest as node 's' at {spec}:14 uses it",
    ]
    p = archc("render", str(spec), "--block", "stage", "--set", "k=-1", "-o", out)  # at the expression, in the spec
    assert p.returncode == 1 and p.stderr.startswith(f"{spec}:10:45: error[E103]: node 'stage' (stage) > 'kernel' in node 'c1'"), p.stderr
    p = archc("render", "--block", "maxpool", "--input", "3,1,1", "-o", out)  # the instance itself: no line to show
    assert p.returncode == 1 and p.stderr.splitlines() == [
        "error[E404]: node 'maxpool' (maxpool): the 2x2 window does not fit the 1x1 input; the map would shrink below 1x1",
        "  note: the maxpool drawn here has --input 3,1,1; the rest from the block's example",
    ], p.stderr
    p = archc("render", "--block", "conv", "--set", "groups=3", "-o", out)
    assert p.returncode == 2 and "--set: node 'conv' (conv): groups=3 must divide" in p.stderr, p.stderr


def test_a_block_is_drawn_with_the_specs_defaults(tmp_path):
    spec = tmp_path / "d.yaml"
    spec.write_text(
        "archc: 1\nname: d\ninput: [3, 8, 8]\ndefaults:\n  batchnorm: {eps: 0.001}\n"
        "blocks:\n  pair:\n    nodes:\n      c: {type: conv, out: 4}\n      bn: {type: batchnorm}\n"
        "nodes:\n  p: {type: pair}\n"
    )
    graph, _, _ = block_graph("pair", check_file(str(spec)))
    assert graph.nodes["bn"].params["eps"] == 0.001


def test_block_from_the_specs_own_blocks(tmp_path):
    spec = tmp_path / "own.yaml"
    spec.write_text(
        "archc: 1\nname: own\ninput: [3, 32, 32]\n"
        "blocks:\n  pair:\n    params:\n      width: {type: integer, minimum: 1}\n"
        "    nodes:\n      a: {type: conv_bn_relu, out: $width, padding: same}\n      b: {type: conv_bn_relu, padding: same}\n"
        "nodes:\n  stem: {type: conv, out: 8, stride: 2, padding: 1}\n  p: {type: pair, width: 12}\n"
    )
    graph, _, title = block_graph("pair", check_file(str(spec)))
    assert [n.name for n in graph.layers()] == ["a", "b"]
    assert title.startswith("pair(width=12) at 16 x 16 x 8")  # where the spec uses it
    with pytest.raises(ArchcError, match="unknown block"):
        diagram(None, block="pair")  # not a built-in
    # a spec's uses of a built-in block set its shape too
    _, _, title = block_graph("residual", check_file(str(ROOT / "specs" / "no_attention.yaml")))
    assert "at 31 x 31 x 128" in title


def test_spec_error_carries_diagnostics(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archc: 1\nname: bad\ninput: [3, 8, 8]\nnodes:\n  a: {type: conv, kernel: 9}\n")
    with pytest.raises(SpecError) as e:
        diagram(str(bad))
    assert any(d.is_error for d in e.value.result.diagnostics)


def _page(path: Path) -> tuple[str, bytes]:
    """A viewer page, with its gzipped Viz.js unpacked: another zlib may pack the same bytes differently."""
    import base64
    import gzip

    text = path.read_text()
    m = re.search(r'(<script type="application/gzip;base64" id="archc-viz">)(.*?)(</script>)', text, re.S)
    return text[:m.start(2)] + text[m.end(2):], gzip.decompress(base64.b64decode(m.group(2)))


@needs_dot
def test_committed_figures_are_current(tmp_path, monkeypatch):
    """docs/figures is what `make figures` writes now: same files, same nodes, edges and text
    (coordinates may differ between graphviz versions, so they are not compared); the viewer
    pages, which hold no coordinates, byte for byte (but for how Viz.js is gzipped). Screenshots are pixels: not compared."""
    from archcompiler.tools.figures import figures

    monkeypatch.chdir(ROOT)  # pages name spec files relative to the working folder, as make figures runs
    fresh = [Path(p).relative_to(tmp_path) for p in figures(str(tmp_path), str(ROOT / "specs"))]
    committed = ROOT / "docs" / "figures"
    assert sorted(fresh) == sorted(p.relative_to(committed) for p in [*committed.rglob("*.svg"), *committed.rglob("*.html")])
    for p in fresh:
        if p.suffix == ".html":
            assert _page(tmp_path / p) == _page(committed / p), f"docs/figures/{p} is stale: run make figures"
        else:
            assert _svg_texts(tmp_path / p) == _svg_texts(committed / p), f"docs/figures/{p} is stale: run make figures"


def test_a_block_with_a_named_input_draws_it_as_a_terminal_fed_at_its_first_use():
    """`render --block up` of the U-Net: the skip comes in beside `input`, at the shapes of
    the block's first use (8x8x512 below, 16x16x256 from the encoder)."""
    result = check_file(str(ROOT / "specs" / "examples" / "unet.yaml"))
    graph, registry, title = block_graph("up", result)
    nodes, _, edges = parse_dot(to_dot(graph, registry))
    assert nodes[:2] == ["input", "skip"]
    assert ("skip", "cat", "16 x 16 x 256", False) in edges and ("input", "up", "8 x 8 x 512", False) in edges
    assert "at 8 x 8 x 512" in title


def test_a_block_drawn_alone_is_the_first_instance_of_a_repeated_use():
    """`render --block` draws the block as the spec's first use builds it: for a repeated use,
    its first instance, with `first:` applied (not a repeat of the block)."""
    from archcompiler.driver import check_text

    result = check_text(textwrap.dedent("""
        archc: 1
        name: r
        input: [4, 16, 16]
        blocks:
          one:
            params: {proj: {type: boolean, default: false}}
            nodes:
              c: {type: conv, out: 4, kernel: 3, padding: 1}
              p: {type: conv, out: 4, kernel: 1, when: $proj}
        nodes:
          t: {type: one, repeat: 3, first: {proj: true}}
    """), "r.yaml")
    body, _, title = block_graph("one", result)
    assert title.startswith("one(proj=true) at 16 x 16 x 4 - 168 params")
    assert [n.name for n in body.layers()] == ["c", "p"]


@pytest.mark.parametrize("expand", [False, True])
def test_the_node_count_that_warns_of_a_long_layout_counts_every_drawn_node(expand):
    """render warns before graphviz lays out more than MANY_NODES nodes; the count is the
    table's rows (every drawn node, clusters' included) plus input and output."""
    from archcompiler.cli.render import diagram, drawn_nodes

    spec = str(Path(__file__).parents[1] / "specs" / "examples" / "densenet121.yaml")
    assert drawn_nodes(diagram(spec, expand=expand)) == len(rows(check_file(spec).graph, expand, None)) + 2


def test_a_failing_block_drawing_names_the_repeated_use_and_only_the_users_errors(tmp_path):
    """Drawn at a wrong --input, a block with several outputs fails at its own line, the note
    names the use by its path (bifpn.0, the first instance of a repeat), and nothing is said
    about the output names the drawing invents for itself."""
    run = archc("render", "tests/specs/bifpn.yaml", "--block", "bifpn_layer", "--input", "8,32,32", "-o", str(tmp_path / "b.svg"))
    assert run.returncode == 1
    assert "tests/specs/bifpn.yaml:31:39: error[E410]" in run.stderr
    assert "as node 'bifpn.0' at tests/specs/bifpn.yaml:48 uses it" in run.stderr
    assert "W303" not in run.stderr and "_out" not in run.stderr and not (tmp_path / "b.svg").exists()
