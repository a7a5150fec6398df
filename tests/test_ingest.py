"""Ingest of the How2-MCLS release layout and the How2 300h layout, with every broken-input class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mcls.cli import main as cli_main
from mcls.errors import DataError
from mcls.ingest import ingest_how2_300h, ingest_how2_mcls, overlap_check

from conftest import small_corpus, write_mcls_layout


def read(out: Path, split: str) -> dict:
    return pq.read_table(out / f"{split}.parquet").to_pydict()


def assert_nothing_written(out: Path) -> None:
    if out.exists():
        leftovers = [p.name for p in out.iterdir()]
        assert leftovers == [], f"partial output left behind: {leftovers}"


# ---- the real sample ---------------------------------------------------------------------

def test_real_how2_mcls_sample(shared_dir, tmp_path):
    root = shared_dir / "how2-mcls-demo"
    manifest = ingest_how2_mcls(root, "pt", "npy", tmp_path / "data")
    assert manifest["rows"] == {"pretrain": 10, "train": 4, "val": 2, "test": 2}
    train = read(tmp_path / "data", "train")
    assert train["video_id"][0] == "DOx-0ZSIZkA"
    assert train["transcript_en"][0].split()[:6] == ["hi", "everybody", "i", "'m", "john", "graden"]
    assert train["transcript_src"][0].split()[:6] == ["oi", "pessoal", "eu", "sou", "john", "graden"]
    assert train["summary"][0].split()[:4] == ["when", "choosing", "a", "martial"]
    pre = read(tmp_path / "data", "pretrain")
    assert pre["video_id"][0] == "gGGl58p370w" and all(s is None for s in pre["transcript_src"])
    test = read(tmp_path / "data", "test")
    assert test["video_id"][0] == "G33aqW3DLpc"
    for split in ("pretrain", "train", "val", "test"):
        for vid, p in zip(*(read(tmp_path / "data", split)[k] for k in ("video_id", "media_path"))):
            assert p.endswith(f"video_action_features/{vid}.npy") and Path(p).exists()
            assert np.load(p, mmap_mode="r").shape[1] == 2048
    md = pq.read_schema(tmp_path / "data" / "train.parquet").metadata
    assert md[b"mcls.src_lang"] == b"pt" and md[b"mcls.split"] == b"train"


# ---- the small fixture and each broken-input class ---------------------------------------

def test_small_layout_roundtrip(tmp_path):
    root = write_mcls_layout(tmp_path / "root", small_corpus())
    m = ingest_how2_mcls(root, "pt", "npy", tmp_path / "out")
    assert m["rows"] == {"pretrain": 2, "train": 2, "val": 1, "test": 1}
    assert read(tmp_path / "out", "train")["transcript_src"] == ["olá .", "o pincel pequeno ."]


def test_missing_features_dir_with_media_none(tmp_path):
    root = write_mcls_layout(tmp_path / "root", small_corpus(), npy=False)
    m = ingest_how2_mcls(root, "pt", "none", tmp_path / "out")
    assert read(tmp_path / "out", "val")["media_path"] == [None]
    assert m["media"] == "none"


def _broken(tmp_path, mutate):
    root = write_mcls_layout(tmp_path / "root", small_corpus())
    mutate(root)
    out = tmp_path / "out"
    with pytest.raises(DataError) as e:
        ingest_how2_mcls(root, "pt", "npy", out)
    assert_nothing_written(out)
    return str(e.value)


def test_mismatched_line_counts(tmp_path):
    def mutate(root):
        (root / "train_art_pt.txt").write_text("olá .")
    msg = _broken(tmp_path, mutate)
    assert "split train" in msg and "train_art_pt.txt: 1" in msg and "train_action.txt: 2" in msg


def test_empty_line(tmp_path):
    def mutate(root):
        (root / "val_sum.txt").write_text("   ")
    msg = _broken(tmp_path, mutate)
    assert "val_sum.txt:1: empty line where a summary is expected" in msg


def test_non_utf8_bytes(tmp_path):
    def mutate(root):
        (root / "test_art_pt.txt").write_bytes("lave o cachorro .".encode() + b" \xe9t\xe9")
    msg = _broken(tmp_path, mutate)
    assert "test_art_pt.txt:1: bytes that are not UTF-8" in msg and "iconv" in msg


def test_duplicate_id_within_split(tmp_path):
    def mutate(root):
        (root / "train_action.txt").write_text("trn00000001\ntrn00000001")
    msg = _broken(tmp_path, mutate)
    assert "video trn00000001 appears twice: train_action.txt line 1 and train_action.txt line 2" in msg


def test_duplicate_id_across_splits(tmp_path):
    def mutate(root):
        (root / "test_action.txt").write_text("pre00000002")
        np.save(root / "video_action_features" / "pre00000002.npy", np.ones((2, 8), np.float32))
    msg = _broken(tmp_path, mutate)
    assert "pretrain_action.txt line 2 and test_action.txt line 1" in msg


def test_missing_npy(tmp_path):
    def mutate(root):
        (root / "video_action_features" / "val00000001.npy").unlink()
    msg = _broken(tmp_path, mutate)
    assert "video val00000001: feature file" in msg and "is missing" in msg


def test_unreadable_npy(tmp_path):
    def mutate(root):
        (root / "video_action_features" / "trn00000002.npy").write_bytes(b"not a numpy file at all")
    msg = _broken(tmp_path, mutate)
    assert "video trn00000002" in msg and "not a readable .npy" in msg


def test_truncated_npy(tmp_path):
    def mutate(root):
        p = root / "video_action_features" / "tst00000001.npy"
        p.write_bytes(p.read_bytes()[:-10])
    msg = _broken(tmp_path, mutate)
    assert "video tst00000001" in msg and "truncated" in msg


def test_wrong_shape_npy(tmp_path):
    def mutate(root):
        np.save(root / "video_action_features" / "tst00000001.npy", np.ones(5, np.float32))
    assert "expected float (k, D)" in _broken(tmp_path, mutate)


def test_missing_source_file(tmp_path):
    def mutate(root):
        (root / "val_art_pt.txt").unlink()
    assert "split val: missing file(s)" in _broken(tmp_path, mutate)


def test_bad_video_id(tmp_path):
    def mutate(root):
        (root / "val_action.txt").write_text("this is not an id")
    assert "val_action.txt:1: 'this is not an id' is not a video id" in _broken(tmp_path, mutate)


def test_missing_raw_video(tmp_path):
    root = write_mcls_layout(tmp_path / "root", small_corpus(), npy=False)
    (root / "videos").mkdir()
    for split, rows in small_corpus().items():
        for r in rows[1:]:
            (root / "videos" / f"{r[0]}.mp4").write_bytes(b"x")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"video pre00000001: no raw video .*videos/pre00000001"):
        ingest_how2_mcls(root, "pt", "video", out)
    assert_nothing_written(out)


def test_cli_exit_code_and_message(tmp_path, capsys):
    root = write_mcls_layout(tmp_path / "root", small_corpus())
    (root / "val_sum.txt").write_text("")
    rc = cli_main(["ingest", "--format", "how2-mcls", "--root", str(root), "--src-lang", "pt", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "mcls ingest: error:" in capsys.readouterr().err


def test_existing_outputs_survive_a_failed_rerun(tmp_path):
    root = write_mcls_layout(tmp_path / "root", small_corpus())
    out = tmp_path / "out"
    ingest_how2_mcls(root, "pt", "npy", out)
    before = (out / "train.parquet").read_bytes()
    (root / "test_sum.txt").write_text("")
    with pytest.raises(DataError):
        ingest_how2_mcls(root, "pt", "npy", out)
    assert (out / "train.parquet").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "pretrain.parquet", "test.parquet", "train.parquet", "val.parquet"]


def test_overlap_check_detects_shared_ids(tmp_path):
    root = write_mcls_layout(tmp_path / "root", small_corpus())
    ingest_how2_mcls(root, "pt", "npy", tmp_path / "a")
    tables = {s: tmp_path / "a" / f"{s}.parquet" for s in ("pretrain", "train", "val", "test")}
    overlap_check(tables)  # disjoint: no error
    tables["test"] = tables["pretrain"]
    with pytest.raises(DataError, match="splits pretrain and test share videos"):
        overlap_check(tables)


# ---- How2 300h layout --------------------------------------------------------------------

def write_300h(tmp_path: Path) -> dict:
    data = tmp_path / "how2-300h-v1" / "data"
    segs = {
        "train": [("vidA0000001_2", "c .", "c-pt ."), ("vidA0000001_0", "a .", "a-pt ."), ("vidA0000001_10", "z .", "z-pt ."),
                  ("vidA0000001_1", "b .", "b-pt ."), ("vidB0000002_0", "hello .", "olá ."),
                  ("vidNOSUMMAR_0", "no summary .", "sem resumo .")],
        "val": [("vidC0000003_0", "val text .", "texto val .")],
        "dev5": [("vidD0000004_1_2", "second .", "segundo ."), ("vidD0000004_0", "first .", "primeiro ."),
                 ("vid_D00004_12", "x .", "x-pt ."), ("vid_D00004_3", "y .", "y-pt .")],
    }
    splits = tmp_path / "splits"
    for official, rows in segs.items():
        d = data / official
        d.mkdir(parents=True)
        (d / "id").write_text("\n".join(r[0] for r in rows) + "\n")
        (d / "text.en").write_text("\n".join(r[1] for r in rows) + "\n")
        (d / "text.pt").write_text("\n".join(r[2] for r in rows) + "\n")
        (splits / official).mkdir(parents=True)
        (splits / official / "id").write_text("\n".join(sorted(r[0] for r in rows)) + "\n")
    summaries = tmp_path / "sum.txt"
    summaries.write_text("\n".join([
        "vidA0000001 summary of a .", "vidB0000002\tsummary of b .", "vidC0000003 summary of c .",
        "vidD0000004 summary of d .", "vid_D00004 summary of d2 .", "vidMS000005 ms summary one .", "vidMS000006 ms summary two .",
    ]) + "\n")
    ms = tmp_path / "ms.txt"
    ms.write_text("\n".join([
        "vidMS000005 an english-only transcript .", "vidA0000001 this mcls video must be excluded .",
        "vidMS000006 another one .", "vidNOSUM007 not summarized so excluded .",
    ]) + "\n")
    return {"root": tmp_path / "how2-300h-v1", "splits_dir": splits, "summaries": summaries, "ms_transcripts": ms}


def test_300h_layout(tmp_path):
    f = write_300h(tmp_path)
    m = ingest_how2_300h(f["root"], "pt", "none", tmp_path / "out", splits_dir=f["splits_dir"],
                         summaries=f["summaries"], ms_transcripts=f["ms_transcripts"])
    assert m["rows"] == {"pretrain": 2, "train": 2, "val": 1, "test": 2}
    train = read(tmp_path / "out", "train")
    i = train["video_id"].index("vidA0000001")
    assert train["transcript_en"][i] == "a . b . c . z ."          # segments joined in order of N
    assert train["transcript_src"][i] == "a-pt . b-pt . c-pt . z-pt ."
    assert train["summary"][i] == "summary of a ."
    assert "vidNOSUMMAR" not in train["video_id"]                 # MT video without summary dropped
    test = read(tmp_path / "out", "test")
    assert test["video_id"] == ["vidD0000004", "vid_D00004"]       # merged segment "_1_2"; '_' inside ids
    assert test["transcript_en"] == ["first . second .", "y . x ."]
    pre = read(tmp_path / "out", "pretrain")
    assert pre["video_id"] == ["vidMS000005", "vidMS000006"]      # How2-MS: summarized, not MCLS
    mcls = set(train["video_id"]) | set(read(tmp_path / "out", "val")["video_id"]) | set(test["video_id"])
    assert not (set(pre["video_id"]) & mcls)


def test_300h_official_split_mismatch(tmp_path):
    f = write_300h(tmp_path)
    (f["splits_dir"] / "val" / "id").write_text("otherVIDEO1_0\n")
    with pytest.raises(DataError, match="videos differ from the official partition"):
        ingest_how2_300h(f["root"], "pt", "none", tmp_path / "out", splits_dir=f["splits_dir"],
                         summaries=f["summaries"], ms_transcripts=f["ms_transcripts"])
    assert_nothing_written(tmp_path / "out")


def test_300h_bad_segment_id_and_duplicates(tmp_path):
    f = write_300h(tmp_path)
    idf = f["root"] / "data" / "val" / "id"
    idf.write_text("vidC0000003\n")
    with pytest.raises(DataError, match=r"val/id:1: 'vidC0000003' is not a How2 segment id"):
        ingest_how2_300h(f["root"], "pt", "none", tmp_path / "o1", splits_dir=None,
                         summaries=f["summaries"], ms_transcripts=None)
    f["summaries"].write_text("vidA0000001 one .\nvidA0000001 two .\n")
    with pytest.raises(DataError, match="second summary for video vidA0000001"):
        ingest_how2_300h(f["root"], "pt", "none", tmp_path / "o2", splits_dir=None,
                         summaries=f["summaries"], ms_transcripts=None)


def test_official_split_ids_are_readable(shared_dir):
    from mcls.ingest import read_official_ids
    ids = read_official_ids(shared_dir / "how2-official" / "splits", "dev5")
    assert len(ids) == 2305 and ids[0] == "-fZc293MpJk_0"
    from mcls.ingest import split_segment_id
    counts = {}
    for official in ("train", "val", "dev5"):
        ids = read_official_ids(shared_dir / "how2-official" / "splits", official)
        counts[official] = len({split_segment_id(s, Path(official), i)[0] for i, s in enumerate(ids)})
    assert counts == {"train": 13168, "val": 150, "dev5": 175}   # SPEC §1.1
