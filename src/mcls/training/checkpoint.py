"""Checkpoints: atomic writes, RNG capture, `weights_only=True` loading, model rebuilding.

A training checkpoint (`checkpoints/last.pt`, `checkpoints/best.pt`) is a dict of tensors and
plain Python values only, so `torch.load(..., weights_only=True)` reads it:

    format        "mcls.train-checkpoint/1"
    model         state_dict of the trainable module (unwrapped from DDP)
    model_meta    {name, sizes, switches, src_vocab, tgt_vocab, video_dim, config (asdict of model.config)}
    optimizer     AdamW state_dict;   scheduler  {t, base_lr, warmup, total}
    rng           one entry per DDP rank: {torch, cuda (list or None), numpy, python}
    sampler       {epoch, position (global batches done in that epoch), seed, world}
    step, epoch   optimizer updates done; epoch of the next batch
    best          {valid_loss, step, epoch} of the best validation so far (valid_loss None: none yet)
    valid_loss    the latest validation loss (None before the first validation)
    spec          the parsed stage spec;   code_version  mcls.code_version()
    total_steps   length of the schedule

`final.pt` is the selected checkpoint without optimizer, scheduler, RNG and sampler state
(format "mcls.model-checkpoint/1", plus `selected`: best|last); `load_model` rebuilds the model
from either kind.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import McLSError

TRAIN_FORMAT = "mcls.train-checkpoint/1"
MODEL_FORMAT = "mcls.model-checkpoint/1"
MODEL_KEYS = ("model", "model_meta", "spec", "code_version", "step", "epoch", "valid_loss", "best", "total_steps")


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU, CUDA, numpy global, python `random`)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, pstate, pgauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": list(pstate), "gauss": pgauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def save(path: str | Path, obj: dict[str, Any]) -> None:
    """torch.save through a temporary sibling + rename: a kill never leaves a partial file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise McLSError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise McLSError(f"checkpoint {path} cannot be read with weights_only=True: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") not in (TRAIN_FORMAT, MODEL_FORMAT):
        raise McLSError(f"{path} is not an mcls checkpoint (format {obj.get('format') if isinstance(obj, dict) else type(obj)})")
    return obj


def model_only(ckpt: dict[str, Any], selected: str) -> dict[str, Any]:
    out = {k: ckpt[k] for k in MODEL_KEYS}
    out["format"] = MODEL_FORMAT
    out["selected"] = selected
    return out


def model_from_checkpoint(obj: dict[str, Any], path: str | Path) -> torch.nn.Module:
    """Rebuild a checkpoint's model and load its weights strictly. The stored ModelConfig
    (`model_meta.config`, or a top-level `model_config`) is preferred, so every switch and a
    stage-3 encoder swap survive; models built by an import-path factory are rebuilt by it."""
    from ..model import model_from_config
    from .tasks import build_named_model

    meta = obj.get("model_meta") or {}
    cfg = obj.get("model_config") or meta.get("config")
    name = meta.get("name") or (cfg or {}).get("name")
    if cfg and ":" not in str(meta.get("name", "")):
        model = model_from_config(cfg)
    elif meta:
        model = build_named_model(meta["name"], meta["sizes"], meta["src_vocab"], meta["tgt_vocab"], meta["video_dim"], meta["switches"])
    else:
        raise McLSError(f"{path} holds no model config (model_meta / model_config); cannot rebuild the model")
    try:
        model.load_state_dict(obj["model"], strict=True)
    except RuntimeError as exc:
        raise McLSError(f"checkpoint {path} does not match model {name!r} as built now: {exc}") from None
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a training or final checkpoint (strict key matching), in eval mode."""
    ckpt = load(path)
    return model_from_checkpoint(ckpt, path).to(device).eval(), ckpt


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temporaries a killed writer left behind (`.NAME.XXXX.tmp`) in `directory`."""
    removed = []
    if directory.is_dir():
        for p in directory.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
