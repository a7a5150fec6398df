"""The features part of the DAG: demo videos → per-shard extraction → merged store."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conftest import REPO
from mcls.video.store import FeatureStore

pytestmark = pytest.mark.snakemake


def _snakefile(tmp_path):
    return REPO / "Snakefile"


def test_demo_videos_are_extracted_per_shard_and_merged(tmp_path, mcls_env):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["run"] = "tinyfeat"
    cfg["data"]["root"] = "results/tinyfeat/corpus"
    cfg["data"]["demo"].update(pretrain=4, train=2, val=1, test=1, min_frames=16, max_frames=33)
    cfg["features"].update(shards=2, batch_size=4, threads=1)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    store_json = "results/tinyfeat/features/store.json"
    args = [store_json, "--cores", "2", "--snakefile", str(_snakefile(tmp_path)), "--directory", str(tmp_path),
            "--configfile", str(tmp_path / "c.yaml")]
    proc = subprocess.run(["snakemake", *args], env=mcls_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    store = FeatureStore(tmp_path / store_json)
    ids = set()
    for split in ("pretrain", "train", "val", "test"):
        ids |= set((tmp_path / f"results/tinyfeat/corpus/{split}_action.txt").read_text().split())
    assert set(store.video_ids()) == ids and len(ids) == 8
    assert store.dim == 2048 and store.metadata["weights"] == "random"
    for vid in ids:
        f = store.get(vid)
        assert 1 <= f.shape[0] <= 2 and (f >= 0).all()
    assert (tmp_path / "results/tinyfeat/features/failures.tsv").read_text().count("\n") == 1   # header only
    shards = sorted((tmp_path / "results/tinyfeat/features/shards").glob("*.parquet"))
    assert [s.name for s in shards] == ["shard-00000-of-00002.parquet", "shard-00001-of-00002.parquet"]
    logs = sorted((tmp_path / "results/tinyfeat/logs/features_extract").glob("*.log"))
    assert len(logs) == 2 and "RANDOM WEIGHTS" in logs[0].read_text()
    # a setting of the extraction reruns the shards and the merge, nothing upstream
    cfg["features"]["clip_rule"] = "reference"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(["snakemake", *args, "-n", "--quiet", "rules"], env=mcls_env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    assert counts.get("features_extract") == "2" and counts.get("features_merge") == "1"
    assert "ingest" not in counts and "demo_corpus" not in counts
    assert "eligible for caching" in out
