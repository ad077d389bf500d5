"""The envelope every results file in bench/results/ shares, for scripts that write one.

    from runtime.bench.envelope import envelope, write_results
    data = envelope("check-latency", "python bench/check_latency.py", figures={"warm_ms": 41.2})
    write_results(data)          # -> bench/results/check-latency-amd-epyc-2-cpus.json

Keys: kind (what was measured, also the file-name prefix), machine (GPU name, or CPU model name
and CPU count, as runtime.bench.device.device_name gives them), date (ISO 8601), torch
(version), command (how to reproduce it), device ("cpu"/"cuda"), and the figures: "rows" (a
list of flat objects, one per measured configuration) and/or "figures" (an object of named
values; nested objects are shown as dotted names). Anything else is shown as a figure too.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import torch

from runtime.bench.device import device_name, machine_slug
from runtime.files import write_text

RESULTS_DIR = Path("bench/results")


def envelope(kind: str, command: str, *, rows: list[dict] | None = None, figures: dict | None = None,
             device: str = "cpu") -> dict:
    data = {"kind": kind, "machine": device_name(torch.device(device)),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "command": command, "device": torch.device(device).type}
    if rows is not None:
        data["rows"] = rows
    if figures is not None:
        data["figures"] = figures
    return data


def write_results(data: dict, results_dir: str | os.PathLike = RESULTS_DIR) -> Path:
    """Write `data` as <results_dir>/<kind>-<machine>.json, atomically; the path written."""
    path = Path(results_dir) / f"{data['kind']}-{machine_slug(data['machine'])}.json"
    write_text(path, json.dumps(data, indent=2) + "\n")
    return path
