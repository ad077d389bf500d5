"""Validation: loss, top-1 and top-5 over a whole split, summed exactly over DDP ranks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runtime import vocab
from runtime.train import distributed


@torch.no_grad()
def evaluate(model: nn.Module, loader, amp: str = "off", world: distributed.World | None = None, device=None, step_begin=None) -> dict:
    """Loss, top-1 and top-5 accuracy over every batch of `loader` (summed over ranks).
    `step_begin` is called before each batch (CUDA graphs' cudagraph_mark_step_begin)."""
    world = world or distributed.World()
    was_training = model.training
    model.eval()
    # Accumulated on the device and read once at the end: no host sync per batch.
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1, top-5, images
    for x, y in loader:
        if step_begin is not None:
            step_begin()
        with vocab.autocast(x.device.type, amp):
            logits = model(x).float()  # (B, classes)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices  # (B, k)
        hits = top == y[:, None]
        totals += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(), hits[:, 0].sum().double(),
                               hits.any(1).sum().double(), torch.full((), float(y.shape[0]), device=y.device, dtype=torch.float64)])
    model.train(was_training)
    loss, top1, top5, n = distributed.all_sum(world, totals.tolist(), device)
    return {"loss": loss / max(1, n), "top1": top1 / max(1, n), "top5": top5 / max(1, n), "images": int(n)}
