"""`archc data download tiny-imagenet --to DIR`: fetch, verify and unpack the official archive.

- Resumes: bytes arrive in `DIR/tiny-imagenet-200.zip.part`; a second run asks the server for
  the rest with an HTTP Range request (or seeks, for a `file://` URL). A server that ignores
  Range sends the whole file again, and the part is restarted rather than corrupted.
- Verifies: the official archive must have its published size and MD5; any archive must match
  `--sha256` when given, and must pass `zipfile.testzip` (every member's CRC). A failed check
  deletes the download, since resuming it would only rebuild the same bad file.
- Unpacks atomically: into a temporary folder beside the target, renamed into place at the end,
  so `DIR/tiny-imagenet-200` is either complete or absent.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse
from urllib.request import url2pathname

from runtime.data.progress import progress_bar
from runtime.errors import DataError, RuntimeUsageError

OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
# Published with the archive and quoted by every loader that checks it (torchvision-style md5).
OFFICIAL_SIZE = 248_100_043
OFFICIAL_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
FOLDER = "tiny-imagenet-200"
_BLOCK = 1 << 20  # bytes per read: progress stays smooth, memory stays flat
_TIMEOUT_S = 60  # per socket operation; a stalled server should fail, not hang


def download_tiny_imagenet(to: str | Path, *, url: str = OFFICIAL_URL, sha256: str | None = None, progress: bool = True) -> Path:
    """Download, verify and unpack into `to/tiny-imagenet-200`; returns that path."""
    to = Path(to)
    target = to / FOLDER
    if (target / "wnids.txt").exists():
        return target
    if target.exists():
        raise DataError(f"{target}: exists but holds no wnids.txt; remove it and run again")
    created = [p for p in (to, *to.parents) if not p.exists()]  # the folders this call makes, innermost first
    to.mkdir(parents=True, exist_ok=True)
    part = to / f"{FOLDER}.zip.part"
    try:
        fetch(url, part, progress=progress)
    except BaseException:
        if part.exists() and part.stat().st_size == 0:  # nothing came: leave no trace (a partial download stays, to continue)
            part.unlink()
        for folder in created:
            try:
                folder.rmdir()  # only while empty
            except OSError:
                break
        raise
    _verify(part, url, sha256)
    _unpack(part, to, target)
    part.unlink()
    return target


def fetch(url: str, part: Path, *, progress: bool = True) -> None:
    """Bring `url` into `part`, continuing from the bytes already there."""
    scheme = urlparse(url).scheme
    if scheme not in ("http", "https", "file"):
        raise RuntimeUsageError(f"unsupported URL '{url}': use http://, https:// or file://")
    offset = part.stat().st_size if part.exists() else 0
    try:
        if scheme == "file":
            _fetch_file(Path(url2pathname(urlparse(url).path)), part, offset, progress)
        else:
            _fetch_http(url, part, offset, progress)
    except urllib.error.URLError as e:
        kept = f"; the {part.stat().st_size} bytes so far are kept in {part}, run again to resume" if part.exists() else ""
        raise DataError(f"{url}: download failed: {getattr(e, 'reason', e)}{kept}") from None
    except (OSError, http.client.HTTPException) as e:  # a reset or dropped connection mid-file
        kept = f"; the bytes so far are kept in {part}, run again to resume" if part.exists() else ""
        raise DataError(f"{url}: download failed: {e!r}{kept}") from None


def _fetch_file(source: Path, part: Path, offset: int, progress: bool) -> None:
    if not source.is_file():
        raise DataError(f"{source}: no such file")
    total = source.stat().st_size
    if offset > total:
        offset = 0  # the part is not a prefix of this file: start over
    with open(source, "rb") as src:
        src.seek(offset)
        _stream(src, part, offset, total, progress)


def _fetch_http(url: str, part: Path, offset: int, progress: bool) -> None:
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing after `offset`: the part is already complete
            return
        raise DataError(f"{url}: the server answered {e.code} {e.reason}") from None
    with response:
        if offset and response.status == 206:
            total = _range_total(response.headers.get("Content-Range"), offset, response.headers.get("Content-Length"))
        else:
            offset = 0  # the server sent the whole file
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        _stream(response, part, offset, total, progress)


def _range_total(content_range: str | None, offset: int, length: str | None) -> int | None:
    # "bytes 100-199/200": the total after the slash; "*" when the server does not know it.
    if content_range and "/" in content_range:
        tail = content_range.rsplit("/", 1)[1].strip()
        if tail.isdigit():
            return int(tail)
    return offset + int(length) if length and length.isdigit() else None


def _stream(src, part: Path, offset: int, total: int | None, progress: bool) -> None:
    with progress_bar("downloading", total, enabled=progress, unit="bytes") as advance, open(part, "ab" if offset else "wb") as out:
        advance(offset)
        while block := src.read(_BLOCK):
            out.write(block)
            advance(len(block))
    size = part.stat().st_size
    if total is not None and size < total:
        raise DataError(f"download stopped at {size} of {total} bytes; they are kept in {part}, run again to resume")


def _verify(part: Path, url: str, sha256: str | None) -> None:
    def reject(why: str) -> DataError:
        part.unlink(missing_ok=True)
        return DataError(f"{url}: {why}; the download was deleted, run again to fetch it afresh")

    size = part.stat().st_size
    if url == OFFICIAL_URL:
        if size != OFFICIAL_SIZE:
            raise reject(f"got {size} bytes, but the official archive has {OFFICIAL_SIZE}")
        if (md5 := _digest(part, "md5")) != OFFICIAL_MD5:
            raise reject(f"MD5 {md5} does not match the official {OFFICIAL_MD5}")
    if sha256 is not None and (got := _digest(part, "sha256")) != sha256.lower():
        raise reject(f"SHA-256 {got} does not match the expected {sha256.lower()}")
    try:
        with zipfile.ZipFile(part) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        raise reject(f"not a valid zip archive ({e})") from None
    if bad is not None:
        raise reject(f"the archive member {bad} fails its CRC check")


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _unpack(part: Path, to: Path, target: Path) -> None:
    def reject(why: str) -> DataError:
        part.unlink(missing_ok=True)  # a valid zip of something else: fetching again will not help
        return DataError(f"{part}: {why}; not a Tiny ImageNet archive, deleted")

    with zipfile.ZipFile(part) as archive:
        names = archive.namelist()
        for name in names:
            pure = PurePosixPath(name)
            # Refuse anything that would land outside the target ("zip slip") or beside it.
            if pure.is_absolute() or ".." in pure.parts or pure.parts[:1] != (FOLDER,):
                raise reject(f"member '{name}' lies outside {FOLDER}/")
        if f"{FOLDER}/wnids.txt" not in names:
            raise reject(f"the archive has no {FOLDER}/wnids.txt")
        staging = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.", dir=to))
        try:
            archive.extractall(staging)
            os.replace(staging / FOLDER, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
