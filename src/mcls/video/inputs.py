"""Which videos a job handles: from a directory, a list file or the split tables; and sharding.

Sharding is by a stable hash of the video id: ``shard_of(id, N) = int(sha1(id)[:8 bytes]) mod N``.
A video's shard never depends on which other videos exist, so adding videos to a corpus
changes only the shards they land in (and the between-workflow cache keeps the others).
Within a shard, videos are processed in sorted id order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".ogv", ".3gp", ".ts")


@dataclass(frozen=True)
class VideoRef:
    video_id: str
    path: str | None          # None: the table row has no media (a failure, reported as missing_file)


def shard_of(video_id: str, num_shards: int) -> int:
    digest = hashlib.sha1(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def select_shard(refs: list[VideoRef], shard: int, num_shards: int) -> list[VideoRef]:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise DataError(f"shard {shard} of {num_shards}: need 0 <= shard < num_shards")
    return sorted((r for r in refs if shard_of(r.video_id, num_shards) == shard), key=lambda r: r.video_id)


def _dedupe(refs: list[VideoRef], origin: str) -> list[VideoRef]:
    seen: dict[str, VideoRef] = {}
    for r in refs:
        old = seen.get(r.video_id)
        if old is not None and old.path != r.path:
            raise DataError(f"{origin}: video {r.video_id!r} appears twice with different files "
                            f"({old.path} and {r.path}); video ids must be unique")
        seen[r.video_id] = r
    return sorted(seen.values(), key=lambda r: r.video_id)


def from_directory(directory: str | os.PathLike, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[VideoRef]:
    """Files in ``directory`` (not recursive) with one of ``extensions``; the id is the file stem."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"video directory {d} does not exist")
    refs = [VideoRef(p.stem, str(p.resolve())) for p in sorted(d.iterdir())
            if p.suffix.lower() in extensions and not p.name.startswith(".")]
    if not refs:
        raise DataError(f"video directory {d} holds no files ending in {', '.join(extensions)}")
    return _dedupe(refs, str(d))


def from_list(list_file: str | os.PathLike) -> list[VideoRef]:
    """A text file with one video per line: ``PATH`` (id = file stem) or ``ID<TAB>PATH``.

    Relative paths are relative to the list file; blank lines and ``#`` comments are skipped.
    """
    f = Path(list_file)
    if not f.is_file():
        raise DataError(f"video list {f} does not exist")
    refs = []
    for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        vid, _, path = line.partition("\t") if "\t" in line else ("", "", line)
        p = Path(path.strip())
        if not p.is_absolute():
            p = f.parent / p
        refs.append(VideoRef(vid.strip() or p.stem, str(p)))
    if not refs:
        raise DataError(f"video list {f} is empty")
    return _dedupe(refs, str(f))


def from_videos_arg(arg: str | os.PathLike) -> list[VideoRef]:
    """``--videos DIR|LIST``."""
    return from_directory(arg) if Path(arg).is_dir() else from_list(arg)


def from_npy_dir(directory: str | os.PathLike) -> list[VideoRef]:
    return from_directory(directory, extensions=(".npy",))


def from_tables(tables: list[str | os.PathLike]) -> list[VideoRef]:
    """``video_id`` + ``media_path`` of the split tables (``data/<split>.parquet``)."""
    import pyarrow.parquet as pq

    refs = []
    for t in tables:
        t = Path(t)
        if not t.is_file():
            raise DataError(f"split table {t} does not exist (run the ingest step first)")
        names = pq.read_schema(t).names
        missing = [c for c in ("video_id", "media_path") if c not in names]
        if missing:
            raise DataError(f"split table {t} lacks column(s) {', '.join(missing)} (has {', '.join(names)})")
        table = pq.read_table(t, columns=["video_id", "media_path"])
        for vid, path in zip(table.column("video_id").to_pylist(), table.column("media_path").to_pylist()):
            if vid is None:
                raise DataError(f"split table {t} has a row without video_id")
            refs.append(VideoRef(str(vid), path))
    return _dedupe(refs, ", ".join(map(str, tables)))
