"""The one place where training meets runtime.data: the batch loaders fit() iterates.

The training loader shuffles, augments as the recipe says, and gives each DDP rank its share;
the validation loader walks a (pre-sharded) split in order, unaugmented, on this rank alone.
Both normalise with the training set's channel statistics, as the paper does.
"""
from __future__ import annotations

from runtime.data import Augment, BatchLoader


def make_loader(dataset, *, batch_size: int, train: bool, config, device, mean, std=None, rank: int = 0, world_size: int = 1) -> BatchLoader:
    augment = Augment(flip=config.augment_flip, crop_padding=config.augment_crop_padding) if train else None
    # rank/world_size always explicit: BatchLoader would otherwise take torch.distributed's,
    # and the validation split is sharded by the caller, so its loader is a world of one.
    return BatchLoader(dataset.images, dataset.labels, batch_size=batch_size, shuffle=train, seed=config.seed, device=device,
                       augment=augment, mean=mean, std=std, drop_last=False, rank=rank, world_size=world_size,
                       channels_last=bool(config.channels_last))
