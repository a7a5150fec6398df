"""`mcls decode` end to end: a trained tiny checkpoint, an encoded split, .npy features, a
vocabulary -> hypotheses.jsonl; and `make_batch`."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from mcls.cli import main as cli_main
from mcls.decoding import Example, make_batch
from mcls.errors import DataError
from mcls.model import build_model, config_dict

WORDS = ["<pad>", "</s>", "<unk>", "cut", "the", "bread", "paint", "a", "fence", "we", "slowly", "red"]
SUMS = {"vidA": "cut the bread", "vidB": "paint a red fence"}
SRCS = {"vidA": "we cut bread", "vidB": "we paint fence slowly"}
IDX = {w: i for i, w in enumerate(WORDS)}
TINY = dict(d_model=16, ffn_dim=32, heads=2, enc_layers=1, dec_layers=1, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def ids(text):
    return [IDX[w] for w in text.split()] + [1]


def write_split(path, vids):
    def col(name):
        return pa.array([ids(SUMS[v] if name == "sum" else SRCS[v]) for v in vids], pa.list_(pa.int32()))

    lens = {f: pa.array([len(ids(SUMS[v] if f == "sum" else SRCS[v])) for v in vids], pa.int32()) for f in ("en", "src", "sum")}
    table = pa.table({"video_id": vids, "en": col("en"), "src": col("src"), "sum": col("sum"),
                      "en_len": lens["en"], "src_len": lens["src"], "sum_len": lens["sum"]})
    pq.write_table(table, path)


def train_tiny(video):
    torch.manual_seed(0)
    model = build_model("vdf", TINY, len(WORDS), len(WORDS), 4)
    vids = ["vidA", "vidB"]
    batch = make_batch([Example(v, ids(SRCS[v]), video[v]) for v in vids])
    tgt = [ids(SUMS[v]) for v in vids]
    n = max(map(len, tgt))
    batch["tgt_out"] = torch.tensor([t + [0] * (n - len(t)) for t in tgt])
    batch["tgt_in"] = torch.tensor([[1] + t[:-1] + [0] * (n - len(t)) for t in tgt])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = F.cross_entropy(model(batch).reshape(-1, len(WORDS)), batch["tgt_out"].reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()
    return model.eval()


@pytest.mark.parametrize("layout", ["model_meta", "model_config"])
def test_decode_cli_writes_hypotheses(tmp_path, layout):
    rng = np.random.default_rng(0)
    feats = tmp_path / "features"
    feats.mkdir()
    video = {"vidA": rng.random((3, 4), dtype=np.float32), "vidB": rng.random((5, 4), dtype=np.float32) + 1}
    for v, x in video.items():
        np.save(feats / f"{v}.npy", x)
    model = train_tiny(video)
    ckpt = tmp_path / "final.pt"
    meta = {"model_meta": {"config": config_dict(model)}} if layout == "model_meta" else {"model_config": config_dict(model)}
    torch.save({"model": model.state_dict(), **meta, "spec": {"data": {"src_field": "src"}}}, ckpt)
    split = tmp_path / "test.parquet"
    write_split(split, ["vidB", "vidA"])
    vocab = tmp_path / "en.tsv"
    vocab.write_text("".join(f"{w}\t0\n" for w in WORDS))
    refs = tmp_path / "data_test.parquet"
    pq.write_table(pa.table({"video_id": ["vidA", "vidB"], "summary": ["Cut the bread .", "Paint a red fence ."]}), refs)

    out = tmp_path / "eval" / "hypotheses.jsonl"
    common = ["decode", "--checkpoint", str(ckpt), "--split", str(split), "--vocab", str(vocab), "--features", str(feats)]
    assert cli_main(common + ["--out", str(out), "--beam", "3", "--max-len", "10", "--references", str(refs)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"id": "vidB", "hypothesis": "paint a red fence", "reference": "Paint a red fence ."},
                    {"id": "vidA", "hypothesis": "cut the bread", "reference": "Cut the bread ."}]
    out2 = tmp_path / "greedy.jsonl"
    assert cli_main(common + ["--out", str(out2), "--mode", "greedy", "--limit", "1"]) == 0
    assert [json.loads(line) for line in out2.read_text().splitlines()] == [
        {"id": "vidB", "hypothesis": "paint a red fence", "reference": "paint a red fence"}]  # reference from `sum` ids


def test_decode_cli_errors_name_the_problem(tmp_path, capsys):
    model = build_model("vdf", TINY, len(WORDS), len(WORDS), 4)
    ckpt = tmp_path / "final.pt"
    torch.save({"model": model.state_dict(), "model_config": config_dict(model)}, ckpt)
    split = tmp_path / "test.parquet"
    write_split(split, ["vidA"])
    vocab = tmp_path / "en.tsv"
    vocab.write_text("".join(f"{w}\t0\n" for w in WORDS[:-1]))
    args = ["decode", "--checkpoint", str(ckpt), "--split", str(split), "--vocab", str(vocab), "--out", str(tmp_path / "h.jsonl")]
    assert cli_main(args) == 2
    assert "reads video: give --features" in capsys.readouterr().err
    (tmp_path / "f").mkdir()
    np.save(tmp_path / "f" / "other.npy", np.ones((2, 4), np.float32))
    assert cli_main(args + ["--features", str(tmp_path / "f")]) == 2
    assert "11 tokens but the model's target vocabulary has 12" in capsys.readouterr().err
    vocab.write_text("".join(f"{w}\t0\n" for w in WORDS))
    assert cli_main(args + ["--features", str(tmp_path / "f")]) == 2
    assert "video vidA" in capsys.readouterr().err and not (tmp_path / "h.jsonl").exists()
    assert cli_main(["decode", "--checkpoint", str(tmp_path / "nope.pt"), "--split", str(split), "--vocab", str(vocab),
                     "--out", str(tmp_path / "h.jsonl")]) == 2


def test_make_batch_pads_and_checks():
    b = make_batch([Example("x", [5, 6, 1], np.ones((2, 3), np.float32)), Example("y", [7, 1], np.ones((4, 3), np.float32))])
    assert b["ids"] == ["x", "y"]
    assert b["src"].tolist() == [[5, 6, 1], [7, 1, 0]]
    assert b["video"].shape == (2, 4, 3) and b["video"][0, 2:].abs().sum() == 0
    assert b["video_mask"].tolist() == [[True, True, False, False], [True] * 4]
    assert "video" not in make_batch([Example("t", [3, 1])])
    with pytest.raises(DataError, match=r"\['y'\] have no video"):
        make_batch([Example("x", [5, 1], np.ones((2, 3))), Example("y", [7, 1])])
    with pytest.raises(DataError, match="k >= 1"):
        make_batch([Example("x", [5, 1], np.ones((0, 3)))])
