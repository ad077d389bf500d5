"""Data-parallel training across processes started by torchrun.

torchrun (python -m torch.distributed.run) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT in each worker's environment; `init` reads them. NCCL joins GPUs, gloo joins CPU
processes. Without those variables (a plain `archc train`) this is a world of one and every
function here is a no-op, so the training loop has a single code path.

Each rank reads its own share of each batch (BatchLoader's rank/world_size); DDP averages the
gradients, so every rank takes the same step. Only rank 0 writes files or prints.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as tdist

from runtime.errors import RuntimeUsageError


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process, 0..size-1
    size: int = 1  # number of processes in all nodes
    local_rank: int = 0  # this process on its node: picks the GPU
    backend: str | None = None  # "nccl", "gloo", or None for a single process

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def init(device_kind: str) -> World:
    """Join the process group torchrun set up; `device_kind` is "cuda" or "cpu"."""
    rank, size, local_rank = from_env()
    if size <= 1:
        return World()
    if tdist.is_initialized():
        return World(rank, size, local_rank, tdist.get_backend())
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeUsageError(f"rank {rank} wants GPU {local_rank} but this node has {torch.cuda.device_count()}; "
                                    "use --nproc_per_node no larger than the number of GPUs")
        torch.cuda.set_device(local_rank)
    # A rank that dies leaves the others waiting in a collective; fail after 30 min, not never.
    tdist.init_process_group(backend, timeout=timedelta(minutes=30))
    return World(rank, size, local_rank, backend)


def device_for(world: World, kind: str) -> torch.device:
    return torch.device("cuda", world.local_rank) if kind == "cuda" else torch.device("cpu")


def barrier(world: World) -> None:
    if world.distributed:
        tdist.barrier()


def all_sum(world: World, values: list[float], device) -> list[float]:
    """Sum plain numbers over ranks (metric totals: loss sums, correct counts, sizes)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return t.tolist()


def any_rank(world: World, flags: list[bool], device) -> list[bool]:
    """Each flag, true on every rank if it is true on any: all ranks stop at the same step on
    Ctrl-C or a NaN, instead of one leaving the others waiting in a collective."""
    if not world.distributed:
        return list(flags)
    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def gather(world: World, obj) -> list:
    """Every rank's `obj`, in rank order, on every rank (small objects: RNG states, digests)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    tdist.all_gather_object(out, obj)
    return out


def broadcast(world: World, obj):
    """Rank 0's `obj` on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(world: World, module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (batchnorm running statistics) to every rank. DDP broadcasts them
    before each training forward, so after the last step each rank holds the statistics of its
    own last batch; evaluation should use the ones rank 0 saves."""
    if world.distributed:
        for buffer in module.buffers():
            tdist.broadcast(buffer.data, src=0)


def digest(module: torch.nn.Module) -> str:
    """A checksum of every parameter, bit for bit."""
    h = hashlib.sha256()
    for name, t in sorted(module.named_parameters()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def in_sync(world: World, module: torch.nn.Module) -> bool:
    """Whether every rank holds bit-identical parameters (DDP's promise; checked, not assumed)."""
    digests = gather(world, digest(module))
    return all(d == digests[0] for d in digests)


def shutdown(world: World) -> None:
    if world.distributed and tdist.is_initialized():
        tdist.destroy_process_group()
