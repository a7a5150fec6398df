"""The feature store: sharded parquet files of per-clip feature rows, plus a merged JSON index.

Shard file (``features/shards/shard-XXXXX-of-YYYYY.parquet``), one row per clip and **one row
group per video**:

| column        | type                           |                                            |
|---------------|--------------------------------|--------------------------------------------|
| `video_id`    | dictionary<int32, string>      |                                            |
| `clip_index`  | int32                          | 0, 1, … within the video                   |
| `start_frame` | int32                          | first decoded frame of the clip (0-based)  |
| `end_frame`   | int32                          | one past its last frame                    |
| `start_s`     | float64, null                  | clip start in seconds (null for imports)   |
| `end_s`       | float64, null                  | clip end in seconds                        |
| `features`    | fixed_size_list<float32>[D]    | the clip's feature vector                  |

Compression: zstd level 1 with BYTE_STREAM_SPLIT encoding of the feature floats (0.80 of the
raw size on real How2 features, against 0.88 for zstd alone; see bench/RESULTS-features.md).
File key-value metadata: ``mcls.metadata`` (JSON: format, backbone, weights = sha256 of the
checkpoint or ``random``, preprocessing, clip rule, code version, source, shard) and
``mcls.index`` (JSON: video id → [row group, rows]).

Merged index (``features/store.json``): format/version, dim, the common metadata, the shard
files (paths relative to the JSON file), every video's [shard, row group, rows], and the
failed videos with their reasons. :class:`FeatureStore` reads either form and returns one
video's ``(k, D)`` float32 array by reading only that video's row group.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import write_json
from ..errors import DataError

FORMAT = "mcls-feature-store"
VERSION = 1
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1
FEATURES_LEAF = "features.list.element"     # parquet column path of the feature floats
# metadata keys that may differ between the shards of one store (they do not change the features,
# or only in the last bits): the merged metadata lists their distinct values
PER_SHARD_KEYS = ("shard", "code_version", "batch_size", "device", "ffmpeg")


def shard_name(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


def shard_schema(dim: int, metadata: dict | None = None) -> pa.Schema:
    fields = [
        pa.field("video_id", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("clip_index", pa.int32(), nullable=False),
        pa.field("start_frame", pa.int32(), nullable=False),
        pa.field("end_frame", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("features", pa.list_(pa.field("element", pa.float32(), nullable=False), dim), nullable=False),
    ]
    meta = {b"mcls.metadata": json.dumps(metadata, sort_keys=True).encode()} if metadata is not None else None
    return pa.schema(fields, metadata=meta)


class ShardWriter:
    """Writes one shard: ``add()`` one video at a time (one row group each), then ``close()``.

    Write to a temporary path (``mcls.atomic.atomic_path``) and rename after ``close()``: a
    shard file that exists is complete.
    """

    def __init__(self, path: str | os.PathLike, dim: int, metadata: dict, *, compression: str = COMPRESSION,
                 compression_level: int | None = COMPRESSION_LEVEL, byte_stream_split: bool = True):
        self.path = Path(path)
        self.dim = dim
        self.metadata = dict(metadata, format=FORMAT, version=VERSION, dim=dim)
        self.schema = shard_schema(dim, self.metadata)
        self.index: dict[str, list[int]] = {}
        self.rows = 0
        self._writer = pq.ParquetWriter(
            self.path, self.schema, compression=compression,
            compression_level=compression_level if compression not in (None, "none") else None,
            use_dictionary=["video_id"], use_byte_stream_split=[FEATURES_LEAF] if byte_stream_split else False,
            write_statistics=["video_id", "clip_index", "start_frame", "end_frame"],
        )

    def add(self, video_id: str, features: np.ndarray, start_frame: Iterable[int], end_frame: Iterable[int],
            start_s: Iterable[float] | None = None, end_s: Iterable[float] | None = None) -> None:
        if video_id in self.index:
            raise DataError(f"video {video_id!r} written twice to {self.path}")
        feats = np.ascontiguousarray(features)
        if feats.dtype != np.float32 or feats.ndim != 2 or feats.shape[1] != self.dim or feats.shape[0] == 0:
            raise DataError(f"video {video_id!r}: features must be float32 (k>=1, {self.dim}), got "
                            f"{feats.dtype} {feats.shape}")
        k = feats.shape[0]
        sf = np.asarray(list(start_frame), dtype=np.int32)
        ef = np.asarray(list(end_frame), dtype=np.int32)
        ss = pa.array(np.asarray(list(start_s), dtype=np.float64)) if start_s is not None else pa.nulls(k, pa.float64())
        es = pa.array(np.asarray(list(end_s), dtype=np.float64)) if end_s is not None else pa.nulls(k, pa.float64())
        if not (len(sf) == len(ef) == len(ss) == len(es) == k):
            raise DataError(f"video {video_id!r}: {k} feature rows but {len(sf)}/{len(ef)}/{len(ss)}/{len(es)} clip times")
        table = pa.Table.from_arrays([
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(k, dtype=np.int32)), pa.array([video_id], pa.string())),
            pa.array(np.arange(k, dtype=np.int32)),
            pa.array(sf), pa.array(ef), ss, es,
            pa.FixedSizeListArray.from_arrays(pa.array(feats.reshape(-1)), self.dim),
        ], schema=self.schema)
        self._writer.write_table(table, row_group_size=k)
        self.index[video_id] = [len(self.index), k]
        self.rows += k

    def close(self, failures: list[dict] | None = None) -> None:
        """Finish the file: the index and this shard's failure records go into the footer."""
        self._writer.add_key_value_metadata({
            "mcls.index": json.dumps(self.index, sort_keys=True),
            "mcls.failures": json.dumps(failures or [], sort_keys=True),
        })
        self._writer.close()

    def abort(self) -> None:
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - the file is discarded anyway
            pass


def read_shard_failures(path: str | os.PathLike) -> list[dict]:
    """The failure records stored in a shard's footer (the videos of that shard without features)."""
    kv = pq.read_metadata(path).metadata or {}
    return json.loads(kv.get(b"mcls.failures", b"[]"))


def read_shard_footer(path: str | os.PathLike) -> tuple[dict, dict[str, list[int]], int]:
    """(metadata, index, dim) of a shard file, from its footer only."""
    path = Path(path)
    try:
        md = pq.read_metadata(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"feature shard {path} cannot be read as parquet ({exc}); delete it and rerun the extraction") from exc
    kv = md.metadata or {}
    if b"mcls.metadata" not in kv or b"mcls.index" not in kv:
        raise DataError(f"{path}: not a feature-store shard (no mcls.metadata/mcls.index in its footer)")
    meta = json.loads(kv[b"mcls.metadata"])
    index = json.loads(kv[b"mcls.index"])
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if md.num_row_groups != len(index):
        raise DataError(f"{path}: {md.num_row_groups} row groups but {len(index)} videos in its index")
    return meta, index, int(meta["dim"])


def common_metadata(metas: list[tuple[str, dict]]) -> dict:
    """The metadata shared by all shards; raises DataError naming two shards that disagree."""
    if not metas:
        return {}
    first_name, first = metas[0]
    base = {k: v for k, v in first.items() if k not in PER_SHARD_KEYS}
    for name, meta in metas[1:]:
        other = {k: v for k, v in meta.items() if k not in PER_SHARD_KEYS}
        if other != base:
            diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
            raise DataError(f"feature shards {first_name} and {name} were made with different settings "
                            f"({', '.join(diff)}); rerun the extraction of the stale shards")
    for key in PER_SHARD_KEYS:
        if key == "shard":
            continue
        values = sorted({json.dumps(m[key], sort_keys=True) for _, m in metas if key in m})
        if values:
            base[key] = json.loads(values[0]) if len(values) == 1 else [json.loads(v) for v in values]
    return base


@dataclass
class ShardScan:
    """What the footers of a list of shard files say, checked for consistency."""

    dim: int
    metadata: dict
    videos: dict[str, tuple[int, int, int]]     # video id → (shard, row group, rows)
    failures: list[dict]
    entries: list[dict]                         # per shard: path, videos, rows, bytes


def scan_shards(shards: list[str | os.PathLike]) -> ShardScan:
    """Read every shard footer; dimension and settings must agree across the non-empty shards.

    A shard with no video (possible with hash sharding) carries no weight in that check.
    """
    footers = []
    for s in shards:
        meta, index, d = read_shard_footer(s)
        footers.append((str(s), meta, index, d))
    deciding = [f for f in footers if f[2]] or footers[:1]
    dim = deciding[0][3] if deciding else 0
    for name, _meta, _index, d in deciding:
        if d != dim:
            raise DataError(f"feature shard {name} has dimension {d}, {deciding[0][0]} has {dim}")
    metadata = common_metadata([(name, meta) for name, meta, _, _ in deciding])
    videos: dict[str, tuple[int, int, int]] = {}
    failures, entries = [], []
    for i, (name, _meta, index, _d) in enumerate(footers):
        for vid, (rg, rows) in index.items():
            if vid in videos:
                raise DataError(f"video {vid!r} is in two feature shards: {footers[videos[vid][0]][0]} and {name}")
            videos[vid] = (i, rg, rows)
        failures += read_shard_failures(name)
        entries.append({"path": name, "videos": len(index), "rows": sum(r for _, r in index.values()),
                        "bytes": os.path.getsize(name)})
    return ShardScan(dim, metadata, videos, failures, entries)


def merge_shards(shards: list[str | os.PathLike], out: str | os.PathLike) -> tuple[dict, list[dict]]:
    """Write the merged index ``out`` (store.json) over ``shards``; returns it and all failure records.

    Shard paths in the index are relative to ``out``'s directory, so results/ can move.
    """
    out = Path(out)
    scan = scan_shards(shards)
    for e in scan.entries:
        e["path"] = os.path.relpath(Path(e["path"]).resolve(), out.parent.resolve())
    doc = {"format": FORMAT, "version": VERSION, "dim": scan.dim, "metadata": scan.metadata,
           "shards": scan.entries, "videos": {k: list(v) for k, v in scan.videos.items()},
           "failures": {f["video_id"]: f["reason"] for f in sorted(scan.failures, key=lambda f: f["video_id"])},
           "num_videos": len(scan.videos), "num_rows": sum(e["rows"] for e in scan.entries)}
    write_json(out, doc)
    return doc, scan.failures


class FeatureStore:
    """Read features by video id.

    ``path``: the merged ``store.json``; a directory holding ``store.json``; a directory of
    shard files (``*.parquet`` in it or in its ``shards/``); or one shard file.

        store = FeatureStore("results/demo/features/store.json")
        store.dim; "abc" in store; store.video_ids(); store.metadata
        store.get("abc", max_rows=1024)   # float32 (k, D), reads only that video's row group
    """

    def __init__(self, path: str | os.PathLike):
        p = Path(path)
        self.path = p
        self.failures: dict[str, str] = {}
        if p.is_dir() and (p / "store.json").is_file():
            p = p / "store.json"
        if p.is_file() and p.suffix == ".json":
            self._load_json(p)
        elif p.is_file() and p.suffix == ".parquet":
            self._load_shards([p])
        elif p.is_dir():
            shards = sorted(p.glob("*.parquet")) or sorted((p / "shards").glob("*.parquet"))
            if not shards:
                raise DataError(f"feature store {p}: no store.json and no *.parquet shards in it (run `mcls extract` "
                                "or `mcls import-features` first)")
            self._load_shards(shards)
        else:
            raise DataError(f"feature store {p} not found (expected store.json, a shard directory or a .parquet shard)")
        self._files: dict[int, pq.ParquetFile] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _load_json(self, p: Path) -> None:
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"feature store index {p} cannot be read ({exc}); rerun `mcls merge-features`") from exc
        if doc.get("format") != FORMAT:
            raise DataError(f"{p}: not a feature store index (format {doc.get('format')!r})")
        self.dim = int(doc["dim"]) if doc["dim"] is not None else 0
        self.metadata = doc["metadata"]
        self.shard_paths = [(p.parent / e["path"]).resolve() for e in doc["shards"]]
        self._index = {vid: tuple(v) for vid, v in doc["videos"].items()}
        self.failures = doc.get("failures", {})

    def _load_shards(self, shards: list[Path]) -> None:
        scan = scan_shards(shards)
        self.dim, self.metadata, self._index = scan.dim, scan.metadata, scan.videos
        self.failures = {f["video_id"]: f["reason"] for f in scan.failures}
        self.shard_paths = [Path(s).resolve() for s in shards]

    # -- queries ------------------------------------------------------------------------------
    def __contains__(self, video_id: object) -> bool:
        return video_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def video_ids(self) -> list[str]:
        return sorted(self._index)

    def num_rows(self, video_id: str) -> int:
        return self._entry(video_id)[2]

    def _entry(self, video_id: str) -> tuple[int, int, int]:
        try:
            return self._index[video_id]
        except KeyError:
            reason = self.failures.get(video_id)
            why = f" (its extraction failed: {reason}; see the failure manifest)" if reason else ""
            raise KeyError(f"video {video_id!r} is not in the feature store {self.path}{why}") from None

    def _file(self, shard: int) -> pq.ParquetFile:
        with self._lock:
            if os.getpid() != self._pid:           # forked DataLoader worker: reopen the files
                self._files, self._pid = {}, os.getpid()
            f = self._files.get(shard)
            if f is None:
                path = self.shard_paths[shard]
                if not path.exists():
                    raise DataError(f"feature shard {path} is missing (the store index {self.path} refers to it)")
                f = self._files[shard] = pq.ParquetFile(path, memory_map=True)
            return f

    def table(self, video_id: str) -> pa.Table:
        """All columns of one video's rows (clip times included)."""
        shard, rg, _rows = self._entry(video_id)
        return self._file(shard).read_row_group(rg)

    def get(self, video_id: str, max_rows: int | None = None) -> np.ndarray:
        """float32 (k, D) features of one video, the first ``max_rows`` rows when given."""
        shard, rg, rows = self._entry(video_id)
        t = self._file(shard).read_row_group(rg, columns=["video_id", "features"])
        ids = t.column("video_id").chunk(0)
        if len(ids) != rows or ids.dictionary[ids.indices[0].as_py()].as_py() != video_id:
            raise DataError(f"feature shard {self.shard_paths[shard]}: row group {rg} does not hold video "
                            f"{video_id!r}; the store index is stale — rerun `mcls merge-features`")
        col = t.column("features")
        arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        feats = arr.flatten().to_numpy(zero_copy_only=False).reshape(rows, self.dim)
        if max_rows is not None:
            feats = feats[:max_rows]
        return np.array(feats, dtype=np.float32, copy=True)


# --------------------------------------------------------------------------------------------
# Import of precomputed How2 features (video_action_features/<id>.npy), bit-exact


def _load_npy(path: str, dim: int | None):
    """A validated float32 (k, D) array from an .npy file (memory-mapped); raises VideoFailure."""
    from .failures import VideoFailure

    if not path:
        raise VideoFailure("missing_file", "the table row has no media_path")
    if not os.path.exists(path):
        raise VideoFailure("missing_file", f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise VideoFailure("empty_file", f"{path}: file is empty (0 bytes)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise VideoFailure("bad_features", f"{path}: not a readable .npy array ({exc})") from None
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[0] == 0 or (dim is not None and arr.shape[1] != dim):
        want = f"(k>=1, {dim})" if dim else "(k>=1, D)"
        raise VideoFailure("bad_features", f"{path}: {arr.dtype} array of shape {arr.shape}, expected float32 {want}; "
                           "features are imported bit-exactly, so no conversion is done")
    if not np.isfinite(arr).all():
        raise VideoFailure("bad_features", f"{path}: contains NaN or infinite values")
    return arr


def import_npy_shard(refs, out: str | os.PathLike, failures_path: str | os.PathLike, *, metadata: dict,
                     max_failure_fraction: float = 0.02, dim: int | None = None, clip_len: int = 16,
                     progress: bool = True) -> dict:
    """Copy the .npy features of ``refs`` into one shard file, bit-exactly; returns a report.

    Rows get ``start_frame = clip_len·i``, ``end_frame = clip_len·(i+1)`` (How2's 16-frame
    clips) and null times (the frame rate of the source videos is unknown).
    """
    import time

    from ..atomic import atomic_path
    from .failures import FailureManifest, FailureRecord, VideoFailure, enforce_max_failures
    from .progress import progress_bar

    out, failures_path = Path(out), Path(failures_path)
    manifest = FailureManifest()
    t0, nbytes, writer = time.perf_counter(), 0, None
    with atomic_path(out, suffix=".parquet") as tmp:
        try:
            bar = progress_bar(refs, "import", "videos", enabled=progress)
            for ref in bar:
                try:
                    arr = _load_npy(ref.path, dim)
                except VideoFailure as f:
                    manifest.add(FailureRecord.from_failure(ref.video_id, ref.path, f))
                    continue
                if writer is None:
                    dim = arr.shape[1]
                    writer = ShardWriter(tmp, dim, dict(metadata, clip_len=clip_len))
                k = arr.shape[0]
                starts = np.arange(k, dtype=np.int64) * clip_len
                writer.add(ref.video_id, np.asarray(arr), starts, starts + clip_len)
                nbytes += arr.nbytes
            if writer is None:                           # no readable file: an empty, valid shard
                writer = ShardWriter(tmp, dim or 0, dict(metadata, clip_len=clip_len))
            writer.close([r.to_dict() for r in manifest.rows])
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        manifest.write(failures_path)
        enforce_max_failures(manifest, len(refs), max_failure_fraction, failures_path, "feature files")
    seconds = time.perf_counter() - t0
    return {"videos": len(refs), "imported": len(refs) - len(manifest), "failed": len(manifest),
            "rows": writer.rows, "dim": dim, "bytes_in": nbytes, "seconds": seconds,
            "mb_per_s": nbytes / 1e6 / seconds if seconds > 0 else float("nan"), "failures": manifest.counts()}
