"""Decoding image files into one uint8 (N, 3, H, W) tensor, in parallel over all cores.

`torchvision.io.decode_image` releases the GIL while libjpeg works, so a thread pool scales
with cores without pickling images between processes. Each worker writes straight into its
rows of the preallocated result.

Policies, chosen once and stated in every message:
- Grayscale sources (1 channel, or 2 with alpha) become 3 equal channels: the same bytes as
  PIL's `convert("RGB")`. CMYK and RGBA sources are converted to RGB by the decoder, and so
  are palette PNGs (whose one channel holds palette indices, not grey levels).
- A file that does not decode (corrupt, truncated, not an image) is an error naming it.
  With `skip_corrupt=True` it is left out and reported instead.
- An image that is not the requested size (64x64 unless the model takes another) is refused,
  naming it and its size, because silently resizing would change what a model sees and hide a
  wrong dataset. With `resize=True` it is scaled (bilinear, antialiased) until it just covers
  the requested size, and the centre is kept: for a square size, its shorter side goes to that
  size, as torchvision's `Resize(S)` + `CenterCrop(S)` does.
- A header that claims more than MAX_PIXELS (2^28) pixels is refused before decoding: the
  decoder would first try to allocate all of them (a 100000x100000 PNG is 30 GB).
- 16-bit PNGs are scaled to 8 bits (x * 255 / 65535, rounded), not truncated.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from runtime.data.progress import progress_bar
from runtime.errors import DataError

SIZE = 64
DEFAULT = (SIZE, SIZE)  # (height, width): Tiny ImageNet's size, and the paper's input
_CHUNK = 256  # files per task: large enough to amortise scheduling, small for a smooth bar
_MAX_LISTED = 10  # errors quoted in one message; the rest are counted
# File signatures of the formats we read: a wrong file (an HTML error page saved as .JPEG) gets
# a plain message instead of whatever the decoder makes of it.
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
# torchvision 0.29 deprecates its decoders in favour of torchcodec, once per call; they still
# work, and they are the fast path we measured. Silenced only while we decode.
_TV_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"
MAX_PIXELS = 1 << 28  # 16384 x 16384, beyond any camera's; the decoder allocates 3 bytes a pixel up front


@dataclass
class Decoded:
    images: torch.Tensor  # (N, 3, H, W) uint8, rows of files that decoded, in input order
    grayscale: torch.Tensor  # (N,) bool: source had one channel
    kept: list[int]  # input index of each row
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason), when skip_corrupt
    resized: int = 0  # how many images were not of the requested size and were resized


class _Refused(Exception):
    """An image that decoded but is not of the requested size, with resizing off: never skippable."""


def decode_files(
    root: Path,
    files: list[str],
    *,
    skip_corrupt: bool = False,
    resize: bool = False,
    size: tuple[int, int] = DEFAULT,
    progress: bool = True,
    label: str = "decoding",
) -> Decoded:
    """Decode `files` (relative to `root`) into one (N, 3, *size) tensor. Raises DataError naming bad files."""
    n = len(files)
    out = torch.empty((n, 3, *size), dtype=torch.uint8)
    gray = torch.zeros(n, dtype=torch.bool)
    failed: dict[int, str] = {}
    refused: dict[int, str] = {}

    def work(start: int) -> tuple[int, int]:
        """Decode one chunk; returns (files done, images resized)."""
        resized = 0
        for i in range(start, min(start + _CHUNK, n)):
            try:
                image, was_gray, was_resized = decode_one(root / files[i], resize, size)
            except _Refused as e:
                refused[i] = str(e)
            except DataError as e:
                failed[i] = str(e)
            else:
                out[i] = image
                gray[i] = was_gray
                resized += was_resized
        return min(_CHUNK, n - start), resized

    resized = 0
    workers = min(os.cpu_count() or 1, max(1, n // _CHUNK))
    with progress_bar(label, n, enabled=progress) as advance, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TV_DEPRECATION, category=DeprecationWarning)
        with ThreadPoolExecutor(workers) as pool:
            for done, chunk_resized in pool.map(work, range(0, n, _CHUNK)):
                advance(done)
                resized += chunk_resized

    problems = []  # every kind at once, so one run shows all that is wrong
    if refused:
        wanted = size_text(size)
        problems.append(summary(refused, root, files, f"not {wanted}", f"pass --resize (train, eval, data prepare) to resize them to {wanted}"))
    if failed and not skip_corrupt:
        problems.append(summary(failed, root, files, "cannot be decoded", "pass --skip-corrupt to leave them out"))
    if problems:
        raise DataError("\n".join(problems))
    kept = [i for i in range(n) if i not in failed]
    if failed:
        index = torch.tensor(kept, dtype=torch.int64)
        out, gray = out.index_select(0, index), gray.index_select(0, index)
    skipped = [(files[i], reason) for i, reason in sorted(failed.items())]
    return Decoded(out, gray, kept, skipped, resized)


def size_text(size: tuple[int, int]) -> str:
    """(height, width) as images are described: width x height, '224x224'."""
    return f"{size[1]}x{size[0]}"


def decode_one(path: Path, resize: bool = False, size: tuple[int, int] = DEFAULT) -> tuple[torch.Tensor, bool, bool]:
    """(image uint8 (3, *size), source was grayscale, was resized) for one file."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("missing file") from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}") from None
    kind = next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)
    if kind is None:
        raise DataError(f"not a JPEG or PNG file (it starts with {data[:12]!r})" if data else "empty file")
    claimed = _header_size(data, kind)
    if claimed is not None and claimed[0] * claimed[1] > MAX_PIXELS:
        raise DataError(f"its header says {claimed[0]}x{claimed[1]} pixels, more than the {MAX_PIXELS:,} archc decodes")
    short = _png_short(data) if kind == "PNG" else None
    if short:  # libpng's "Not enough image data" kills the process inside torchvision instead of raising
        raise DataError(f"corrupt or truncated PNG ({short})")
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        # A palette PNG (colour type 3) decodes UNCHANGED to its palette indices: its colours come with RGB.
        palette = kind == "PNG" and len(data) > 25 and data[12:16] == b"IHDR" and data[25] == 3
        image = decode_image(raw, mode=ImageReadMode.RGB if palette else ImageReadMode.UNCHANGED)  # (C, H, W)
        if image.dtype != torch.uint8:  # a 16-bit PNG: scale to 8 bits (not wrap, nor drop the high byte)
            image = ((image.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)
        if image.shape[0] in (1, 2):
            image, was_gray = image[:1].expand(3, -1, -1), True  # drop alpha; same as PIL's convert("RGB")
        elif image.shape[0] == 3:
            was_gray = False
        else:
            image, was_gray = decode_image(raw, mode=ImageReadMode.RGB), False
    except RuntimeError as e:
        raise DataError(f"corrupt or truncated {kind} ({_decoder_reason(e)})") from None
    was_resized = False
    if tuple(image.shape[1:]) != tuple(size):
        if not resize:
            raise _Refused(f"is {image.shape[2]}x{image.shape[1]}")
        image, was_resized = resize_center(image, size), True
    return image, was_gray, was_resized


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # x0, y0, dx, dy


def _png_short(data: bytes) -> str | None:
    """Why a PNG holds less image data than its header promises, or None. torchvision's decoder
    (0.29) segfaults on such a file, complete with its end chunk but short of rows; so the
    IDAT chunks are inflated here first, counting bytes without keeping them. Other damage is
    left to the decoder, which reports it."""
    import struct
    import zlib

    pos, header, chunks = 8, None, []
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or len(header) < 13 or not chunks:
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header[:13])
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        return None
    bits = _PNG_CHANNELS[colour] * depth

    def rows(w: int, h: int) -> int:  # each row: a filter byte, then its pixels' bytes
        return h * (1 + (w * bits + 7) // 8) if w and h else 0

    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    expected = sum(rows((width - x0 + dx - 1) // dx if width > x0 else 0, (height - y0 + dy - 1) // dy if height > y0 else 0)
                   for x0, y0, dx, dy in passes)
    inflate, got = zlib.decompressobj(), 0
    try:
        for chunk in chunks:
            pending = chunk
            while pending and got < expected:
                got += len(inflate.decompress(pending, 1 << 20))
                pending = inflate.unconsumed_tail
            if got >= expected:
                return None
    except zlib.error:
        return None  # the decoder says what is wrong with the stream
    return f"not enough image data: {got:,} of the {expected:,} bytes its {width}x{height} header needs"


def _header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame marker; None when the
    header is too damaged to say (the decoder then reports it)."""
    if kind == "PNG":
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return None
    i = 2
    while i + 9 <= len(data):  # JPEG: marker segments FF xx LEN ... until a start-of-frame
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def resize_center(image: torch.Tensor, size: tuple[int, int] = DEFAULT) -> torch.Tensor:
    """(C, h, w) scaled by one factor until it covers (H, W) = `size`, then its centre (C, H, W).

    For a square `size` this is exactly `Resize(S)` then `CenterCrop(S)`: the shorter side goes
    to S and the longer side to int(S * long / short), as torchvision rounds it.
    """
    from torchvision.transforms.v2.functional import center_crop, resize

    (height, width), (h, w) = size, image.shape[1:]
    if height == width:
        scaled = resize(image, [height], antialias=True)
    else:  # the side that needs the larger factor reaches its target; the other overshoots
        factor = max(height / h, width / w)
        scaled = resize(image, [max(height, int(h * factor)), max(width, int(w * factor))], antialias=True)
    return center_crop(scaled, [height, width])


def _decoder_reason(error: RuntimeError) -> str:
    # torchvision prefixes its messages with the C++ source location; users need the last part.
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.rsplit(", ", 1)[-1] if "cpp:" in text else text


def summary(errors: dict[int, str], root: Path, files: list[str], what: str, hint: str) -> str:
    listed = [f"  {root / files[i]}: {reason}" for i, reason in sorted(errors.items())[:_MAX_LISTED]]
    more = len(errors) - len(listed)
    tail = [f"  ... and {more} more"] if more else []
    count = "1 image" if len(errors) == 1 else f"{len(errors)} images"
    return "\n".join([f"{count} {what}; {hint}:", *listed, *tail])
