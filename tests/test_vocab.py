"""Tokenization, vocabularies and encoding (SPEC §1.2), incl. Chinese and the lazy reader."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from mcls.cli import main as cli_main
from mcls.encoded import EncodedSplit
from mcls.errors import DataError
from mcls.ingest import ingest_how2_mcls
from mcls.text import count_sentences, detokenize, tokenize_zh
from mcls.vocab import EOS, PAD, UNK, Vocab, encode_table

from conftest import small_corpus, write_mcls_layout


def test_zh_tokenizer_keeps_ascii_runs_whole():
    assert tokenize_zh("我是mike，在johngraden.com工作2024年。") == [
        "我", "是", "mike", "，", "在", "johngraden", ".", "com", "工", "作", "2024", "年", "。"]
    assert tokenize_zh("你 好") == ["你", "好"]


def test_specials_and_order():
    v = Vocab.build(["b a a c", "a b"], "en")
    assert v.itos[:3] == ["<pad>", "</s>", "<unk>"] and (PAD, EOS, UNK) == (0, 1, 2)
    assert v.itos[3:] == ["a", "b", "c"] and v.counts[3:] == [3, 2, 1]


def test_min_count_maps_rare_to_unk():
    v = Vocab.build(["a a b"], "en", min_count=2)
    assert v.itos[3:] == ["a"]
    assert v.encode("a b zzz").tolist() == [3, UNK, UNK, EOS]


def test_round_trip_en_and_zh(tmp_path):
    en = Vocab.build(["hi , i 'm john ."], "en")
    en.save(tmp_path / "en.tsv")
    en2 = Vocab.load(tmp_path / "en.tsv", "en")
    ids = en2.encode("hi , i 'm john .")
    assert ids.dtype == np.int32 and ids[-1] == EOS
    assert " ".join(en2.decode(ids)) == "hi , i 'm john ."
    zh = Vocab.build(["大家好，我是mike。"], "zh")
    zh.save(tmp_path / "zh.tsv")
    zh2 = Vocab.load(tmp_path / "zh.tsv", "zh")
    assert zh2.itos == zh.itos
    ids = zh2.encode("我是mike。")
    assert zh2.decode(ids) == ["我", "是", "mike", "。"]
    assert detokenize(zh2.decode(ids), "zh") == "我是mike。"


def test_truncation_keeps_eos():
    v = Vocab.build(["a b c d e f"], "en")
    ids = v.encode("a b c d e f", max_len=4)
    assert len(ids) == 4 and ids[-1] == EOS and v.decode(ids) == ["a", "b", "c"]


def test_bad_vocab_file(tmp_path):
    p = tmp_path / "v.tsv"
    p.write_text("<pad>\t0\n</s>\t0\n<unk>\t0\nbad line without tab\n")
    with pytest.raises(DataError, match=r"v.tsv:4: expected 'token<TAB>count'"):
        Vocab.load(p)
    p.write_text("a\t1\n")
    with pytest.raises(DataError, match="must start with"):
        Vocab.load(p)


def test_count_sentences():
    assert count_sentences("a b . c d ? e".split()) == 3
    assert count_sentences(list("你好。再见！")) == 2
    assert count_sentences([]) == 0


def test_encode_table_and_lazy_reader(tmp_path):
    root = write_mcls_layout(tmp_path / "root", small_corpus())
    ingest_how2_mcls(root, "pt", "npy", tmp_path / "data")
    rc = cli_main(["vocab", "--tables", str(tmp_path / "data/pretrain.parquet"), str(tmp_path / "data/train.parquet"),
                   "--columns", "transcript_en", "summary", "--lang", "en", "--out", str(tmp_path / "en.tsv")])
    assert rc == 0
    rc = cli_main(["vocab", "--tables", str(tmp_path / "data/train.parquet"), "--columns", "transcript_src",
                   "--lang", "pt", "--out", str(tmp_path / "pt.tsv")])
    assert rc == 0
    en, pt = Vocab.load(tmp_path / "en.tsv", "en"), Vocab.load(tmp_path / "pt.tsv", "pt")
    for split in ("pretrain", "train", "test"):
        n = encode_table(tmp_path / f"data/{split}.parquet", tmp_path / f"enc/{split}.parquet", en, pt, 6, 5)
        table = pq.read_table(tmp_path / f"data/{split}.parquet").to_pydict()
        ds = EncodedSplit(tmp_path / f"enc/{split}.parquet")
        assert n == len(ds) == len(table["video_id"]) and ds.video_ids == table["video_id"]
        for i in range(len(ds)):
            assert ds.get(i, "en").tolist() == en.encode(table["transcript_en"][i], 6).tolist()
            assert ds.get(i, "sum").tolist() == en.encode(table["summary"][i], 5).tolist()
            assert ds.lengths("sum")[i] == len(ds.get(i, "sum")) <= 5
        if split == "pretrain":
            assert not ds.has("src") and ds.lengths("src").tolist() == [0, 0]
            with pytest.raises(DataError, match="has no 'src' sequence"):
                ds.get(0, "src")
        else:
            assert ds.has("src")
            assert ds.get(0, "src").tolist() == pt.encode(table["transcript_src"][0], 6).tolist()
    test_ids = EncodedSplit(tmp_path / "enc/test.parquet").get(0, "src")
    assert UNK in test_ids.tolist()  # test words unseen in train map to <unk>
    schema = pq.read_schema(tmp_path / "enc/train.parquet")
    assert str(schema.field("src").type) == "list<element: int32>"


def test_reader_across_row_groups(tmp_path, monkeypatch):
    import mcls.vocab as vocab_mod
    monkeypatch.setattr(vocab_mod, "ROW_GROUP", 3)
    rows = {"pretrain": [(f"pre{i:08d}", f"w{i} x", None, f"s{i}") for i in range(10)],
            "train": [(f"trn{i:08d}", f"w{i}", f"p{i}", f"s{i}") for i in range(7)],
            "val": [("val00000001", "a", "b", "c")], "test": [("tst00000001", "a", "b", "c")]}
    root = write_mcls_layout(tmp_path / "root", rows)
    ingest_how2_mcls(root, "pt", "npy", tmp_path / "data")
    en = Vocab.build([f"w{i} x s{i}" for i in range(10)], "en")
    encode_table(tmp_path / "data/pretrain.parquet", tmp_path / "p.parquet", en, None)
    assert pq.ParquetFile(tmp_path / "p.parquet").metadata.num_row_groups == 4
    ds = EncodedSplit(tmp_path / "p.parquet", cache_row_groups=1)
    for i in [9, 0, 5, 3, 8, 2]:
        assert en.decode(ds.get(i, "en")) == [f"w{i}", "x"]


def test_arrow_fast_path_equals_the_python_path(tmp_path):
    import random

    import pyarrow as pa

    from mcls.vocab import _build_vocab_arrow, _encode_column, _encode_column_arrow

    rnd = random.Random(0)
    words = [f"w{i}" for i in range(50)] + ["é", "naïve", "<unk>", "</s>", "x-y", "'s"]
    texts = []
    for i in range(300):
        toks = [rnd.choice(words) for _ in range(rnd.randint(1, 40))]
        seps = [rnd.choice([" ", "  ", "\t", " \u00a0"]) for _ in toks]
        texts.append(rnd.choice(["", " ", "\t"]) + "".join(t + s for t, s in zip(toks, seps)))
    texts[5] = None
    pq.write_table(pa.table({"t": pa.array(texts, pa.string())}), tmp_path / "t.parquet")
    fast = _build_vocab_arrow([tmp_path / "t.parquet"], ["t"], "en", min_count=2)
    slow = Vocab.build([t for t in texts if t is not None], "en", min_count=2)
    assert fast.itos == slow.itos and fast.counts == slow.counts
    for max_len in (3, 10, 800):
        a, alen = _encode_column_arrow(slow, pa.array(texts, pa.string()), max_len)
        b, blen = _encode_column(slow, texts, max_len)
        assert a.to_pylist() == b.to_pylist() and alen.tolist() == blen.tolist()
