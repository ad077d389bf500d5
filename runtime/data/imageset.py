"""`ImageSet`: one split of a dataset, decoded, as a uint8 tensor in memory.

Every source (Tiny ImageNet, an ImageFolder tree, the synthetic set, the cache) produces this
one type, and the batch loader consumes it. Keeping pixels as uint8 makes Tiny ImageNet's
100,000 training images 1.2 GB instead of 4.9 GB of float32, small enough to live on a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Images per chunk when reducing over the whole set: bounds the float64 temporary to ~100 MB.
_STATS_CHUNK = 4096


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, 3, H, W) uint8, RGB; 64x64 for Tiny ImageNet
    labels: torch.Tensor  # (N,) int64, an index into `classes`
    classes: list[str]  # class ids (WordNet ids for Tiny ImageNet); label i is classes[i]
    names: list[str]  # human-readable class names, same order as `classes`
    files: list[str] = field(default_factory=list)  # source file of each image, relative to the dataset root; empty for synthetic data
    grayscale: torch.Tensor | None = None  # (N,) bool: the source image had one channel
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) left out by --skip-corrupt
    stats: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)  # per-channel (mean, std); computed on first use, or stored by the cache

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3 or min(self.images.shape[2:]) < 1:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def channel_mean(self) -> torch.Tensor:
        """Per-channel mean of the pixels, in [0, 1] units, float32 (3,)."""
        return self._channel_stats()[0]

    def channel_std(self) -> torch.Tensor:
        """Per-channel standard deviation of the pixels, in [0, 1] units, float32 (3,)."""
        return self._channel_stats()[1]

    def _channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Computed once and kept (the cache stores it too): a pass over 1.2 GB is not free.
        if self.stats is None:
            self.stats = channel_stats(self.images)
        return self.stats


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per channel of a uint8 (N, 3, H, W) tensor, in [0, 1] units."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, images.shape[0], _STATS_CHUNK):
        chunk = images[start:start + _STATS_CHUNK].to(torch.float64)  # (n, 3, H, W)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = max(1, images.shape[0] * images.shape[2] * images.shape[3])
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0)
    return (mean / 255).float(), (var.sqrt() / 255).float()


def memory_shortfall(count: int, size: tuple[int, int]) -> str | None:
    """What is wrong when `count` uint8 RGB images of `size` (height, width) would take more
    than half this machine's memory, else None. Every split lives in memory (and on the GPU
    when training there), so such a set is refused before it is made."""
    import os

    need = count * 3 * size[0] * size[1]
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not knowable here: let the allocator decide
        return None
    if need <= have // 2:
        return None
    return f"{count:,} images at {size[1]}x{size[0]} take {need / 2**30:,.1f} GiB, more than half of this machine's {have / 2**30:,.1f} GiB"
