"""Fixtures for the training tests (no tests here): encoded split files written in the
docs/DESIGN.md schema, vocab files, a dict-backed feature source and a tiny model that
follows the model contract (`model(batch) -> logits (B, l, V)`, `model.config` dataclass).

The model is importable as "test_training_support:build_toy" (spec key `model`) when tests/
is on PYTHONPATH, so the `mcls train` subprocess tests can use it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
EOS = 1


def write_encoded(path: Path, rows: list[dict], row_group_size: int = 16) -> Path:
    """rows: {video_id, en, src (or None), sum} with EOS-terminated id lists."""
    def col(name):
        return pa.array([r.get(name) for r in rows], type=pa.list_(pa.int32()))

    def lens(name):
        return pa.array([len(r[name]) if r.get(name) is not None else 0 for r in rows], type=pa.int32())

    table = pa.table({
        "video_id": pa.array([r["video_id"] for r in rows], type=pa.string()),
        "en": col("en"), "src": col("src"), "sum": col("sum"),
        "en_len": lens("en"), "src_len": lens("src"), "sum_len": lens("sum"),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_vocab(path: Path, size: int) -> Path:
    specials = ["<pad>", "</s>", "<unk>"]
    lines = [f"{t}\t0" for t in specials] + [f"w{i}\t1" for i in range(size - 3)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_rows(n: int, vocab: int = 20, seed: int = 0, src_len=(3, 12), sum_len=(2, 6), prefix="v") -> list[dict]:
    """Random rows whose summary is a deterministic function of the transcript (learnable)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        m = int(rng.integers(*src_len))
        en = rng.integers(3, vocab, size=m).tolist()
        k = int(rng.integers(*sum_len))
        summ = [3 + (t * 7 + 1) % (vocab - 3) for t in en[:k]]
        src = [3 + (t * 5 + 2) % (vocab - 3) for t in reversed(en)]
        rows.append({"video_id": f"{prefix}{i:04d}", "en": en + [EOS], "src": src + [EOS], "sum": summ + [EOS]})
    return rows


class DictFeatures:
    """Feature source over a dict {video_id: (k, D) float32}."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table
        self.dim = next(iter(table.values())).shape[1]
        self.calls: list[tuple[str, int]] = []

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.table

    def get(self, video_id: str, max_rows: int = 1024) -> np.ndarray:
        self.calls.append((video_id, max_rows))
        return self.table[video_id][:max_rows]


def make_features(ids: list[str], dim: int = 6, seed: int = 0, rows=(2, 9)) -> DictFeatures:
    rng = np.random.default_rng(seed)
    return DictFeatures({v: rng.random((int(rng.integers(*rows)), dim), dtype=np.float32) for v in ids})


@dataclass
class ToyConfig:
    src_vocab: int
    tgt_vocab: int
    video_dim: int
    d: int = 16
    dropout: float = 0.1


class ToySeq2Seq(nn.Module):
    """Masked-mean text (+ video) context feeding a GRU decoder; tied output projection."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.config = cfg
        self.src_emb = nn.Embedding(cfg.src_vocab, cfg.d, padding_idx=0)
        self.tgt_emb = nn.Embedding(cfg.tgt_vocab, cfg.d, padding_idx=0)
        self.video = nn.Linear(cfg.video_dim, cfg.d) if cfg.video_dim else None
        self.ctx = nn.Linear(cfg.d, cfg.d)
        self.gru = nn.GRU(cfg.d, cfg.d, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, batch: dict) -> torch.Tensor:
        src = batch["src"]
        m = (src != 0).unsqueeze(-1).float()
        c = (self.drop(self.src_emb(src)) * m).sum(1) / m.sum(1)  # (B, d)
        if self.video is not None and "video" in batch:
            vm = batch["video_mask"].unsqueeze(-1).float()
            c = c + (self.video(batch["video"]) * vm).sum(1) / vm.sum(1).clamp_min(1)
        h0 = torch.tanh(self.ctx(c)).unsqueeze(0)  # (1, B, d)
        out, _ = self.gru(self.drop(self.tgt_emb(batch["tgt_in"])), h0)  # (B, l, d)
        return out @ self.tgt_emb.weight.t()  # (B, l, V)


def build_toy(sizes: dict, src_vocab: int, tgt_vocab: int, video_dim: int) -> ToySeq2Seq:
    return ToySeq2Seq(ToyConfig(src_vocab, tgt_vocab, video_dim, d=int(sizes.get("d_model", 16)),
                                dropout=float(sizes.get("dropout", 0.1))))


def make_setup(tmp: Path, n_train: int = 24, n_valid: int = 6, vocab: int = 20, **spec_over) -> dict:
    """Write train/valid splits and vocabularies under tmp; return a spec for the toy model."""
    train = write_encoded(tmp / "encoded" / "train.parquet", make_rows(n_train, vocab, seed=1))
    valid = write_encoded(tmp / "encoded" / "val.parquet", make_rows(n_valid, vocab, seed=2, prefix="u"))
    voc = write_vocab(tmp / "vocab" / "en.tsv", vocab)
    spec = {
        "stage": 1, "model": "test_training_support:build_toy", "sizes": {"d_model": 16, "dropout": 0.1},
        "data": {"train": str(train), "valid": str(valid), "features": None, "src_field": "en",
                 "tgt_field": "sum", "src_vocab": str(voc), "tgt_vocab": str(voc)},
        "optim": {"lr": 3e-3, "warmup_steps": 5, "epochs": 3, "max_steps": None, "batch_size": 4,
                  "max_tokens": None, "clip_norm": 1.0},
        "seed": 42, "device": "cpu", "threads": 1, "checkpoint_every": 4, "log_every": 1, "select": "best",
    }
    for k, v in spec_over.items():
        if isinstance(v, dict) and isinstance(spec.get(k), dict):
            spec[k].update(v)
        else:
            spec[k] = v
    return spec


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def state_of(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
