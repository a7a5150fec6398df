"""`mcls summarize`: a raw video is turned into features exactly as the training store's, and the
summary equals what `mcls decode` produces for the same input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mcls.cli import main as cli_main
from mcls.democorpus import DemoSpec, generate
from mcls.summarize import normalize_transcript, summarize
from mcls.video.store import FeatureStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("summ")
    generate(tmp / "corpus", DemoSpec(seed=2, pretrain=2, train=4, val=1, test=1, min_frames=16, max_frames=20))
    assert cli_main(["ingest", "--format", "how2-mcls", "--root", str(tmp / "corpus"), "--src-lang", "pt",
                     "--media", "video", "--out", str(tmp / "data")]) == 0
    tables = [str(tmp / f"data/{s}.parquet") for s in ("pretrain", "train", "val", "test")]
    assert cli_main(["vocab", "--tables", tables[0], tables[1], "--columns", "transcript_en", "summary", "--lang", "en",
                     "--out", str(tmp / "vocab/en.tsv")]) == 0
    assert cli_main(["vocab", "--tables", tables[1], "--columns", "transcript_src", "--lang", "pt",
                     "--out", str(tmp / "vocab/pt.tsv")]) == 0
    for s in ("train", "val", "test"):
        assert cli_main(["encode", "--table", str(tmp / f"data/{s}.parquet"), "--en-vocab", str(tmp / "vocab/en.tsv"),
                         "--src-vocab", str(tmp / "vocab/pt.tsv"), "--src-lang", "pt", "--out", str(tmp / f"enc/{s}.parquet")]) == 0
    assert cli_main(["extract", "--table", *tables, "--out", str(tmp / "features"), "--random-init-ok",
                     "--threads", "1", "--no-progress"]) == 0
    spec = {"stage": "mcls", "model": "vdf",
            "sizes": {"d_model": 16, "ffn_dim": 32, "heads": 2, "enc_layers": 1, "dec_layers": 1, "dropout": 0.0},
            "data": {"train": str(tmp / "enc/train.parquet"), "valid": str(tmp / "enc/val.parquet"),
                     "features": str(tmp / "features/store.json"), "src_field": "src",
                     "src_vocab": str(tmp / "vocab/pt.tsv"), "tgt_vocab": str(tmp / "vocab/en.tsv")},
            "optim": {"lr": 3e-3, "warmup_steps": 2, "epochs": 8, "batch_size": 2},
            "seed": 3, "checkpoint_every": 100, "threads": 1}
    assert cli_main(["train", "--spec", json.dumps(spec), "--out", str(tmp / "model")]) == 0
    return tmp


def test_summary_from_video_matches_the_store_and_mcls_decode(trained, capsys):
    tmp = trained
    test = pq.read_table(tmp / "data/test.parquet").to_pydict()
    vid, video_path, transcript = test["video_id"][0], test["media_path"][0], test["transcript_src"][0]
    ckpt = tmp / "model/final.pt"
    # 1. the reference: mcls decode over the encoded test split with the store's features
    assert cli_main(["decode", "--checkpoint", str(ckpt), "--split", str(tmp / "enc/test.parquet"), "--vocab",
                     str(tmp / "vocab/en.tsv"), "--features", str(tmp / "features/store.json"), "--mode", "greedy",
                     "--max-len", "30", "--out", str(tmp / "hyp.jsonl")]) == 0
    expected = json.loads((tmp / "hyp.jsonl").read_text().splitlines()[0])["hypothesis"]
    assert expected.split()
    # 2. the raw video, features extracted on the fly as the store's metadata says
    (tmp / "t.txt").write_text(transcript)
    capsys.readouterr()
    assert cli_main(["summarize", "--checkpoint", str(ckpt), "--transcript", str(tmp / "t.txt"), "--video",
                     video_path, "--mode", "greedy", "--max-len", "30", "--pretokenized"]) == 0
    assert capsys.readouterr().out.strip() == expected
    # 3. precomputed features from the store, and the Python API
    np.save(tmp / "f.npy", FeatureStore(tmp / "features/store.json").get(vid))
    assert cli_main(["summarize", "--checkpoint", str(ckpt), "--transcript", str(tmp / "t.txt"), "--features",
                     str(tmp / "f.npy"), "--mode", "greedy", "--max-len", "30", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"summary": expected}


def test_on_the_fly_features_equal_the_store(trained):
    from mcls.summarize import video_features

    tmp = trained
    store = FeatureStore(tmp / "features/store.json")
    test = pq.read_table(tmp / "data/test.parquet").to_pydict()
    feats = video_features(test["media_path"][0], store.metadata)
    np.testing.assert_allclose(feats, store.get(test["video_id"][0]), rtol=1e-4, atol=1e-5)


def test_errors_name_what_is_missing(trained, tmp_path):
    from mcls.errors import McLSError

    ckpt = trained / "model/final.pt"
    with pytest.raises(McLSError, match="reads video: give --features NPY or --video FILE"):
        summarize(ckpt, "olá .")
    with pytest.raises(McLSError, match=r"the model expects \(k, 2048\)"):
        summarize(ckpt, "olá .", features=np.zeros((3, 7), np.float32))
    assert cli_main(["summarize", "--checkpoint", str(ckpt), "--transcript", str(tmp_path / "none.txt")]) == 2


def test_normalize_transcript():
    assert normalize_transcript("Hi, I'm John (from Rio).", "en") == "hi , i 'm john ( from rio ) ."
    assert normalize_transcript("Olá, eu sou o João!", "pt") == "olá , eu sou o joão !"
    assert normalize_transcript("大家好， 我是mike。", "zh") == "大家好， 我是mike。"
