"""Feature store: schema, bit-exact round trip, reading one video only, merging, npy import."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mcls.atomic import atomic_path
from mcls.errors import DataError
from mcls.video.inputs import VideoRef, from_npy_dir
from mcls.video.store import FeatureStore, ShardWriter, import_npy_shard, merge_shards, read_shard_footer

META = {"source": "extract", "backbone": "tiny", "weights": "random", "preprocessing": {"clip_len": 16},
        "code_version": "0.1.0+gabc"}


def special_values(k: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((k, d)) * 3).astype(np.float32)
    flat = a.reshape(-1)
    special = [-0.0, 0.0, np.float32(1e-45), np.finfo(np.float32).max, np.inf, -np.inf]
    n = min(len(flat), len(special))
    flat[:n] = special[:n]
    return a


def write_shard(path, videos: dict[str, np.ndarray], meta=META, failures=None):
    dim = next(iter(videos.values())).shape[1] if videos else 4
    with atomic_path(path, suffix=".parquet") as tmp:
        w = ShardWriter(tmp, dim, meta)
        for vid, a in videos.items():
            k = len(a)
            w.add(vid, a, range(0, 16 * k, 16), range(16, 16 * k + 16, 16), [i / 2 for i in range(k)],
                  [(i + 1) / 2 for i in range(k)])
        w.close(failures)
    return path


def test_schema_compression_and_bit_exact_round_trip(tmp_path):
    videos = {"b": special_values(5, 7, 0), "a": special_values(1, 7, 1), "c": special_values(12, 7, 2)}
    path = write_shard(tmp_path / "s.parquet", videos)
    schema = pq.read_schema(path)
    assert schema.field("video_id").type == pa.dictionary(pa.int32(), pa.string())
    assert schema.field("features").type == pa.list_(pa.field("element", pa.float32(), nullable=False), 7)
    assert [schema.field(c).type for c in ("clip_index", "start_frame", "end_frame")] == [pa.int32()] * 3
    assert schema.field("start_s").type == pa.float64()
    md = pq.ParquetFile(path).metadata
    assert md.num_row_groups == 3 and [md.row_group(i).num_rows for i in range(3)] == [5, 1, 12]
    leaf = md.row_group(0).column(6)
    assert leaf.path_in_schema == "features.list.element"
    assert leaf.compression == "ZSTD" and "BYTE_STREAM_SPLIT" in leaf.encodings
    meta, index, dim = read_shard_footer(path)
    assert dim == 7 and meta["weights"] == "random" and meta["format"] == "mcls-feature-store"
    assert index == {"b": [0, 5], "a": [1, 1], "c": [2, 12]}
    store = FeatureStore(path)
    assert store.dim == 7 and len(store) == 3 and "a" in store and "z" not in store
    assert store.video_ids() == ["a", "b", "c"]
    for vid, a in videos.items():
        got = store.get(vid)
        assert got.dtype == np.float32 and got.shape == a.shape
        assert got.tobytes() == a.tobytes()                     # bit-exact, -0.0 and subnormals included
        got[0, 0] = 42.0                                         # a private, writable copy
    assert store.get("c", max_rows=4).tobytes() == videos["c"][:4].tobytes()
    assert store.get("a", max_rows=1024).shape == (1, 7)
    t = store.table("b").to_pydict()
    assert t["clip_index"] == list(range(5)) and t["start_frame"][:2] == [0, 16] and t["end_s"][-1] == 2.5


def test_get_reads_only_that_videos_row_group(tmp_path, monkeypatch):
    path = write_shard(tmp_path / "s.parquet", {f"v{i}": special_values(3, 4, i) for i in range(20)})
    store = FeatureStore(path)
    calls = []
    real = pq.ParquetFile.read_row_group

    def spy(self, i, *args, **kwargs):
        calls.append(i)
        return real(self, i, *args, **kwargs)

    def forbidden(self, *args, **kwargs):
        raise AssertionError("the whole shard was read")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    monkeypatch.setattr(pq.ParquetFile, "read", forbidden)
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", forbidden)
    assert store.get("v13").tobytes() == special_values(3, 4, 13).tobytes()
    assert calls == [13]


def test_merge_into_store_json_relocatable_with_failures(tmp_path):
    s0 = write_shard(tmp_path / "feat/shards/shard-00000-of-00003.parquet", {"a": special_values(2, 4, 0)},
                     failures=[{"video_id": "bad", "reason": "unreadable", "message": "x"}])
    s1 = write_shard(tmp_path / "feat/shards/shard-00001-of-00003.parquet", {"b": special_values(3, 4, 1),
                                                                              "c": special_values(1, 4, 2)},
                     meta=dict(META, code_version="0.1.0+gdef"))
    s2 = write_shard(tmp_path / "feat/shards/shard-00002-of-00003.parquet", {}, meta=dict(META))   # empty shard
    doc, failures = merge_shards([s0, s1, s2], tmp_path / "feat/store.json")
    assert doc["num_videos"] == 3 and doc["num_rows"] == 6 and doc["dim"] == 4
    assert doc["videos"] == {"a": [0, 0, 2], "b": [1, 0, 3], "c": [1, 1, 1]}
    assert doc["failures"] == {"bad": "unreadable"} and failures[0]["message"] == "x"
    assert doc["shards"][0]["path"] == "shards/shard-00000-of-00003.parquet"
    assert doc["metadata"]["code_version"] == ["0.1.0+gabc", "0.1.0+gdef"]      # per-shard keys may differ
    shutil.move(tmp_path / "feat", tmp_path / "moved")                           # results/ can move
    for form in ("moved/store.json", "moved", "moved/shards"):
        store = FeatureStore(tmp_path / form)
        assert store.video_ids() == ["a", "b", "c"] and store.dim == 4
        assert store.get("b").tobytes() == special_values(3, 4, 1).tobytes()
        assert store.metadata["weights"] == "random"
    with pytest.raises(KeyError, match="'bad' is not in the feature store .*extraction failed: unreadable"):
        FeatureStore(tmp_path / "moved/store.json").get("bad")


def test_inconsistent_shards_are_refused(tmp_path):
    a = write_shard(tmp_path / "a.parquet", {"x": special_values(2, 4, 0)})
    dup = write_shard(tmp_path / "dup.parquet", {"x": special_values(2, 4, 0)})
    wide = write_shard(tmp_path / "wide.parquet", {"y": special_values(2, 5, 0)})
    other = write_shard(tmp_path / "other.parquet", {"z": special_values(2, 4, 0)}, meta=dict(META, weights="sha256:00"))
    with pytest.raises(DataError, match="video 'x' is in two feature shards"):
        merge_shards([a, dup], tmp_path / "s.json")
    with pytest.raises(DataError, match="dimension 5"):
        merge_shards([a, wide], tmp_path / "s.json")
    with pytest.raises(DataError, match=r"different settings \(weights\)"):
        merge_shards([a, other], tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()
    merge_shards([a], tmp_path / "s.json")
    write_shard(a, {"q": special_values(2, 4, 5)})              # the shard changed behind the index
    with pytest.raises(KeyError):
        FeatureStore(tmp_path / "s.json").get("q")
    with pytest.raises(DataError, match="stale"):
        FeatureStore(tmp_path / "s.json").get("x")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(DataError, match="cannot be read as parquet"):
        FeatureStore(tmp_path / "junk.parquet")
    with pytest.raises(DataError, match="not found"):
        FeatureStore(tmp_path / "nowhere")


def test_writer_refuses_bad_rows(tmp_path):
    w = ShardWriter(tmp_path / "s.parquet", 4, META)
    with pytest.raises(DataError, match="float32"):
        w.add("a", np.zeros((2, 4), np.float64), [0, 16], [16, 32])
    with pytest.raises(DataError, match="float32"):
        w.add("a", np.zeros((0, 4), np.float32), [], [])
    w.add("a", np.zeros((2, 4), np.float32), [0, 16], [16, 32])
    with pytest.raises(DataError, match="written twice"):
        w.add("a", np.zeros((2, 4), np.float32), [0, 16], [16, 32])
    w.abort()


def test_npy_import_reports_bad_files_and_imports_the_rest_bit_exactly(tmp_path):
    d = tmp_path / "npy"
    d.mkdir()
    good = {f"g{i}": np.random.default_rng(i).random((3 + i, 8), dtype=np.float32) for i in range(3)}
    for vid, a in good.items():
        np.save(d / f"{vid}.npy", a)
    np.save(d / "f64.npy", np.zeros((2, 8)))
    np.save(d / "nan.npy", np.full((2, 8), np.nan, np.float32))
    np.save(d / "narrow.npy", np.zeros((2, 5), np.float32))
    np.save(d / "flat.npy", np.zeros(8, np.float32))
    (d / "trunc.npy").write_bytes((d / "g0.npy").read_bytes()[:100])
    refs = from_npy_dir(d) + [VideoRef("gone", str(d / "gone.npy"))]
    report = import_npy_shard(sorted(refs, key=lambda r: r.video_id), tmp_path / "s.parquet", tmp_path / "f.tsv",
                              metadata={"source": "import"}, max_failure_fraction=1.0, progress=False)
    assert report["imported"] == 3 and report["failed"] == 6 and report["dim"] == 8
    assert report["failures"] == {"bad_features": 5, "missing_file": 1}
    store = FeatureStore(tmp_path / "s.parquet")
    assert store.video_ids() == sorted(good)
    for vid, a in good.items():
        assert store.get(vid).tobytes() == a.tobytes()
    assert store.table("g1").to_pydict()["start_frame"] == [0, 16, 32, 48]
    assert store.table("g1").to_pydict()["start_s"] == [None] * 4


def test_import_of_the_real_how2_sample_is_bit_exact(shared_dir, tmp_path, mcls_env):
    npy_dir = shared_dir / "how2-mcls-demo" / "video_action_features"
    if not npy_dir.is_dir():
        pytest.skip("no How2 sample features")
    proc = subprocess.run([sys.executable, "-m", "mcls.cli", "import-features", "--npy-dir", str(npy_dir),
                           "--out", str(tmp_path / "store"), "--no-progress"],
                          capture_output=True, text=True, env=mcls_env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    files = sorted(npy_dir.glob("*.npy"))
    assert report["imported"] == len(files) == 18 and report["failed"] == 0 and report["dim"] == 2048
    store = FeatureStore(tmp_path / "store")                      # the directory form (store.json inside)
    assert store.metadata["source"] == "import" and store.metadata["weights"] == "how2-release"
    total = 0
    for f in files:
        a = np.load(f)
        got = store.get(f.stem)
        assert got.dtype == a.dtype and got.shape == a.shape and got.tobytes() == a.tobytes(), f.stem
        assert store.get(f.stem, max_rows=100).tobytes() == a[:100].tobytes()
        total += a.nbytes
    size = (tmp_path / "store/shards/shard-00000-of-00001.parquet").stat().st_size
    assert size < 0.85 * total                                   # zstd + byte_stream_split: ~0.80 of raw
