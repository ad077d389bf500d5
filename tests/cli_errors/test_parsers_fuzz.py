"""Random flag values into every subcommand's parser and its checking stage (what runs before
any work): the outcome is always a usage message (exit 2), bad input (1) or --help (0), never
an internal error. In-process and write-free: the stages only check paths, never write them."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archcompiler.cli import bench, check, emit, evaluate, export, render, schema, train
from runtime.data import cli as data_cli
from runtime.data.load import parse_spec
from runtime.paths import output_dir
from runtime.train import compare


def _data(args):
    if args.command == "download":
        output_dir(args.to, "--to", may_create=True)
    else:
        parse_spec(args.dataset)


# command -> (parser, checking stage, positional arguments, flags)
COMMANDS = {
    "check": (check.parser, None, ["tiny.yaml"], ["--format", "--depth", "--expand"]),
    "schema": (schema.parser, schema.check_args, [], ["-o"]),
    "emit": (emit.parser, emit.check_args, ["tiny.yaml"], ["-o", "--line-map"]),
    "render": (render.parser, render.check_args, ["tiny.yaml"], ["-o", "--block", "--depth", "--rankdir", "--input", "--set", "--expand"]),
    "export": (export.parser, export.check_args, ["tiny.yaml"], ["-o", "--checkpoint", "--opset", "--format"]),
    "train": (train.parser, train.check_args, ["tiny.yaml"],
              ["--data", "--recipe", "--epochs", "--batch-size", "--lr", "--seed", "--device", "--amp", "--out", "--max-steps",
               "--checkpoint-every", "--nproc", "--cache-dir", "--resume"]),
    "eval": (evaluate.parser, evaluate.check_args, ["tiny.yaml"], ["--checkpoint", "--data", "--batch-size", "--device", "--format", "--cache-dir"]),
    "bench": (bench.parser, bench.check_args, ["tiny.yaml"],
              ["--mode", "--batch-size", "--compile", "--warmup", "--iters", "--threads", "--threshold", "--format", "--optimizer"]),
    "compare": (compare.parser, compare.check_args, ["run"], ["--format", "--plot"]),
    "data info": (data_cli.build_parser, _data, ["info", "ds"], ["--format"]),
    "data download": (data_cli.build_parser, _data, ["download", "tiny-imagenet"], ["--to", "--url", "--sha256"]),
}

# Values a user might type, and some no user would: numbers out of every range, paths that are
# folders, missing, or under /proc, empty strings, schemes that do not exist.
VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "0", "-1", "nan", "inf", "1e400", "0x10", "/proc/nope/x.json", "/proc", ".", "..", "nosuch/x.png",
                     "foo:bar", "synthetic:train=-1", "synthetic:x", "tiny-imagenet:", "cuda:9", "1,2,,3", "a=b", "x.svg", "x.onnx"]),
    st.from_regex(r"[0-9a-z,.:=/+-]{1,8}", fullmatch=True),  # near misses of numbers, lists and paths
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
)


@st.composite
def command_lines(draw):
    name = draw(st.sampled_from(sorted(COMMANDS)))
    _, _, positional, flags = COMMANDS[name]
    argv = list(positional)
    for flag in draw(st.lists(st.sampled_from(flags), max_size=4)):
        if flag in ("--expand", "--resume"):
            argv.append(flag)
        else:
            argv += [flag, draw(VALUES)]
    return name, argv


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=command_lines())
def test_random_flags_never_reach_an_internal_error(in_tmp, line, capsys):
    name, argv = line
    make_parser, stage, _, _ = COMMANDS[name]
    before = sorted(os.listdir(in_tmp))
    try:
        args = make_parser().parse_args(argv)
        if stage is not None:
            stage(args)
    except SystemExit as e:
        assert e.code in (0, 2), (name, argv, e.code)
    except Exception as e:  # noqa: BLE001 - anything without an exit code would be exit 70
        code = getattr(e, "exit_code", None)
        assert code in (1, 2), f"archc {name} {argv}: {type(e).__name__}: {e}"
    capsys.readouterr()
    assert sorted(os.listdir(in_tmp)) == before  # checking wrote nothing
