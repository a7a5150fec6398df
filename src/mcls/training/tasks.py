"""Training tasks: what a stage trains and with which loss. The loop is the same for all.

A task tells the loop
- `fields`: which encoded fields feed which batch keys (`{"src": "en", "tgt": "sum"}`),
- `build_model(...)`: the trainable module (the whole model for CE; the student for KD),
- `loss(model, batch)`: `(loss_sum, normalizer)` on this process's part of the batch. The loop
  sums both over DDP processes and optimises `sum(loss_sum) / sum(normalizer)`, so a task
  never needs to know about the world size;
- `to(device)`: moves frozen modules it holds (a KD teacher) to the training device.

`TASKS` maps the spec's `task` key to a class. Stage 2 (distillation: APD/LAWD, teacher frozen,
no CE) adds "kd" here in a later issue; nothing in the loop changes.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import McLSError
from .data import PAD


def cross_entropy_sum(logits: torch.Tensor, target: torch.Tensor, pad: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy summed over non-pad target tokens, and the number of those tokens.

    logits (B, l, V) (computed in float32 whatever their dtype), target (B, l) with pad ids.
    No label smoothing (SPEC §4).
    """
    if logits.shape[:2] != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match target {tuple(target.shape)}")
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), target.reshape(-1),
                           ignore_index=pad, reduction="sum")
    return loss, (target != pad).sum()


def resolve_builder(name: str) -> Callable[..., torch.nn.Module]:
    """`mcls.model.build_model` for a preset name; for "package.module:function" (custom models)
    that function, called as `function(sizes, src_vocab, tgt_vocab, video_dim, **switches)`."""
    if ":" in name:
        mod, _, fn = name.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as exc:
            raise McLSError(f"spec key 'model': cannot import factory {name!r}: {exc}") from None
        return lambda _name, *a, **k: factory(*a, **k)
    try:
        from ..model import build_model
    except ImportError as exc:
        raise McLSError(f"spec key 'model': preset {name!r} needs mcls.model, which failed to import: {exc}") from None
    return build_model


def build_named_model(name: str, sizes: dict, src_vocab: int, tgt_vocab: int, video_dim: int,
                      switches: dict | None = None) -> torch.nn.Module:
    """The model builder raises McLSError (ConfigError) for a bad preset, size or switch."""
    return resolve_builder(name)(name, dict(sizes), src_vocab, tgt_vocab, video_dim, **(switches or {}))


def model_config_dict(model: torch.nn.Module) -> dict[str, Any] | None:
    cfg = getattr(model, "config", None)
    if cfg is not None and dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return dict(cfg) if isinstance(cfg, dict) else None


class CrossEntropyTask:
    """Stages 1, 3 and the MCLS-only models: teacher-forced CE, summed / #target tokens."""

    name = "ce"

    def __init__(self, spec: dict):
        self.spec = spec

    @property
    def fields(self) -> dict[str, str]:
        d = self.spec["data"]
        return {"src": d["src_field"], "tgt": d["tgt_field"]}

    def vocab_keys(self) -> dict[str, str]:
        """batch key -> which vocabulary ('src' or 'tgt') its ids come from."""
        return {"src": "src", "tgt": "tgt"}

    def build_model(self, src_vocab: int, tgt_vocab: int, video_dim: int) -> torch.nn.Module:
        s = self.spec
        if ":" not in s["model"] and not video_dim:
            from ..model import make_config

            if make_config(s["model"], s["sizes"], src_vocab, tgt_vocab, video_dim, **s["switches"]).uses_video:
                raise McLSError(f"spec key 'data.features': model {s['model']!r} reads video, but no "
                                "feature store is given")
        return build_named_model(s["model"], s["sizes"], src_vocab, tgt_vocab, video_dim, s["switches"])

    def to(self, device: torch.device) -> "CrossEntropyTask":
        return self

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch)  # (B, l, V)
        return cross_entropy_sum(logits, batch["tgt_out"])


TASKS: dict[str, type] = {"ce": CrossEntropyTask}


def make_task(spec: dict):
    name = spec["task"]
    if name not in TASKS:
        raise McLSError(f"spec key 'task': {name!r} is not implemented yet (stage 2 distillation "
                        f"comes in a later issue; available: {', '.join(TASKS)})")
    return TASKS[name](spec)
