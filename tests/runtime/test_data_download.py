"""`archc data download`: resume, verification and atomic unpacking, against a small archive
served from 127.0.0.1 or a file:// URL (the machines here have no internet)."""
from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from runtime.data.cli import main as data_cli
from runtime.data.download import FOLDER, download_tiny_imagenet
from runtime.errors import DataError
from tests.runtime.data_helpers import make_tiny_imagenet


@pytest.fixture
def archive(tmp_path) -> bytes:
    """A zip of a small Tiny ImageNet tree, laid out as the official archive is."""
    src = make_tiny_imagenet(tmp_path / "src" / FOLDER, per_class=6, val_per_class=3)
    path = tmp_path / "tiny.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(src.rglob("*")):
            z.write(f, f.relative_to(src.parent).as_posix())
    return path.read_bytes()


class Server:
    """An HTTP server on 127.0.0.1 that serves one payload and records the Range headers it gets."""

    def __init__(self, payload: bytes, *, ranges: bool = True, cut_at: int | None = None):
        self.payload, self.ranges, self.cut_at, self.seen = payload, ranges, cut_at, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                header = self.headers.get("Range")
                outer.seen.append(header)
                start = int(header.split("=")[1].split("-")[0]) if header and outer.ranges else 0
                if start >= len(outer.payload) and header:
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                self.send_header("Content-Length", str(len(outer.payload) - start))
                self.end_headers()
                body = outer.payload[start:]
                if outer.cut_at is not None:  # the connection drops once, mid-file
                    body, outer.cut_at = body[: outer.cut_at], None
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tiny-imagenet-200.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(payload: bytes, **kw) -> Server:
        servers.append(Server(payload, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def assert_unpacked(to: Path) -> None:
    target = to / FOLDER
    assert (target / "wnids.txt").read_text() == "n01\nn02\n"
    assert len(list((target / "train").rglob("*.JPEG"))) == 12
    assert not (to / f"{FOLDER}.zip.part").exists()
    assert [p.name for p in to.iterdir()] == [FOLDER]  # no staging folder left behind


def test_download_over_http_verifies_and_unpacks(serve, archive, tmp_path):
    server = serve(archive)
    sha = hashlib.sha256(archive).hexdigest()
    assert download_tiny_imagenet(tmp_path / "data", url=server.url, sha256=sha, progress=False) == tmp_path / "data" / FOLDER
    assert_unpacked(tmp_path / "data")
    assert server.seen == [None]


def test_partial_download_resumes_with_a_range_request(serve, archive, tmp_path):
    server = serve(archive)
    to = tmp_path / "data"
    to.mkdir()
    (to / f"{FOLDER}.zip.part").write_bytes(archive[:1000])
    download_tiny_imagenet(to, url=server.url, progress=False)
    assert server.seen == ["bytes=1000-"]
    assert_unpacked(to)


def test_dropped_connection_keeps_the_bytes_and_the_next_run_resumes(serve, archive, tmp_path):
    server = serve(archive, cut_at=len(archive) // 3)
    to = tmp_path / "data"
    with pytest.raises(DataError, match="run again to resume"):
        download_tiny_imagenet(to, url=server.url, progress=False)
    assert (to / f"{FOLDER}.zip.part").stat().st_size == len(archive) // 3
    download_tiny_imagenet(to, url=server.url, progress=False)
    assert server.seen == [None, f"bytes={len(archive) // 3}-"]
    assert_unpacked(to)


def test_a_download_that_gets_nothing_leaves_no_folder_behind(tmp_path):
    """No network (here: a URL nothing answers): the folders it made for the download go again."""
    to = tmp_path / "new" / "data"
    with pytest.raises(DataError):
        download_tiny_imagenet(to, url="http://127.0.0.1:9/tiny-imagenet-200.zip", progress=False)
    assert not (tmp_path / "new").exists()


def test_server_that_ignores_range_gets_a_clean_restart(serve, archive, tmp_path):
    server = serve(archive, ranges=False)
    to = tmp_path / "data"
    to.mkdir()
    (to / f"{FOLDER}.zip.part").write_bytes(archive[:1000])
    download_tiny_imagenet(to, url=server.url, progress=False)
    assert_unpacked(to)


def test_file_url_resumes_from_the_bytes_already_there(archive, tmp_path):
    source = tmp_path / "mirror" / "tiny-imagenet-200.zip"
    source.parent.mkdir()
    source.write_bytes(archive)
    to = tmp_path / "data"
    to.mkdir()
    (to / f"{FOLDER}.zip.part").write_bytes(archive[:5000])
    download_tiny_imagenet(to, url=source.as_uri(), progress=False)
    assert_unpacked(to)


def test_checksum_mismatch_is_an_error_and_deletes_the_download(serve, archive, tmp_path):
    server = serve(archive)
    to = tmp_path / "data"
    with pytest.raises(DataError, match="SHA-256 .* does not match the expected 00+; the download was deleted"):
        download_tiny_imagenet(to, url=server.url, sha256="0" * 64, progress=False)
    assert list(to.iterdir()) == []


def test_corrupted_archive_fails_the_zip_check(serve, archive, tmp_path):
    damaged = bytearray(archive)
    damaged[len(damaged) // 2] ^= 0xFF  # inside some member's compressed data
    server = serve(bytes(damaged))
    with pytest.raises(DataError, match="fails its CRC check|not a valid zip"):
        download_tiny_imagenet(tmp_path / "data", url=server.url, progress=False)
    assert not (tmp_path / "data" / FOLDER).exists()


def test_archive_with_members_outside_the_dataset_folder_is_refused(serve, tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{FOLDER}/wnids.txt", "n01\n")
        z.writestr(f"{FOLDER}/../../escaped.txt", "gotcha")
    server = serve(path.read_bytes())
    with pytest.raises(DataError, match="lies outside tiny-imagenet-200/"):
        download_tiny_imagenet(tmp_path / "data", url=server.url, progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "data" / FOLDER).exists()


def test_existing_dataset_is_not_fetched_again(serve, archive, tmp_path):
    server = serve(archive)
    download_tiny_imagenet(tmp_path / "data", url=server.url, progress=False)
    download_tiny_imagenet(tmp_path / "data", url=server.url, progress=False)
    assert server.seen == [None]


def test_cli_download_then_info(archive, tmp_path, capsys):
    source = tmp_path / "tiny.zip"
    source.write_bytes(archive)
    to = tmp_path / "data"
    assert data_cli(["download", "tiny-imagenet", "--to", str(to), "--url", source.as_uri(), "--no-progress"]) == 0
    assert f"{to / FOLDER}: ready" in capsys.readouterr().out
    assert data_cli(["info", str(to / FOLDER), "--format", "json"]) == 0
    assert capsys.readouterr().out.strip() == '{"format": "tiny-imagenet", "classes": 2, "splits": {"train": 12, "val": 6}, "grayscale": 3}'


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="download failed"):
        download_tiny_imagenet(tmp_path / "data", url="http://127.0.0.1:9/tiny.zip", progress=False)
