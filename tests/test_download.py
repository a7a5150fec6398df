"""Acquisition against a real HTTP server on 127.0.0.1: resume, retries, checksums, unpacking."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mcls.cli import main as cli_main
from mcls.download import fetch, unpack
from mcls.errors import DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every byte value
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
SHA1 = hashlib.sha1(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log = []          # (path, Range header) of every request
    counts = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, body: bytes, start: int = 0, status: int = 200, cut: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        data = body[start:] if cut is None else body[start:cut]
        self.wfile.write(data)
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(2)

    def do_GET(self):
        rng = self.headers.get("Range")
        Handler.log.append((self.path, rng))
        n = Handler.counts[self.path] = Handler.counts.get(self.path, 0) + 1
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if self.path.startswith("/ok"):
            self._send(PAYLOAD, start, 206 if rng else 200)
        elif self.path.startswith("/drop"):
            # first response dies after 300 kB; later (ranged) requests complete
            self._send(PAYLOAD, start, 206 if rng else 200, cut=300_000 if n == 1 else None)
        elif self.path.startswith("/norange"):
            # drops once, then ignores Range and sends the whole file with 200
            self._send(PAYLOAD, 0, 200, cut=200_000 if n == 1 else None)
        elif self.path.startswith("/corrupt"):
            bad = bytearray(PAYLOAD)
            bad[123_456] ^= 0xFF
            self._send(bytes(bad), start, 206 if rng else 200)
        elif self.path.startswith("/flaky"):
            if n <= 2:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send(PAYLOAD, start, 206 if rng else 200)
        elif self.path.startswith("/alwaysdrop"):
            self._send(PAYLOAD, start, 206 if rng else 200, cut=start + 1000)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture
def server():
    Handler.log = []
    Handler.counts = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_plain_fetch_verifies_sha256(server, tmp_path):
    dest = fetch(f"{server}/ok/a.bin", tmp_path / "a.bin", sha256=SHA256, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()


def test_resume_after_dropped_connection(server, tmp_path):
    dest = fetch(f"{server}/drop/a.bin", tmp_path / "a.bin", sha1=SHA1, backoff=0.01, progress=False)
    assert dest.read_bytes() == PAYLOAD
    ranges = [r for p, r in Handler.log if p == "/drop/a.bin"]
    assert ranges[0] is None
    # the retry asked only for the missing tail
    assert ranges[1] is not None and int(ranges[1].split("=")[1].split("-")[0]) >= 300_000 - 65536
    assert len(ranges) == 2


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = fetch(f"{server}/norange/a.bin", tmp_path / "a.bin", sha256=SHA256, backoff=0.01, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_retries_on_503_with_backoff(server, tmp_path):
    dest = fetch(f"{server}/flaky/a.bin", tmp_path / "a.bin", sha256=SHA256, backoff=0.01, progress=False)
    assert dest.read_bytes() == PAYLOAD and Handler.counts["/flaky/a.bin"] == 3


def test_corrupted_bytes_fail_checksum_and_leave_nothing(server, tmp_path):
    with pytest.raises(DownloadError) as e:
        fetch(f"{server}/corrupt/a.bin", tmp_path / "a.bin", sha256=SHA256, progress=False)
    msg = str(e.value)
    assert "checksum mismatch" in msg and SHA256 in msg and "/corrupt/a.bin" in msg
    assert list(tmp_path.iterdir()) == []  # neither dest nor .part remains


def test_giving_up_keeps_partial_for_next_resume(server, tmp_path):
    with pytest.raises(DownloadError, match="giving up after 2 retries"):
        fetch(f"{server}/alwaysdrop/a.bin", tmp_path / "a.bin", sha256=SHA256, retries=2, backoff=0.01, progress=False)
    assert not (tmp_path / "a.bin").exists()
    part = tmp_path / "a.bin.part"
    assert part.exists() and part.read_bytes() == PAYLOAD[: part.stat().st_size]


def test_http_404_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{server}/missing.bin", tmp_path / "m.bin", progress=False)


def test_existing_verified_file_is_not_fetched_again(server, tmp_path):
    (tmp_path / "a.bin").write_bytes(PAYLOAD)
    fetch(f"{server}/ok/a.bin", tmp_path / "a.bin", sha256=SHA256, progress=False)
    assert Handler.log == []


def test_file_url_and_cli(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    rc = cli_main(["download", "--url", f"file://{src}", "--dest", str(tmp_path / "out.bin"), "--sha256", SHA256, "--no-progress"])
    assert rc == 0 and (tmp_path / "out.bin").read_bytes() == PAYLOAD
    rc = cli_main(["download", "--url", f"file://{src}", "--dest", str(tmp_path / "bad.bin"), "--sha1", "0" * 40, "--no-progress"])
    assert rc == 2 and not (tmp_path / "bad.bin").exists()


def _tar_gz(path: Path, members: dict[str, bytes], top: str = "how2") -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_unpack_tar_flattens_single_top_dir(tmp_path):
    arc = tmp_path / "d.tar.gz"
    _tar_gz(arc, {"train_action.txt": b"abc", "video_action_features/abc.npy": b"x"})
    out = unpack(arc, tmp_path / "root")
    assert (out / "train_action.txt").read_bytes() == b"abc"
    assert (out / "video_action_features" / "abc.npy").exists()


def test_unpack_zip_and_reject_traversal(tmp_path):
    arc = tmp_path / "d.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("a.txt", "hello")
    assert (unpack(arc, tmp_path / "z") / "a.txt").read_text() == "hello"
    evil = tmp_path / "evil.tar.gz"
    _tar_gz(evil, {"../../escape.txt": b"x"}, top="")
    with pytest.raises(DownloadError, match="outside the target directory"):
        unpack(evil, tmp_path / "e")
    assert not (tmp_path / "e").exists() and not (tmp_path.parent / "escape.txt").exists()


def test_damaged_archive_leaves_no_directory(tmp_path):
    arc = tmp_path / "d.tar.gz"
    _tar_gz(arc, {"a.txt": random.Random(0).randbytes(200_000)})
    arc.write_bytes(arc.read_bytes()[:2000])
    with pytest.raises(DownloadError):
        unpack(arc, tmp_path / "root")
    assert not (tmp_path / "root").exists()


def test_unpacked_directory_is_linked(tmp_path):
    data = tmp_path / "already"
    data.mkdir()
    (data / "train_action.txt").write_text("x")
    rc = cli_main(["download", "--url", f"file://{data}", "--dest", str(tmp_path / "root"), "--unpack", "--no-progress"])
    assert rc == 0 and (tmp_path / "root" / "train_action.txt").read_text() == "x"
    assert (tmp_path / "root").is_symlink()


def test_download_then_unpack_via_cli(server, tmp_path):
    arc = tmp_path / "srv.tar.gz"
    _tar_gz(arc, {"f.txt": b"content"})
    sha = hashlib.sha256(arc.read_bytes()).hexdigest()
    rc = cli_main(["download", "--url", f"file://{arc}", "--dest", str(tmp_path / "data"), "--unpack", "--sha256", sha, "--no-progress"])
    assert rc == 0 and (tmp_path / "data" / "f.txt").read_bytes() == b"content"
