"""`--batch-size auto` for `archc train` and `archc bench`: the largest batch whose predicted
peak (passes/memory.py, docs/memory.md) fits the device's free memory, less a margin."""
from __future__ import annotations

import sys

from archcompiler.errors import ArchcError
from archcompiler.passes.memory import largest_batch, largest_conv_copies

# Held back from the free memory: the model of the peak is within a few percent of the
# measured tensor peak (docs/benchmarks.md), and what it leaves out (the CUDA caching
# allocator's fragmentation, the data loader's batches, malloc's slack on the CPU) needs room.
MARGIN = 0.15


# An explicit batch predicted to need this many times the free memory is refused on the CPU:
# beyond the model's error and the margin, the kernel would kill the process first.
FAR = 1.5


def far_over_free(graph, registry, batch: int, mode: str, optimizer: str, amp: str) -> tuple[int, int, str] | None:
    """(predicted peak, free bytes, where that figure comes from) when a CPU step at `batch`
    is predicted to need more than FAR times the free memory, else None (also when the free
    memory cannot be known). On a GPU, out of memory is an exception, not a kill: not checked."""
    import torch

    from archcompiler.passes.memory import predict
    from runtime.bench.device import free_memory

    try:
        free, source = free_memory(torch.device("cpu"))
    except Exception:  # noqa: BLE001 - no figure for free memory here: nothing to check against
        return None
    peak = predict(graph, registry, batch, mode, optimizer, amp, "cpu").peak_bytes
    return (peak, free, source) if peak > FAR * free else None


def auto_batch(compiled, mode: str, optimizer: str, amp: str, device, cap: int | None = None) -> int:
    """The batch to run, after printing the prediction behind it on stderr."""
    from runtime.bench.device import free_memory

    free, source = free_memory(device)
    budget = int(free * (1 - MARGIN))
    found = largest_batch(compiled.graph, compiled.result.registry, budget, mode, optimizer, amp, device.type, **({"cap": cap} if cap else {}))
    if found is None:
        raise ArchcError(f"--batch-size auto: even a batch of 1 is predicted to need more than {budget / 2**30:.2f} GiB "
                         f"({100 - 100 * MARGIN:.0f}% of the {free / 2**30:.2f} GiB free)")
    batch, memory = found
    capped = f"; capped at {cap}" if cap and batch == cap else ""
    copies = batch * largest_conv_copies(compiled.graph, compiled.result.registry, amp) if device.type == "cpu" else 0
    room = f" + {copies / 2**30:.2f} GiB for oneDNN's transient copies" if copies else ""
    print(f"batch size auto: {batch} ({mode}, {optimizer if mode == 'train' else 'no optimizer'}, amp {amp}): predicted peak "
          f"{memory.peak_bytes / 2**30:.2f} GiB{room} of a budget of {budget / 2**30:.2f} GiB, {100 - 100 * MARGIN:.0f}% of "
          f"{free / 2**30:.2f} GiB free ({source}){capped}", file=sys.stderr)
    return batch
