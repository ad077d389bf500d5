"""Run many `archc` command lines in one process, each through the console-script entry point
(`archcompiler.cli.main:entry`, what the installed `archc` calls), and report for each its exit
code, its stdout and stderr (captured at the file descriptors, so a warning printed by torch's
C++ side or a logging handler is caught too) and which watched files it changed.

One process for a hundred cases: starting Python with torch costs 1-2 s, a case milliseconds.

    python -m tests.cli_errors.driver CASES.json RESULTS.json

CASES.json is a list of {"argv": [...], "cwd": DIR, "watch": [DIR or FILE, ...], "env": {...}}.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings


def snapshot(root: str) -> dict[str, str]:
    """Every file, folder and link under `root` (or `root` itself): content hash or link target."""
    if os.path.islink(root):
        return {".": "-> " + os.readlink(root)}
    if os.path.isfile(root):
        with open(root, "rb") as f:
            return {".": hashlib.sha256(f.read()).hexdigest()}
    if not os.path.isdir(root):
        return {}
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = "-> " + os.readlink(path)
            elif os.path.isdir(path):
                found[rel] = "dir"
            elif not os.path.isfile(path):  # a pipe or device: opening it could block
                found[rel] = "special"
            else:
                with open(path, "rb") as f:
                    found[rel] = hashlib.sha256(f.read()).hexdigest()
    return found


def run_case(case: dict) -> dict:
    from archcompiler.cli.main import entry

    os.chdir(case["cwd"])
    watch = [os.path.join(case["cwd"], w) for w in case.get("watch", [])]
    before = {w: snapshot(w) for w in watch}
    old_env = {k: os.environ.get(k) for k in case.get("env", {})}
    os.environ.update(case.get("env", {}))
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.argv = ["archc", *case["argv"]]
        code = None
        try:
            with warnings.catch_warnings():  # each case sees warnings as a fresh process would
                entry()
        except SystemExit as e:
            code = e.code
        except BaseException as e:  # noqa: BLE001 - whatever escaped entry() is a finding
            code = f"escaped: {type(e).__name__}: {e}"
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
    changed = []
    for w in watch:
        after = snapshot(w)
        changed += [f"{os.path.relpath(w, case['cwd'])}:{k}" for k in sorted(set(before[w]) | set(after)) if before[w].get(k) != after.get(k)]
    return {"code": code, "out": texts[0], "err": texts[1], "changed": changed}


def main() -> None:
    cases_path, results_path = sys.argv[1:3]
    with open(cases_path) as f:
        cases = json.load(f)
    results = [run_case(c) for c in cases]
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
