"""Golden diagnostics for the bad-spec corpus in tests/bad_specs/.

Each `NNN_short_name.yaml` there is one broken spec (or a valid one that only warns), and
`NNN_short_name.expected` next to it pins what `archc check --concise` reports for it, run
from the repository root:

    exit: 1
    tests/bad_specs/013_cycle.yaml:6:3: error[E301]: cycle: a -> c -> b -> a (each node reads the next)

- The first line is `exit: N`, the exit code of `archc check` on that file alone (0 when it
  only warns, 1 when it has an error).
- Every following line is one diagnostic, exactly as printed on stderr, in order. The
  summary line `archc check` prints last ("0 of 1 specs ok; ...") is not included.

The files are compared exactly. After a deliberate change of a message, rewrite them with
`ARCHC_UPDATE_GOLDEN=1 pytest tests/test_bad_specs.py`, then read every changed golden as a
user would before committing it (`git diff tests/bad_specs`).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from archcompiler.driver import check_file, check_text
from archcompiler.frontend import loader

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "bad_specs"
CASES = sorted(CORPUS.glob("*.yaml"))
ARCHC = Path(sys.executable).parent / "archc"
UPDATE = os.environ.get("ARCHC_UPDATE_GOLDEN") == "1"
CONCISE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning)\[(?P<code>[EW]\d{3})\]: .+$")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def read_golden(path: Path) -> tuple[int, list[str]]:
    head, *lines = path.read_text(encoding="utf-8").splitlines()
    assert head.startswith("exit: "), f"{rel(path)}: the first line must be 'exit: N'"
    return int(head.removeprefix("exit: ")), lines


def actual(case: Path) -> tuple[int, list[str]]:
    result = check_file(rel(case))  # relative, as a user types it: the path is part of the text
    return (0 if result.valid else 1), [d.concise() for d in result.diagnostics]


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden(case: Path):
    golden = case.with_suffix(".expected")
    code, lines = actual(case)
    if UPDATE:
        golden.write_text("".join(f"{x}\n" for x in [f"exit: {code}", *lines]), encoding="utf-8")
    assert golden.exists(), f"no golden for {rel(case)}; run with ARCHC_UPDATE_GOLDEN=1 and read it"
    assert (code, lines) == read_golden(golden)


def test_corpus_is_large_distinct_and_well_formed():
    assert len(CASES) >= 35
    assert {p.stem for p in CORPUS.glob("*.expected")} == {c.stem for c in CASES}, "every case has a golden, and no golden is orphaned"
    seen: dict[tuple, str] = {}
    for case in CASES:
        assert re.fullmatch(r"\d{3}_[a-z0-9_]+", case.stem), case.name
        code, lines = read_golden(case.with_suffix(".expected"))
        assert lines, f"{case.name}: a corpus case must produce at least one diagnostic"
        n_lines = len(case.read_bytes().splitlines()) or 1
        for line in lines:
            m = CONCISE.match(line)
            assert m, f"{case.name}: not a concise diagnostic: {line}"
            assert m["file"] == rel(case)
            assert 1 <= int(m["line"]) <= n_lines and int(m["col"]) >= 1, line
        assert code == (1 if any("error[" in x for x in lines) else 0)
        problem = tuple(line.removeprefix(m["file"]) for line in lines)
        assert problem not in seen, f"{case.name} repeats {seen[problem]}"
        seen[problem] = case.name


def test_every_error_is_reported_not_only_the_first():
    _, lines = actual(CORPUS / "053_many_errors.yaml")
    assert len(lines) == 5
    assert [re.search(r"\[(\w+)\]", x)[1] for x in lines] == ["E200", "E101", "E300", "E103", "E100"]


def test_did_you_mean_for_types_parameters_and_references():
    for stem, hint in [
        ("006_unknown_type_typo", "did you mean 'conv'?"),
        ("007_unknown_param_typo", "did you mean 'kernel'?"),
        ("033_in_unknown_node", "did you mean 'stem'?"),
        ("032_bad_enum_padding", "did you mean 'same'?"),
    ]:
        _, lines = actual(CORPUS / f"{stem}.yaml")
        assert lines[0].endswith(hint), lines[0]


# ---------------------------------------------------------------- unsafe and hostile YAML


def test_unsafe_tags_construct_nothing(tmp_path, monkeypatch):
    """`!!python/object/apply` must be refused before anything runs, not just reported."""
    marker = tmp_path / "pwned"
    text = f"archc: 1\nname: x\ninput: [3, 8, 8]\nnodes:\n  a: !!python/object/apply:os.system ['touch {marker}']\n"
    result = check_text(text, "evil.yaml")
    assert not result.ok and [d.code for d in result.diagnostics] == ["E004"]
    assert not marker.exists()


@pytest.mark.parametrize("stem", ["024_alias_bomb", "085_alias_bomb_mappings"])
def test_alias_bomb_is_refused_quickly_in_bounded_memory(stem):
    text = (CORPUS / f"{stem}.yaml").read_text()
    tracemalloc.start()
    try:
        result = check_text(text, "bomb.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [d.code for d in result.diagnostics] == ["E005"]
    # Expanded, these are 10**9 and 10**10 values; refused from the node graph, unexpanded.
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"


@pytest.fixture
def no_parsing(monkeypatch):
    """PyYAML's parser must not run: what is refused before parsing costs no parse time."""

    def refuse(*a, **k):
        raise AssertionError("PyYAML was asked to parse")

    monkeypatch.setattr(loader.yaml, "SafeLoader", refuse)
    monkeypatch.setattr(loader, "_Loader", refuse)


@pytest.mark.parametrize("text", ["a: " + "[" * 100_000 + "]" * 100_000, "a: " + "{b: " * 50_000 + "1" + "}" * 50_000])
def test_deep_flow_nesting_is_refused_before_parsing(text, no_parsing):
    """PyYAML's scanner takes quadratic time on nested flow collections."""
    result = check_text(text, "deep.yaml")
    assert [d.code for d in result.diagnostics] == ["E005"]


def test_deep_block_nesting_is_refused_without_recursion_errors():
    """PyYAML's composer recurses once per level."""
    result = check_text("".join("  " * i + "k:\n" for i in range(600)), "deep.yaml")
    assert [d.code for d in result.diagnostics] == ["E005"]


def test_a_huge_file_is_refused_before_parsing(no_parsing):
    text = "archc: 1\nsummary: [" + "1, " * 100_000 + "1]\n"  # PyYAML would take many seconds
    lines = [d.concise() for d in check_text(text, "huge.yaml").diagnostics]
    assert lines == ["huge.yaml:1:1: error[E005]: the file holds 293 KiB of text; a spec is a few KiB, and more than 256 KiB is refused"]


def test_recursive_alias_terminates():
    result = check_text("a: &a [*a]\n", "loop.yaml")
    assert [d.code for d in result.diagnostics] == ["E005"]


def test_invalid_utf8_from_bytes(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("archc: 1\nname: caf\xe9\n".encode("latin-1"))
    lines = [d.concise() for d in check_file(str(path)).diagnostics]
    assert lines == [f"{path}:2:10: error[E001]: the file is not valid UTF-8 text: byte 0xe9 cannot be decoded; save it as UTF-8"]


# ---------------------------------------------------------------- the real `archc` entry point


def run_archc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ARCHC), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_concise_over_the_whole_corpus_matches_the_goldens():
    """One run over every case: the same lines, in order, then the summary; exit 1."""
    proc = run_archc("check", "--concise", "--quiet", *map(rel, CASES))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    *lines, summary = proc.stderr.splitlines()
    assert lines == [x for c in CASES for x in read_golden(c.with_suffix(".expected"))[1]]
    ok = sum(read_golden(c.with_suffix(".expected"))[0] == 0 for c in CASES)
    assert summary.startswith(f"{ok} of {len(CASES)} specs ok; ")


def test_cli_pretty_form_shows_the_source_line_and_a_caret_under_the_column():
    proc = run_archc("check", *map(rel, CASES))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    out = proc.stderr.splitlines()
    checked = 0
    for i, line in enumerate(out):
        m = CONCISE.match(line)
        if not m:
            continue
        source = (ROOT / m["file"]).read_bytes().decode("utf-8", "replace").splitlines()
        n, col = int(m["line"]), int(m["col"])
        if n > len(source):
            assert not source and m["code"] == "E006"  # an empty file has no line to show
            continue
        gutter = f"{n:>4} | "
        assert out[i + 1] == gutter + source[n - 1].expandtabs(1), line
        assert out[i + 2] == " " * (len(gutter) + col - 1) + "^", line
        checked += 1
    assert checked > 60


@pytest.mark.parametrize(
    ("stem", "code"), [("034_unused_node_warning", 0), ("083_two_unused_warnings", 0), ("013_cycle", 1), ("025_empty_file", 1)]
)
def test_cli_exit_code_of_one_file(stem, code):
    proc = run_archc("check", rel(CORPUS / f"{stem}.yaml"))
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr
    if code == 0:
        assert "warning[W303]" in proc.stderr and "Layer" in proc.stdout  # warnings still print the table


def test_cli_usage_errors_exit_2():
    for args in (["check"], ["check", "--format", "xml", "specs/no_attention.yaml"], ["chek", "specs/no_attention.yaml"]):
        proc = run_archc(*args)
        assert proc.returncode == 2, args
        assert "Traceback" not in proc.stderr


def test_cli_missing_file_is_an_error_not_a_crash():
    proc = run_archc("check", "--concise", "no/such/spec.yaml")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "error[E000]: no such file: no/such/spec.yaml"


def test_cli_a_block_library_without_errors_exits_0(tmp_path):
    """Exit 0 means 'everything is valid': that includes a file of `blocks:` only."""
    lib = tmp_path / "pairs.yaml"
    lib.write_text("archc: 1\nblocks:\n  pair:\n    nodes:\n      a: {type: conv, padding: same}\n      b: {type: conv, padding: same}\n")
    proc = run_archc("check", str(lib))
    assert (proc.returncode, proc.stderr) == (0, "")


def test_docs_list_every_code_and_quote_the_goldens_exactly():
    doc = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "archcompiler").rglob("*.py"))
    used = set(re.findall(r"\"([EW]\d{3})\"", source))
    documented = set(re.findall(r"^### ([EW]\d{3}):", doc, re.M))
    assert used and used <= documented, f"undocumented: {sorted(used - documented)}"
    goldens = {x.removeprefix("tests/bad_specs/") for c in CASES for x in read_golden(c.with_suffix(".expected"))[1]}
    examples = re.findall(r"^    (\d{3}_\w+\.yaml:\d+:\d+: .+)$", doc, re.M)
    assert len(examples) > 30
    assert [x for x in examples if x not in goldens] == []
