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


def free_memory(device: torch.device) -> tuple[int, str]:
    """(bytes free for new tensors, where that figure comes from): CUDA's mem_get_info, or on
    the CPU the kernel's MemAvailable (free RAM plus what it can reclaim without swapping),
    less where a cgroup (a container) allows less. $ARCHC_MEMORY_LIMIT (e.g. 2GiB, 512MiB)
    caps it further, for a machine shared with others."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        found = [(free, f"free memory of {device_name(device)}")]
    else:
        found = [(v, "MemAvailable in /proc/meminfo") for v in [_meminfo_available()] if v is not None]
        found += [(v, "the cgroup's memory.max") for v in [_cgroup_room()] if v is not None]
    limit = os.environ.get("ARCHC_MEMORY_LIMIT")
    if limit:
        found.append((parse_bytes(limit), f"ARCHC_MEMORY_LIMIT={limit}"))
    if not found:
        raise RuntimeUsageError("--batch-size auto: cannot read the free memory of this machine (no /proc/meminfo); give a batch size")
    return min(found)


# Binary units as written (GiB), decimal ones as SI means them (10GB is 10^10 bytes), and the
# bare letters of ulimit and docker (-m 4g) as binary.
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|[KMGT]|B)?\s*", text, flags=re.IGNORECASE)
    unit = next((u for u in _UNITS if m and m.group(2) and u.lower() == m.group(2).lower()), "B") if m else None
    if not m or unit is None or (m.group(2) and m.group(2).lower() != unit.lower()):
        raise RuntimeUsageError(f"ARCHC_MEMORY_LIMIT: expected a size such as 2GiB, 512MiB, 10GB or 4g, got '{text}'")
    return int(float(m.group(1)) * _UNITS[unit])


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_room() -> int | None:
    """memory.max less memory.current of this process's cgroup (v2), or None when unlimited."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(int(limit) - int(f.read().strip()), 0)
    except (OSError, ValueError):
        return None
