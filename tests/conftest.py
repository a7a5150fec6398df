"""Shared test fixtures. Tests may read ../shared (beside the checkout) and skip without it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BIN = Path(sys.executable).parent


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present beside the checkout")
    return SHARED


@pytest.fixture
def one_thread():
    """Tiny models run on one torch thread: two OpenMP threads on a busy 2-core machine stall
    at every barrier (up to ~100x slower per op)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def mcls_env() -> dict:
    """Environment for subprocesses: the venv's bin first on PATH (so `mcls`/`snakemake` resolve)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def write_mcls_layout(root: Path, videos: dict[str, list[tuple[str, str, str | None, str]]],
                      src_lang: str = "pt", dim: int = 8, npy: bool = True) -> Path:
    """Write a small How2-MCLS release layout: {split: [(id, en, src, summary), ...]}."""
    root.mkdir(parents=True, exist_ok=True)
    feats = root / "video_action_features"
    feats.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for split, rows in videos.items():
        (root / f"{split}_action.txt").write_text("\n".join(r[0] for r in rows))
        (root / f"{split}_art_en.txt").write_text("\n".join(r[1] for r in rows))
        if split != "pretrain":
            (root / f"{split}_art_{src_lang}.txt").write_text("\n".join(r[2] or "" for r in rows))
        (root / f"{split}_sum.txt").write_text("\n".join(r[3] for r in rows))
        if npy:
            for r in rows:
                k = int(rng.integers(2, 6))
                np.save(feats / f"{r[0]}.npy", rng.random((k, dim), dtype=np.float32))
    return root


def small_corpus() -> dict[str, list[tuple[str, str, str | None, str]]]:
    return {
        "pretrain": [("pre00000001", "we cut the bread .", None, "cut bread ."),
                     ("pre00000002", "we paint the fence .", None, "paint a fence .")],
        "train": [("trn00000001", "hello there .", "olá .", "say hello ."),
                  ("trn00000002", "the small brush .", "o pincel pequeno .", "use a brush .")],
        "val": [("val00000001", "fold the shirt .", "dobre a camisa .", "fold a shirt .")],
        "test": [("tst00000001", "wash the dog .", "lave o cachorro .", "wash a dog .")],
    }
