"""Which device a benchmark runs on, what to call the machine, and how to wait for it."""
from __future__ import annotations

import os
import platform
import re

import torch

from runtime.errors import RuntimeUsageError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when it is available, else the CPU. Asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeUsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise RuntimeUsageError(f"--device must be auto, cpu or cuda[:N], not '{name}'")
    return torch.device(name)


def cpu_name() -> str:
    """The CPU's model name as /proc/cpuinfo gives it, else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """A name that identifies the hardware: the GPU's name, or the CPU's with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} CPUs)"


def machine_slug(machine: str) -> str:
    """`machine` as a file-name fragment: 'AMD EPYC (2 CPUs)' -> 'amd-epyc-2-cpus'."""
    return re.sub(r"[^a-z0-9]+", "-", machine.lower()).strip("-") or "unknown"


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
