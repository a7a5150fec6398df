"""Data acquisition: fetch, verify and unpack the files a run needs.

* ``http://``/``https://`` URLs are fetched with `requests`, streamed into ``<dest>.part``.
  A dropped connection is retried with exponential backoff and *resumed* with an HTTP
  ``Range`` request (a server that ignores Range restarts the file from byte 0).
* ``file://`` URLs (and plain paths) are local: a file is copied, a directory (already
  unpacked data) is linked.
* The finished file is checked against the configured sha256 or sha1 before it is renamed
  to ``dest``. On a mismatch the bad bytes are deleted and a `DownloadError` names the URL
  and both digests — nothing is ever left at ``dest`` for a later job to take.
* ``unpack`` extracts a tar (gz/bz2/xz) or zip archive into the directory ``dest``
  atomically, refusing members that would escape it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from .atomic import atomic_dir, atomic_path
from .errors import DownloadError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Network reads are small so that a dropped connection loses at most this much (the partial
# chunk inside urllib3 is discarded when the connection breaks).
NET_CHUNK = 1 << 16


def file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _expected(sha256: str | None, sha1: str | None) -> tuple[str, str] | None:
    if sha256:
        return "sha256", sha256.lower()
    if sha1:
        return "sha1", sha1.lower()
    return None


def verify(path: Path, sha256: str | None = None, sha1: str | None = None, url: str | None = None) -> None:
    exp = _expected(sha256, sha1)
    if exp is None:
        return
    algo, want = exp
    got = file_digest(path, algo)
    if got != want:
        raise DownloadError(
            f"checksum mismatch for {url or path}: expected {algo} {want}, got {got}; the corrupted "
            f"download was deleted — retry, and if it persists check the URL and the checksum in the config"
        )


def _local_path(url: str) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(url)
    return None


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, disable=not enabled, mininterval=1.0)


def _http_fetch(url: str, part: Path, retries: int, backoff: float, timeout: float, progress: bool) -> None:
    import requests

    attempt = 0
    total: int | None = None
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with requests.get(url, stream=True, timeout=timeout, headers=headers) as resp:
                if resp.status_code == 416 and offset:
                    # Range not satisfiable: the partial file already holds everything.
                    return
                if resp.status_code not in (200, 206):
                    if resp.status_code in (408, 429) or resp.status_code >= 500:
                        raise requests.HTTPError(f"HTTP {resp.status_code}", response=resp)
                    raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason}; check the URL and access rights")
                if resp.status_code == 200 and offset:
                    log.warning("%s: server ignored the Range request; restarting from byte 0", url)
                    offset = 0
                length = resp.headers.get("Content-Length")
                if length is not None:
                    total = offset + int(length)
                mode = "ab" if offset else "wb"
                with open(part, mode) as fh, _progress(total, offset, part.name, progress) as bar:
                    for chunk in resp.iter_content(NET_CHUNK):
                        fh.write(chunk)
                        bar.update(len(chunk))
            size = part.stat().st_size
            if total is not None and size < total:
                raise requests.ConnectionError(f"connection closed at byte {size} of {total}")
            return
        except DownloadError:
            raise
        except (requests.RequestException, OSError) as exc:
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    f"{url}: giving up after {retries} retries ({exc}); the partial file {part} is kept and the "
                    f"next run resumes it"
                ) from None
            wait = min(backoff * 2 ** (attempt - 1), 60.0)
            have = part.stat().st_size if part.exists() else 0
            log.warning("%s: %s; retry %d/%d in %.1fs (resuming at byte %d)", url, exc, attempt, retries, wait, have)
            time.sleep(wait)


def fetch(url: str, dest: str | Path, *, sha256: str | None = None, sha1: str | None = None,
          retries: int = 5, backoff: float = 1.0, timeout: float = 60.0, progress: bool = True) -> Path:
    """Fetch `url` to `dest` (verified, atomic). Returns `dest`."""
    dest = Path(dest)
    local = _local_path(url)
    if local is not None and local.is_dir():
        link_directory(local, dest)
        return dest
    if dest.is_file() and _expected(sha256, sha1):
        try:
            verify(dest, sha256, sha1, url)
            log.info("%s already present and verified", dest)
            return dest
        except DownloadError:
            log.warning("%s exists but does not match its checksum; fetching again", dest)
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if local is not None:
        if not local.exists():
            raise DownloadError(f"{url}: local file {local} not found")
        with atomic_path(part) as tmp:
            shutil.copyfile(local, tmp)
    else:
        if urlparse(url).scheme not in ("http", "https"):
            raise DownloadError(f"{url}: unsupported URL scheme (use http, https or file)")
        _http_fetch(url, part, retries, backoff, timeout, progress)
    try:
        verify(part, sha256, sha1, url)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    log.info("fetched %s -> %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest


def link_directory(src: Path, dest: Path) -> None:
    """Point `dest` at an already-unpacked directory (atomic symlink replace)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.link")
    tmp.unlink(missing_ok=True)
    os.symlink(src.resolve(), tmp, target_is_directory=True)
    if dest.is_dir() and not dest.is_symlink():
        raise DownloadError(f"{dest} is an existing directory; remove it or choose another dest for {src}")
    os.replace(tmp, dest)
    log.info("linked %s -> %s", dest, src)


def _safe_member(root: Path, name: str, archive: Path) -> None:
    target = (root / name).resolve()
    if root.resolve() not in target.parents and target != root.resolve():
        raise DownloadError(f"{archive}: member {name!r} would be written outside the target directory; refusing")


def unpack(archive: str | Path, dest: str | Path) -> Path:
    """Extract a tar/zip archive into directory `dest` (atomic; the old content is replaced)."""
    archive, dest = Path(archive), Path(dest)
    if archive.is_dir():
        link_directory(archive, dest)
        return dest
    with atomic_dir(dest) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _safe_member(tmp, name, archive)
                bad = zf.testzip()
                if bad is not None:
                    raise DownloadError(f"{archive}: member {bad} is corrupted (CRC error); fetch it again")
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            try:
                with tarfile.open(archive) as tf:
                    for m in tf.getmembers():
                        _safe_member(tmp, m.name, archive)
                    tf.extractall(tmp, filter="data")
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise DownloadError(f"{archive}: cannot unpack ({exc}); the archive is damaged — fetch it again") from None
        else:
            raise DownloadError(f"{archive}: not a tar or zip archive; set unpack: false or fix the URL")
        # A single top-level directory is flattened so that `dest` is the data root.
        entries = list(tmp.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            inner = entries[0]
            for child in list(inner.iterdir()):
                os.replace(child, tmp / child.name)
            inner.rmdir()
    log.info("unpacked %s -> %s", archive, dest)
    return dest


def add_arguments(p) -> None:
    p.add_argument("--url", required=True, help="http(s):// or file:// URL, or a local path")
    p.add_argument("--dest", required=True, help="where the verified file (or unpacked directory) goes")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sha256")
    g.add_argument("--sha1")
    p.add_argument("--unpack", action="store_true", help="extract the archive into directory --dest")
    p.add_argument("--retries", type=int, default=5)
    p.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds (doubles)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--no-progress", action="store_true")


def main(args) -> int:
    dest = Path(args.dest)
    local = _local_path(args.url)
    if args.unpack and not (local is not None and local.is_dir()):
        archive = dest.with_name(dest.name + ".archive")
        fetch(args.url, archive, sha256=args.sha256, sha1=args.sha1, retries=args.retries,
              backoff=args.backoff, timeout=args.timeout, progress=not args.no_progress)
        unpack(archive, dest)
    else:
        fetch(args.url, dest, sha256=args.sha256, sha1=args.sha1, retries=args.retries,
              backoff=args.backoff, timeout=args.timeout, progress=not args.no_progress)
    return 0
