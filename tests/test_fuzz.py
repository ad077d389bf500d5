"""Fuzzing the front-end: a mutated spec either checks cleanly or gets diagnostics; it never
raises, and every diagnostic points inside the file.

The seeds are the real specs and the standard library's block definitions. Mutations work on
the text (lines deleted or duplicated, characters swapped, tokens, numbers and references
replaced, YAML punctuation and tabs inserted, indentation changed) and on the data (a random
value of a random type put at a random path, then dumped back with yaml.safe_dump).
Derandomized, so a failure reproduces on every run; any crash is a compiler bug to fix there.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archcompiler.driver import builtin_registry
from archcompiler.driver import check_text

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted([*ROOT.glob("specs/*.yaml"), *ROOT.glob("specs/examples/*.yaml"), *ROOT.glob("tests/specs/*.yaml"),
                *ROOT.glob("archcompiler/blocks/stdlib/*.yaml")])
# The stdlib's blocks are renamed, or each would only clash with the built-in of its name.
TEXTS = [re.sub(r"^  ([a-z_]+):$", r"  \1_v2:", p.read_text(encoding="utf-8"), flags=re.M) if "stdlib" in p.parts else p.read_text(encoding="utf-8") for p in SEEDS]
NAMES = sorted({m for t in TEXTS for m in re.findall(r"^ +([a-z_][a-z0-9_]*):", t, re.M)})
VOCAB = sorted(
    set(NAMES)
    | set(builtin_registry().names())
    | {"in", "type", "nodes", "blocks", "params", "output", "input", "archc", "name", "default", "$in_channels", "$x"}
    | {"null", "~", "true", "no", "1e3", "-1", "0", ".inf", ".nan", "0x10", "1_000", "12:30", "2024-01-01"}
    | {'"quoted"', "'q'", "[a, b]", "{}", "[]", "&a", "*a", "!!str", "!!python/none", "<<", "|", ">-", "? x"}
)
PUNCT = ["\t", ":", ": ", "[", "]", "{", "}", "-", "- ", "&", "*", "!", "#", '"', "'", " ", "\n", "|", ">", "%", "@", "`", ",", "?", "\x00", "\x07", "\ufeff", "\u2028", "é", "---\n", "..."]

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def assert_sound(text: str) -> None:
    """The property: no exception; ok, or at least one error; every position inside the text."""
    result = check_text(text, "fuzz.yaml")
    errors = [d for d in result.diagnostics if d.is_error]
    assert result.valid or errors, "not valid, yet no error was reported"
    assert not (result.valid and errors)
    lines = text.splitlines() or [""]
    for d in result.diagnostics:
        d.concise(), d.pretty({"fuzz.yaml": text}), d.to_json()  # the renderers must not raise either
        if d.span is None:
            continue
        assert 1 <= d.span.line <= len(lines), d.concise()
        assert 1 <= d.span.column <= len(lines[d.span.line - 1]) + 1, d.concise()


# ---------------------------------------------------------------- text mutations


def _delete_line(draw, lines):
    i = draw(st.integers(0, len(lines) - 1))
    return lines[:i] + lines[i + 1 :]


def _duplicate_line(draw, lines):
    i = draw(st.integers(0, len(lines) - 1))
    return lines[: i + 1] + [lines[i]] + lines[i + 1 :]


def _swap_chars(draw, lines):
    i = draw(st.integers(0, len(lines) - 1))
    s = lines[i]
    if len(s) < 2:
        return lines
    j = draw(st.integers(0, len(s) - 2))
    return lines[:i] + [s[:j] + s[j + 1] + s[j] + s[j + 2 :]] + lines[i + 1 :]


def _replace_token(draw, lines):
    i = draw(st.integers(0, len(lines) - 1))
    tokens = list(re.finditer(r"[A-Za-z_$][A-Za-z0-9_]*|-?\d+(\.\d+)?", lines[i]))
    if not tokens:
        return lines
    m = draw(st.sampled_from(tokens))
    new = draw(st.one_of(st.sampled_from(VOCAB), st.text(max_size=6), st.integers(-(2**70), 2**70).map(str)))
    return lines[:i] + [lines[i][: m.start()] + new + lines[i][m.end() :]] + lines[i + 1 :]


def _replace_number(draw, lines):
    spots = [(i, m) for i, s in enumerate(lines) for m in re.finditer(r"\b\d+(\.\d+)?\b", s)]
    if not spots:
        return lines
    i, m = draw(st.sampled_from(spots))
    new = draw(st.one_of(st.integers(-3, 3), st.integers(0, 300), st.integers(-(10**30), 10**30), st.floats(allow_nan=True)).map(str))
    return lines[:i] + [lines[i][: m.start()] + new + lines[i][m.end() :]] + lines[i + 1 :]


def _insert_punct(draw, lines):
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines[i])))
    p = draw(st.sampled_from(PUNCT))
    return lines[:i] + [lines[i][:j] + p + lines[i][j:]] + lines[i + 1 :]


def _reindent(draw, lines):
    i = draw(st.integers(0, len(lines) - 1))
    delta = draw(st.sampled_from([-4, -2, -1, 1, 2, 4]))
    s = lines[i]
    s = " " * delta + s if delta > 0 else s[min(-delta, len(s) - len(s.lstrip(" "))) :]
    return lines[:i] + [s] + lines[i + 1 :]


def _rewire(draw, lines):
    """Point an `in:` or `size_of:` at another node, or give a node an `in:`."""
    spots = [i for i, s in enumerate(lines) if re.match(r"^ +[a-z_][a-z0-9_]*: \{type:", s)]
    if not spots:
        return lines
    i = draw(st.sampled_from(spots))
    target = draw(st.one_of(st.sampled_from(NAMES), st.lists(st.sampled_from(NAMES + ["input"]), max_size=3).map(lambda xs: f"[{', '.join(xs)}]")))
    s = re.sub(r", in: (\[[^\]]*\]|\w+)", "", lines[i]).rstrip("}").rstrip() + f", in: {target}}}"
    if "size_of:" in s and draw(st.booleans()):
        s = re.sub(r"size_of: \w+", f"size_of: {draw(st.sampled_from(NAMES))}", s)
    return lines[:i] + [s] + lines[i + 1 :]


TEXT_OPS = [_delete_line, _duplicate_line, _swap_chars, _replace_token, _replace_number, _insert_punct, _reindent, _rewire]


@st.composite
def mutated_texts(draw):
    lines = draw(st.sampled_from(TEXTS)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        lines = draw(st.sampled_from(TEXT_OPS))(draw, lines)
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


@SETTINGS
@given(mutated_texts())
def test_mutated_text_never_crashes(text):
    assert_sound(text)


# ---------------------------------------------------------------- data mutations

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(VOCAB),
    st.text(max_size=8),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(VOCAB), inner, max_size=3)), max_leaves=8)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_data(draw):
    data = yaml.safe_load(draw(st.sampled_from(TEXTS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths[1:] if len(paths) > 1 and draw(st.integers(0, 9)) else paths))
        # plausible sizes and names reach shape inference; anything else tests the schema
        value = draw(st.one_of(st.integers(-2, 300), st.sampled_from(NAMES), VALUES))
        if not path:
            data = value
            continue
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and draw(st.booleans()):
            parent[draw(st.sampled_from(VOCAB))] = value  # a new key beside it
        else:
            parent[path[-1]] = value
    return yaml.safe_dump(data, sort_keys=draw(st.booleans()), default_flow_style=draw(st.sampled_from([None, False, True])))


@SETTINGS
@given(mutated_data())
def test_mutated_data_never_crashes(text):
    assert_sound(text)


@st.composite
def plausible_data(draw):
    """Well-typed edits (sizes, block types, wiring), so that shape inference and composite
    expansion run on them rather than the schema stopping them."""
    data = yaml.safe_load(draw(st.sampled_from(TEXTS)))
    sizes = [p for p in _paths(data) if p and p[0] in ("input", "nodes", "blocks") and type(_get(data, p)) is int]
    wiring = [p for p in _paths(data) if p and p[-1] in ("type", "in", "size_of", "output")]
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(sizes if draw(st.integers(0, 3)) or not wiring else wiring))
        if type(_get(data, path)) is int:
            value = draw(st.one_of(st.integers(1, 8), st.integers(1, 300)))
        elif path[-1] == "type":
            value = draw(st.sampled_from(builtin_registry().names()))
        else:
            names = [n for n in _get(data, path[:-2])] + ["input"]
            value = draw(st.one_of(st.sampled_from(names), st.lists(st.sampled_from(names), min_size=2, max_size=3)))
        _get(data, path[:-1])[path[-1]] = value
    return yaml.safe_dump(data, sort_keys=False)


def _get(data, path):
    for k in path:
        data = data[k]
    return data


@SETTINGS
@given(plausible_data())
def test_plausible_edits_never_crash(text):
    assert_sound(text)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(plausible_data())
def test_a_valid_edited_spec_emits_a_model_that_runs(text):
    """What check accepts, emit writes, and the module runs (on the meta device: shapes, not
    numbers) to the output check inferred: an edit that check passes but the emitter or
    PyTorch refuses is a bug of check's (a spec once emitted a KeyError)."""
    import torch

    from archcompiler.api import Compiled

    result = check_text(text, "fuzz.yaml")
    if not result.ok:
        return
    compiled = Compiled(result)
    compile(compiled.source, "model.py", "exec")
    with torch.no_grad():
        out = compiled.module(seed=0, device="meta").eval()(torch.empty(1, *compiled.input_shape, device="meta"))
    outs = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape[1:]) for o in outs] == [tuple(s) for s in compiled.output_shapes]


def test_the_seeds_themselves_are_valid():
    for text in TEXTS:
        result = check_text(text)
        assert result.valid and result.diagnostics == []


# ---------------------------------------------------------------- arithmetic as emitted

@st.composite
def _expressions(draw, depth=3):
    """An expression text of the spec language over $a, $b, $c, each compound operand in
    brackets: the text's grouping is the tree's, which the emitted code must keep."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.one_of(st.sampled_from(["$a", "$b", "$c"]), st.integers(1, 9).map(str)))
    left, right = draw(_expressions(depth - 1)), draw(_expressions(depth - 1))
    if draw(st.integers(0, 5)) == 0:
        return f"max({left}, {right})"
    if draw(st.integers(0, 7)) == 0:
        return f"round(({left}) / ({right}))"
    if draw(st.integers(0, 7)) == 0:
        return f"int(({left}) / ({right}))"
    if draw(st.integers(0, 4)) == 0:  # Python's conditional, bracketed as an operand; nested in either branch
        cmp = draw(st.sampled_from(["<", "<=", "==", "!=", ">", ">="]))
        other = draw(_expressions(depth - 1))
        return f"(({left}) if {draw(_expressions(depth - 1))} {cmp} {draw(_expressions(depth - 1))} else {other})"
    op = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
    return f"({left}) {op} ({right})"


@SETTINGS
@given(text=_expressions(), a=st.integers(1, 50), b=st.integers(1, 50), c=st.integers(1, 50))
def test_an_expression_as_emitted_computes_what_check_computed(text, a, b, c):
    """The emitted code writes an expression from its Sym; Python's grouping must give the
    value check computed (a // (c * d) was once written a // c * d)."""
    from archcompiler.ir.arith import ExprError, condition_source, evaluate, holds, parse, parse_condition
    from archcompiler.ir.expr import Sym, render, value_of

    env = {"a": a, "b": b, "c": c}
    try:
        value = evaluate(parse(text), {k: Sym.var(k, v) for k, v in env.items()})
    except ExprError:  # division by zero
        return
    written = render(value.expr) if isinstance(value, Sym) else repr(value)
    assert eval(written, {"max": max, "round": round, "int": int}, dict(env)) == value_of(value), written  # noqa: S307 (generated arithmetic)
    # a condition is written from its tree, not from a computed Sym: the same grouping rules
    cond = parse_condition(f"{text} > 7 or $a == {a}")
    source = render(condition_source(cond, {k: Sym.var(k, v) for k, v in env.items()}))
    assert eval(source, {"max": max, "round": round, "int": int}, dict(env)) == holds(cond, env), source  # noqa: S307
