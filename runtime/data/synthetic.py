"""The built-in synthetic dataset: procedural RGB images, 64x64 by default, no download, no files.

Each class is a shape (disk, square, triangle, ring, cross) in a warm or a cool colour, so
ten classes. Everything else varies at random and carries no label: position, size, rotation,
solid or striped fill, the exact hue, the background colour, a smooth background texture, a
small distractor blob and pixel noise. Colour alone gives at most 20% accuracy and shape alone
50%; a convnet must find the shape against a random background and learn both, which takes
it more than a few steps, yet one epoch of the paper's small models beats chance clearly.

At another size (a model whose input is 32x32 or 224x224) the images are drawn at that
resolution, not scaled: lengths are measured in units of 1/64 of the shorter side, so a shape
covers as much of a 224x224 image as of a 64x64 one, in finer detail, and a wide image has more
room around its shape. The pixel noise stays per pixel. The 64x64 set is byte-for-byte what it
was before sizes existed; other sizes draw other scenes from the same seed.

The images are a pure function of the config: the same seed gives the same bytes in any process
on the same platform (all randomness comes from one seeded `torch.Generator`, and every op is
elementwise, so thread count does not matter). Transcendental functions can differ in the last
bit between CPU instruction sets, which can move a rare pixel by one level on another machine.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from runtime.data.imageset import ImageSet

SHAPES = ("disk", "square", "triangle", "ring", "cross")
PALETTES = ("warm", "cool")
CLASSES = [f"{palette}_{shape}" for palette in PALETTES for shape in SHAPES]
SIZE = 64
# Images generated per step: bounds the float32 temporaries to a few tens of MB.
_CHUNK = 512


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = 0  # every byte of the set follows from this
    train: int = 2000  # no_attention trains at ~20 images/s on a 2-core CPU: one epoch in ~100 s, ~25% val accuracy (chance 10%)
    val: int = 1000  # enough for accuracy to +-1.5%, cheap to evaluate every epoch
    noise: float = 12.0  # std of per-pixel Gaussian noise, in 0..255 levels: hides exact edges

    def __post_init__(self) -> None:
        if self.train < 1 or self.val < 1:
            raise ValueError("synthetic train and val sizes must be positive")
        if self.noise < 0:
            raise ValueError("synthetic noise must be >= 0")


def generate(config: SyntheticConfig = SyntheticConfig(), size: tuple[int, int] = (SIZE, SIZE)) -> tuple[ImageSet, ImageSet]:
    """The (train, val) splits of (3, *size) images; `size` is (height, width). Val comes from
    its own stream, so it never overlaps train."""
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"synthetic images need a positive size, got {height}x{width}")
    with _one_thread():
        train = _split(config, config.train, stream=0, size=(height, width))
        val = _split(config, config.val, stream=1, size=(height, width))
    return train, val


@contextmanager
def _one_thread() -> Iterator[None]:
    # Hundreds of small elementwise ops: on a busy 2-core machine, torch's second thread spins
    # waiting for a core and generation ran 5x slower (6.5 s) than on one thread (1.3 s).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _split(config: SyntheticConfig, n: int, stream: int, size: tuple[int, int]) -> ImageSet:
    gen = torch.Generator().manual_seed(config.seed * 2 + stream)
    # Balanced classes in a shuffled order, so any prefix of the set is roughly balanced too.
    labels = torch.arange(n) % len(CLASSES)
    labels = labels[torch.randperm(n, generator=gen)]
    images = torch.empty((n, 3, *size), dtype=torch.uint8)
    # Images per chunk, scaled so the float32 temporaries stay as small at any size.
    chunk = max(1, _CHUNK * SIZE * SIZE // (size[0] * size[1]))
    for start in range(0, n, chunk):
        part = labels[start:start + chunk]
        # One shape at a time, so each image pays for the distance field of its own shape only.
        for shape in range(len(SHAPES)):
            where = (part % len(SHAPES) == shape).nonzero().squeeze(1) + start
            if len(where):
                images[where] = _draw(shape, labels[where], gen, config.noise, size)
    names = [c.replace("_", " ") for c in CLASSES]
    return ImageSet(images, labels.to(torch.int64), list(CLASSES), names)


def _draw(shape: int, labels: torch.Tensor, gen: torch.Generator, noise: float, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (B, 3, H, W) images of one shape; `labels` pick the palette. Lengths below are in
    units of 1/64 of the shorter side (pixels at 64x64); the frame is `frame_h` x `frame_w` units."""
    b = labels.shape[0]

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand((b, *shape), generator=gen) * (hi - lo) + lo

    height, width = size
    unit = min(height, width) / SIZE  # pixels per unit
    frame_h, frame_w = height / unit, width / unit
    yy = ((torch.arange(height, dtype=torch.float32) + 0.5) / unit).view(1, height, 1)  # broadcast to (B, H, W)
    xx = ((torch.arange(width, dtype=torch.float32) + 0.5) / unit).view(1, 1, width)

    # The shape: where it sits, how big, how it is turned.
    radius = uniform(9, 17).view(b, 1, 1)
    cx = uniform(0, 1).view(b, 1, 1) * (frame_w - 2 * radius) + radius  # fully inside the frame
    cy = uniform(0, 1).view(b, 1, 1) * (frame_h - 2 * radius) + radius
    angle = uniform(0, 2 * math.pi).view(b, 1, 1)
    cos, sin = angle.cos(), angle.sin()
    u = (xx - cx) * cos + (yy - cy) * sin  # (B, H, W), shape-local axes
    v = (yy - cy) * cos - (xx - cx) * sin
    inside = _SIGNED_DISTANCE[SHAPES[shape]](u, v, radius)  # (B, H, W), negative inside
    mask = torch.sigmoid(inside.mul_(-1.5)).unsqueeze(1)  # (B, 1, H, W), antialiased edge

    # Texture carries no label: half the shapes are striped, across their own axis.
    striped = torch.rand((b, 1, 1, 1), generator=gen) < 0.5
    pitch = uniform(3.0, 5.0).view(b, 1, 1)
    stripes = (torch.sin(u.mul_(math.pi / pitch)) > 0).unsqueeze(1) & striped  # (B, 1, H, W)

    # Colour carries half the label: warm shapes for classes 0-4, cool ones for 5-9. The
    # background takes any colour, so the net must find the shape before reading its hue.
    warm = (labels < len(SHAPES)).view(b, 1)
    hue = torch.where(warm, uniform(-0.08, 0.14, 1), uniform(0.42, 0.68, 1))
    fg = _hsv_to_rgb(hue, uniform(0.55, 1, 1), uniform(0.45, 1, 1)).view(b, 3, 1, 1)
    bg = uniform(0, 1, 3).view(b, 3, 1, 1)
    bright = fg.mean(1, keepdim=True) > 0.5  # the background goes the other way, for contrast
    bg = torch.where(bright, bg * 0.45, 0.55 + bg * 0.45)
    fill = torch.where(stripes, fg * 0.35 + bg * 0.65, fg)  # (B, 3, H, W)

    # A smooth background texture: low-resolution noise, upsampled (bilinear keeps it in [0, 1]).
    texture = (torch.rand((b, 3, 8, 8), generator=gen) - 0.5) * uniform(0.1, 0.4).view(b, 1, 1, 1)
    background = F.interpolate((bg + texture).clamp_(0, 1), size=(height, width), mode="bilinear", align_corners=False)

    # A small distractor blob of a random colour, which says nothing about the class.
    bx, by = uniform(4, frame_w - 4).view(b, 1, 1), uniform(4, frame_h - 4).view(b, 1, 1)
    blob_r = uniform(2, 5).view(b, 1, 1)
    blob = torch.sigmoid(((xx - bx) ** 2 + (yy - by) ** 2).sqrt_().sub_(blob_r).mul_(-1.5)).unsqueeze(1)
    background.lerp_(uniform(0, 1, 3).view(b, 3, 1, 1).expand_as(background), blob)

    image = background.lerp_(fill, mask).mul_(255)  # (B, 3, H, W), in [0, 255]
    # Uniform noise with the configured std: as good as Gaussian here, and cheaper to draw.
    # The + 0.5 makes the truncating cast below round to nearest.
    image += torch.rand(image.shape, generator=gen).sub_(0.5).mul_(noise * math.sqrt(12)).add_(0.5)
    return image.clamp_(0, 255).to(torch.uint8)


def _disk(u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return (u * u + v * v).sqrt_() - r


def _square(u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) - r * 0.8


def _triangle(u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    # Equilateral: the largest projection on its three edge normals.
    return torch.maximum(torch.maximum(v, 0.866 * u - 0.5 * v), -0.866 * u - 0.5 * v) - r * 0.5


def _ring(u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return ((u * u + v * v).sqrt_() - r * 0.75).abs_() - r * 0.25


def _cross(u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    au, av, arm = u.abs(), v.abs(), r * 0.3
    return torch.minimum(torch.maximum(au - r, av - arm), torch.maximum(au - arm, av - r))


# Approximate signed distance in pixels, negative inside, per shape; all (B, H, W).
_SIGNED_DISTANCE = {"disk": _disk, "square": _square, "triangle": _triangle, "ring": _ring, "cross": _cross}


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, 1) hue (wrapping at 1), saturation and value in [0, 1] to (B, 3) RGB."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + (h % 1.0) * 6) % 6  # (B, 3)
    return v - v * s * (torch.minimum(k, 4 - k).clamp(0, 1))
