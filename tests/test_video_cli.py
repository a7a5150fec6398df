"""`mcls extract`, `mcls import-features`, `mcls merge-features`: inputs, sharding, outputs, errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mcls.cli import main
from mcls.video import synth
from mcls.video.failures import read_manifest
from mcls.video.inputs import VideoRef, from_list, select_shard, shard_of
from mcls.video.store import FeatureStore


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("vids")
    synth.write_video(d / "red.mp4", synth.pattern_frames(33, 120, 160, (220, 40, 40), "striped"), 8)
    synth.write_video(d / "blue.mp4", synth.pattern_frames(16, 120, 160, (40, 70, 220), "plain"), 8)
    (d / "broken.mp4").write_text("not a video")
    (d / "notes.txt").write_text("ignored: not a video extension")
    return d


def test_extract_a_directory_into_a_ready_store(video_dir, tmp_path, capsys):
    out = tmp_path / "store"
    rc = main(["extract", "--videos", str(video_dir), "--out", str(out), "--random-init-ok", "--batch-size", "2",
               "--max-failure-fraction", "0.5", "--no-progress", "--report", str(tmp_path / "report.json")])
    assert rc == 0
    store = FeatureStore(out)                                   # store.json written for a single shard
    assert store.video_ids() == ["blue", "red"] and store.dim == 2048
    assert store.get("red").shape == (2, 2048) and store.get("blue").shape == (1, 2048)
    assert store.metadata["weights"] == "random" and store.metadata["backbone"] == "resnext101"
    assert store.metadata["preprocessing"]["mean"] == [114.7748, 107.7354, 99.475]
    assert store.metadata["weights_info"]["random_init"]["seed"] == 42
    assert store.failures == {"broken": "unreadable"}
    rows = read_manifest(out / "failures" / "shard-00000-of-00001.tsv")
    assert [r["video_id"] for r in rows] == ["broken"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["clips"] == 3 and report["failed"] == 1 and report["model_clips_per_s"] > 0
    err = capsys.readouterr().err
    assert "RANDOM WEIGHTS" in err


def test_extract_without_weights_or_over_the_failure_limit_exits_2(video_dir, tmp_path, capsys):
    assert main(["extract", "--videos", str(video_dir), "--out", str(tmp_path / "s")]) == 2
    assert "no weights for backbone resnext101" in capsys.readouterr().err
    lst = tmp_path / "list.txt"
    lst.write_text(f"# one bad video\nbad\t{video_dir / 'broken.mp4'}\n")
    rc = main(["extract", "--videos", str(lst), "--out", str(tmp_path / "s.parquet"), "--random-init-ok",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "1 of 1 videos failed" in err and "s.failures.tsv" in err
    assert not (tmp_path / "s.parquet").exists() and (tmp_path / "s.failures.tsv").exists()


def test_tables_sharding_and_merge(video_dir, tmp_path, capsys):
    ids = [f"vid{i:02d}" for i in range(12)]
    table = pa.table({"video_id": ids, "media_path": [str(tmp_path / "npy" / f"{v}.npy") for v in ids]})
    (tmp_path / "npy").mkdir()
    for i, v in enumerate(ids):
        np.save(tmp_path / "npy" / f"{v}.npy", np.full((i + 1, 4), i, np.float32))
    pq.write_table(table.slice(0, 7), tmp_path / "train.parquet")
    pq.write_table(table.slice(7), tmp_path / "val.parquet")
    shards = []
    for s in range(3):
        shard = tmp_path / f"shards/shard-{s:05d}-of-00003.parquet"
        assert main(["import-features", "--table", str(tmp_path / "train.parquet"), str(tmp_path / "val.parquet"),
                     "--shard", str(s), "--num-shards", "3", "--out", str(shard), "--no-progress"]) == 0
        shards.append(str(shard))
        assert set(FeatureStore(shard).video_ids()) == {v for v in ids if shard_of(v, 3) == s}
    assert main(["merge-features", "--shards", *shards, "--out", str(tmp_path / "store.json"),
                 "--failures-out", str(tmp_path / "failures.tsv")]) == 0
    store = FeatureStore(tmp_path / "store.json")
    assert store.video_ids() == ids
    assert all(store.get(v).tolist() == [[float(i)] * 4] * (i + 1) for i, v in enumerate(ids))
    assert read_manifest(tmp_path / "failures.tsv") == []
    capsys.readouterr()


def test_shard_assignment_is_a_stable_hash():
    refs = [VideoRef(f"v{i}", None) for i in range(200)]
    parts = [select_shard(refs, s, 4) for s in range(4)]
    assert sorted(r.video_id for p in parts for r in p) == sorted(r.video_id for r in refs)
    assert all(len(p) > 30 for p in parts)                                # roughly balanced
    digest = hashlib.sha1(b"00dWJ4YRRSI").digest()
    assert shard_of("00dWJ4YRRSI", 4) == int.from_bytes(digest[:8], "big") % 4     # documented rule
    grown = refs + [VideoRef("a-new-video", None)]                        # adding a video moves no other one
    for s in range(4):
        assert [r for r in select_shard(grown, s, 4) if r.video_id != "a-new-video"] == parts[s]


def test_list_files_and_duplicate_ids(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    lst = tmp_path / "l.txt"
    lst.write_text("a.mp4\nzz\t/abs/b.webm\n\n")
    assert from_list(lst) == [VideoRef("a", str(tmp_path / "a.mp4")), VideoRef("zz", "/abs/b.webm")]
    lst.write_text("x\t/one.mp4\nx\t/two.mp4\n")
    with pytest.raises(Exception, match="'x' appears twice"):
        from_list(lst)


def test_parser_lists_every_backbone_without_importing_torch():
    import subprocess
    import sys

    from mcls.video.backbones import BACKBONES
    from mcls.video.cli import BACKBONE_NAMES

    assert tuple(BACKBONES) == BACKBONE_NAMES
    code = ("import sys; from mcls.cli import build_parser; build_parser('extract'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
