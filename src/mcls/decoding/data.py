"""Inputs of decoding: an `Example` per video and `make_batch`, which pads a list of them into
the batch format of docs/DESIGN.md (no targets). Also id -> text helpers for the outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError
from ..model.layers import EOS, PAD


@dataclass
class Example:
    id: str  # video id
    src: Sequence[int] | None = None  # encoder token ids, ending with EOS (None: video-only model)
    video: np.ndarray | None = None  # (k, D) float32 clip features (None: text-only model)
    reference: str | None = None  # reference summary text (written next to the hypothesis)


def make_batch(examples: Sequence[Example], device: str | torch.device = "cpu", max_video_rows: int = 1024) -> dict:
    """Pad examples into a batch: `src` Long (B, n) pad 0, `video` Float (B, k, D) zero-padded,
    `video_mask` Bool (B, k), `ids`. Text and video are present when every example has them."""
    if not examples:
        raise ValueError("make_batch needs at least one example")
    batch: dict = {"ids": [e.id for e in examples]}
    have_src = [e.src is not None for e in examples]
    if any(have_src):
        missing = [e.id for e, h in zip(examples, have_src) if not h]
        if missing:
            raise DataError(f"examples {missing[:5]} have no source tokens while others do")
        lens = [len(e.src) for e in examples]
        empty = [e.id for e, n in zip(examples, lens) if n == 0]
        if empty:
            raise DataError(f"examples {empty[:5]} have an empty source (expected at least EOS)")
        src = np.full((len(examples), max(lens)), PAD, dtype=np.int64)
        for i, e in enumerate(examples):
            src[i, : lens[i]] = np.asarray(e.src, dtype=np.int64)
        batch["src"] = torch.from_numpy(src).to(device)
    have_video = [e.video is not None for e in examples]
    if any(have_video):
        missing = [e.id for e, h in zip(examples, have_video) if not h]
        if missing:
            raise DataError(f"examples {missing[:5]} have no video features while others do")
        vids = [np.asarray(e.video, dtype=np.float32)[:max_video_rows] for e in examples]
        bad = [(e.id, v.shape) for e, v in zip(examples, vids) if v.ndim != 2 or v.shape[0] == 0]
        if bad:
            raise DataError(f"video features must be (k >= 1, D): {bad[:5]}")
        dims = {v.shape[1] for v in vids}
        if len(dims) > 1:
            raise DataError(f"video feature widths differ within a batch: {sorted(dims)}")
        k = max(v.shape[0] for v in vids)
        video = np.zeros((len(vids), k, vids[0].shape[1]), dtype=np.float32)
        mask = np.zeros((len(vids), k), dtype=bool)
        for i, v in enumerate(vids):
            video[i, : len(v)] = v
            mask[i, : len(v)] = True
        batch["video"] = torch.from_numpy(video).to(device)
        batch["video_mask"] = torch.from_numpy(mask).to(device)
    return batch


def read_vocab(path: str | Path) -> list[str]:
    """`vocab/<lang>.tsv` tokens in id order (specials first); see mcls.vocab.Vocab."""
    from ..vocab import Vocab

    return Vocab.load(path, "en").itos


def ids_to_text(ids: Sequence[int], vocab: Sequence[str]) -> str:
    """Token ids -> whitespace-joined text, stopping at EOS, skipping PAD."""
    out = []
    for i in ids:
        if i == EOS:
            break
        if i != PAD:
            out.append(vocab[i] if 0 <= i < len(vocab) else "<unk>")
    return " ".join(out)
