"""Batches straight from an in-memory uint8 tensor, augmented and normalised on the device.

No worker processes and no per-sample Python: a batch is one `index_select` from the dataset
tensor (which lives on the GPU when training on CUDA), an optional flip-and-crop done as one
more `index_select` over the whole batch, and one conversion to float32:

    x = (pixels / 255 - mean) / std        # mean, std per channel, in [0, 1] units; std=None means 1

Everything random is a pure function of the seed, so a resumed run sees the very same batches:
- the visiting order of epoch `e` is `DistributedSampler`'s: `randperm(N)` from a generator
  seeded with `seed + e`, padded by wrapping around to a multiple of `world_size`, and rank `r`
  takes every `world_size`-th index from position `r`;
- the augmentation of batch `k` comes from its own generator, seeded by (seed, epoch, rank, k).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from runtime.errors import RuntimeUsageError


@dataclass(frozen=True)
class Augment:
    flip: bool = False  # mirror left-right with probability 1/2: most classes have no handedness
    crop_padding: int = 0  # pad by this many zero pixels, then take a random crop of the image's size; 0 is off

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise RuntimeUsageError(f"crop padding must be >= 0, got {self.crop_padding}")

    @property
    def active(self) -> bool:
        return self.flip or self.crop_padding > 0

    @classmethod
    def parse(cls, text: str) -> Augment:
        """'none', 'flip', 'crop' (padding 4), 'crop=N', or a comma-separated mix: 'flip,crop=4'."""
        flip, pad = False, 0
        for part in filter(None, (p.strip() for p in text.lower().split(","))):
            name, _, value = part.partition("=")
            if name == "none" and not value:
                continue
            if name == "flip" and not value:
                flip = True
            elif name == "crop" and (not value or value.isdigit()):
                pad = int(value) if value else 4
            else:
                raise RuntimeUsageError(f"unknown augmentation '{part}'; use none, flip, crop or crop=N, comma-separated")
        return cls(flip=flip, crop_padding=pad)


class BatchLoader:
    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        device: str | torch.device = "cpu",
        augment: Augment | None = None,
        mean: Sequence[float] | torch.Tensor | None = None,
        std: Sequence[float] | torch.Tensor | None = None,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        channels_last: bool = False,
    ) -> None:
        """`images` uint8 (N, 3, H, W) and `labels` (N,). `mean`/`std` per channel, in [0, 1] units.

        `channels_last` gives batches in NHWC memory order, as a channels_last model wants them
        (training and validation alike, so a compiled model sees one input layout).

        `rank`/`world_size` default to torch.distributed's when it is initialised (torchrun).
        `drop_last` drops this rank's last, smaller batch; every rank has the same batch count.
        """
        if batch_size < 1:
            raise RuntimeUsageError(f"batch size must be >= 1, got {batch_size}")
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) == 0:
            raise ValueError("cannot batch an empty dataset")
        self.device = torch.device(device)
        # On CUDA the whole set moves to the GPU once; per batch only indices travel.
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.channels_last = channels_last
        self.augment = augment if augment is not None and augment.active else None
        self.rank, self.world_size = _distributed(rank, world_size)
        channels = images.shape[1]
        mean_t = torch.as_tensor(mean if mean is not None else [0.0] * channels, dtype=torch.float32)
        std_t = torch.as_tensor(std if std is not None else [1.0] * channels, dtype=torch.float32)
        # (x / 255 - mean) / std as one multiply and one add per pixel, over a (B, C, H*W) view:
        # broadcasting a (1, C, 1) factor along one long contiguous run is about 3x faster on
        # the CPU than a (1, C, 1, 1) factor over (B, C, H, W).
        self._scale = (1 / (255 * std_t)).view(1, channels, 1).to(self.device)
        self._shift = (-mean_t / std_t).view(1, channels, 1).to(self.device)
        self.epoch = 0
        self._scratch: torch.Tensor | None = None  # padded copies for augmentation, reused per batch
        self._grid: torch.Tensor | None = None  # row offsets within a padded image, for the crop

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration follows."""
        self.epoch = epoch

    @property
    def samples_per_rank(self) -> int:
        return -(-len(self.images) // self.world_size)

    def __len__(self) -> int:
        n = self.samples_per_rank
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def order(self, epoch: int | None = None) -> torch.Tensor:
        """The dataset indices this rank visits in `epoch` (default: the current one), in order (CPU int64)."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.images)
        if self.shuffle:
            indices = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            indices = torch.arange(n)
        total = self.samples_per_rank * self.world_size
        if total > n:  # wrap around, as DistributedSampler does, so every rank gets as many
            indices = torch.cat([indices] * (-(-total // n)))[:total]
        return indices[self.rank:total:self.world_size]

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch` from index `start` on: what a trainer resuming mid-epoch asks for."""
        self.set_epoch(epoch)
        return self.iter_from(start)

    def iter_from(self, start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches `start_batch`, `start_batch + 1`, ... of the current epoch: resuming mid-epoch."""
        # The epoch is read now, not at the first next(): a later set_epoch must not change it.
        return self._iterate(self.epoch, start_batch)

    def _iterate(self, epoch: int, start_batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._to_device(self.order(epoch))
        for k in range(start_batch, len(self)):
            index = order[k * self.batch_size:(k + 1) * self.batch_size]
            x = self.images.index_select(0, index)  # (B, C, H, W) uint8
            if self.augment is not None:
                x = self._augment(x, epoch, k)
            b, c, h, w = x.shape
            x = x.float().view(b, c, h * w).mul_(self._scale).add_(self._shift).view(b, c, h, w)  # float32
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels.index_select(0, index)

    def _augment(self, x: torch.Tensor, epoch: int, batch: int) -> torch.Tensor:
        # Drawn on the CPU from a per-batch generator: the same numbers on any device.
        gen = torch.Generator().manual_seed(_batch_seed(self.seed, epoch, self.rank, batch))
        b, c, h, w = x.shape
        pad = self.augment.crop_padding
        flip = torch.randint(0, 2, (b,), generator=gen).bool() if self.augment.flip else None
        offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=gen)
        if self._scratch is None:  # zeroed once: its border stays zero for good
            self._scratch = x.new_zeros((2 * self.batch_size, c, h + 2 * pad, w + 2 * pad))
            self._grid = row_grid(c, h, pad, w, device=x.device)
        if flip is not None:
            flip = self._to_device(flip)
        return flip_and_crop(x, flip=flip, offsets=self._to_device(offsets), pad=pad, scratch=self._scratch, grid=self._grid)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A CPU tensor on the loader's device. To CUDA through pinned memory without blocking:
        a plain copy from pageable memory waits for the GPU to finish all its queued work, which
        would stall the training step that is still running there once per batch."""
        if self.device.type != "cuda":
            return t.to(self.device)
        return t.pin_memory().to(self.device, non_blocking=True)


def flip_and_crop(
    x: torch.Tensor,
    *,
    flip: torch.Tensor | None,
    offsets: torch.Tensor,
    pad: int,
    scratch: torch.Tensor | None = None,
    grid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per image: mirror where `flip`, zero-pad by `pad`, crop at (top, left) = `offsets[:, i]`.

    (B, C, H, W) in and out, any dtype. Every output row is a contiguous run of one padded (and
    maybe mirrored) input row, so the whole batch is cut with one `index_select` over an
    overlapping strided view of those rows, with no per-image Python.

    `scratch` is where the padded copies go: (2 * B', C, H + 2p, W + 2p) with B' >= B (the
    mirrored copies start at row B') and a zero border. A loader keeps one, so a batch costs no
    fresh allocation and no zero fill; its interior is overwritten every time. `grid` is
    `row_grid(C, H, pad, W)`, which a loader also keeps.
    """
    b, c, h, w = x.shape
    if scratch is None:
        scratch = x.new_zeros((2 * b, c, h + 2 * pad, w + 2 * pad))
    half = scratch.shape[0] // 2
    scratch[:b, :, pad:pad + h, pad:pad + w] = x
    pick = torch.arange(b, device=x.device)
    if flip is not None:
        scratch[half:half + b, :, pad:pad + h, pad:pad + w] = x.flip(3)
        pick = pick + half * flip.long()
    height, width = h + 2 * pad, w + 2 * pad
    flat = scratch.view(-1)
    windows = flat.as_strided((flat.numel() - w + 1, w), (1, 1))  # windows[i] = flat[i:i+w]
    # Start of output row (i, ch, r) in `flat`: where image i's crop begins, plus where row r
    # of channel ch lies in any padded image. Two small tensors and one broadcast add, because
    # every op over the whole (B, C, H) grid is a parallel region, and those cost most on a busy CPU.
    corner = (pick * (c * height) + offsets[0]) * width + offsets[1]  # (B,)
    if grid is None:
        grid = row_grid(c, h, pad, w, device=x.device)
    starts = corner.view(b, 1, 1) + grid  # (B, C, H)
    return windows.index_select(0, starts.view(-1)).view(b, c, h, w)


def row_grid(channels: int, h: int, pad: int, w: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """(C, H) int64: where row r of channel ch starts in a flattened (C, H + 2p, W + 2p) image."""
    height, width = h + 2 * pad, w + 2 * pad
    return (torch.arange(channels, device=device).view(channels, 1) * height + torch.arange(h, device=device).view(1, h)) * width


def _batch_seed(seed: int, epoch: int, rank: int, batch: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{epoch}:{rank}:{batch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        import torch.distributed as dist

        live = dist.is_available() and dist.is_initialized()
        rank = rank if rank is not None else (dist.get_rank() if live else 0)
        world_size = world_size if world_size is not None else (dist.get_world_size() if live else 1)
    if world_size < 1 or not 0 <= rank < world_size:
        raise RuntimeUsageError(f"rank {rank} is outside world size {world_size}")
    return rank, world_size
