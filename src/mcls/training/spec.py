"""The stage spec: everything one `mcls train` job needs, as one JSON object.

A spec is a Snakemake `params:` entry (so changing any value reruns the job). `parse_spec`
fills the optional keys with their defaults, checks every key and value, and returns a plain
dict (JSON-serialisable, stored in every checkpoint). A bad or unknown key raises
`McLSError` naming it by its dotted path, e.g.::

    spec key 'optim.lr': expected a number > 0, got -1
    spec: unknown key 'optm' (did you mean 'optim'?)

The keys (docs/training.md has the long form):

    stage             1 | 2 | 3 | "mcls"     which training stage (picks the default task)
    task              "ce" (default for stages 1, 3, mcls) | "kd" (stage 2, a later issue)
    model             preset name for mcls.model.build_model, or "package.module:factory"
                      (called as factory(sizes, src_vocab, tgt_vocab, video_dim, **switches))
    sizes             the config's model: section, passed to the model builder as is
    switches          extra model switches passed as keyword arguments (default {}), e.g.
                      {"share_src_tgt_embedding": true} for stage 1 (one En embedding)
    data.train        encoded split parquet (training rows)
    data.valid        encoded split parquet or null (null only with select: last)
    data.features     feature store path or null (text-only models)
    data.src_field    en | src        encoder text input
    data.tgt_field    sum (default)   decoder target
    data.src_vocab    vocab TSV of the encoder side (size = line count)
    data.tgt_vocab    vocab TSV of the decoder side
    data.max_video_rows   clips kept per video (default 1024)
    data.missing_features skip (default; warned, counted in model.json) | error
    data.workers      DataLoader worker processes (default 0 = load in the training process)
    optim.lr, optim.warmup_steps, optim.epochs, optim.max_steps (null), optim.batch_size,
    optim.max_tokens, optim.clip_norm (0 = no clipping), optim.betas ([0.9, 0.999]),
    optim.eps (1e-6), optim.weight_decay (0)
    seed              int
    device            cpu | cuda | cuda:N
    threads           torch intra-op threads per process (default 2)
    bf16              bf16 autocast when the device is CUDA (default true; ignored on CPU)
    checkpoint_every  optimizer steps between mid-epoch checkpoints (also written at each epoch end)
    log_every         optimizer steps per train.jsonl record (default 10)
    select            best | last     which checkpoint becomes final.pt
    init_from         null (initialising from another stage's checkpoint comes with stage 3)
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from pathlib import Path
from typing import Any

from ..errors import McLSError

# Spec keys whose change does not change the numbers a run computes (on one device kind):
# a checkpoint written under one value resumes under another.
NON_NUMERIC_KEYS = ("device", "threads", "data.workers", "log_every", "bf16")

_DEFAULTS: dict[str, Any] = {
    "task": None,  # filled from stage
    "switches": {},
    "data": {
        "valid": None,
        "features": None,
        "tgt_field": "sum",
        "max_video_rows": 1024,
        "missing_features": "skip",
        "workers": 0,
    },
    "optim": {
        "max_steps": None,
        "batch_size": None,
        "max_tokens": None,
        "clip_norm": 0.0,
        "betas": [0.9, 0.999],
        "eps": 1e-6,
        "weight_decay": 0.0,
    },
    "device": "cpu",
    "threads": 2,
    "bf16": True,
    "log_every": 10,
    "select": "best",
    "init_from": None,
}

_REQUIRED = {
    "": ["stage", "model", "sizes", "data", "optim", "seed", "checkpoint_every"],
    "data": ["train", "src_field", "src_vocab", "tgt_vocab"],
    "optim": ["lr", "warmup_steps", "epochs"],
}

_ALLOWED = {
    "": ["stage", "task", "model", "sizes", "switches", "data", "optim", "seed", "device", "threads", "bf16",
         "checkpoint_every", "log_every", "select", "init_from"],
    "data": ["train", "valid", "features", "src_field", "tgt_field", "src_vocab", "tgt_vocab",
             "max_video_rows", "missing_features", "workers"],
    "optim": ["lr", "warmup_steps", "epochs", "max_steps", "batch_size", "max_tokens", "clip_norm",
              "betas", "eps", "weight_decay"],
}

TASK_OF_STAGE = {1: "ce", 2: "kd", 3: "ce", "mcls": "ce"}


def _err(key: str, msg: str) -> McLSError:
    return McLSError(f"spec key '{key}': {msg}")


def _check_keys(obj: dict, where: str) -> None:
    allowed = _ALLOWED[where]
    for k in obj:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            prefix = f"spec key '{where}'" if where else "spec"
            raise McLSError(f"{prefix}: unknown key '{k}'{hint}; allowed keys: {', '.join(allowed)}")
    for k in _REQUIRED[where]:
        if k not in obj:
            raise _err(f"{where}.{k}" if where else k, "missing (required)")


def _int(d: dict, key: str, path: str, minimum: int | None = None, nullable: bool = False) -> None:
    v = d.get(key)
    if v is None and nullable:
        return
    if isinstance(v, bool) or not isinstance(v, int):
        raise _err(path, f"expected an integer{' or null' if nullable else ''}, got {v!r}")
    if minimum is not None and v < minimum:
        raise _err(path, f"expected an integer >= {minimum}, got {v!r}")


def _num(d: dict, key: str, path: str, positive: bool = False, nonneg: bool = False) -> None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _err(path, f"expected a number, got {v!r}")
    if positive and v <= 0:
        raise _err(path, f"expected a number > 0, got {v!r}")
    if nonneg and v < 0:
        raise _err(path, f"expected a number >= 0, got {v!r}")


def _choice(d: dict, key: str, path: str, allowed: list) -> None:
    v = d.get(key)
    if v not in allowed or isinstance(v, bool):
        raise _err(path, f"{v!r} is not allowed (allowed: {', '.join(map(json.dumps, allowed))})")


def _str(d: dict, key: str, path: str, nullable: bool = False) -> None:
    v = d.get(key)
    if v is None and nullable:
        return
    if not isinstance(v, str) or not v:
        raise _err(path, f"expected a non-empty string{' or null' if nullable else ''}, got {v!r}")


def load_spec_arg(text: str) -> dict:
    """The `--spec` argument: a JSON object, or the path of a JSON/YAML file holding one."""
    s = text.strip()
    if s.startswith("{"):
        try:
            return json.loads(s)
        except json.JSONDecodeError as exc:
            raise McLSError(f"--spec is not valid JSON: {exc}") from None
    path = Path(text)
    if not path.exists():
        raise McLSError(f"--spec {text!r}: neither a JSON object nor an existing file")
    raw = path.read_text(encoding="utf-8")
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        import yaml

        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise McLSError(f"spec file {path}: neither JSON nor YAML: {exc}") from None


def parse_spec(raw: Any) -> dict:
    """Validate a spec and return a filled copy (defaults inserted). Raises McLSError naming the key."""
    if not isinstance(raw, dict):
        raise McLSError(f"the spec must be a JSON object, got {type(raw).__name__}")
    spec = copy.deepcopy(raw)
    _check_keys(spec, "")
    for sec in ("data", "optim"):
        if not isinstance(spec[sec], dict):
            raise _err(sec, f"expected an object, got {spec[sec]!r}")
        _check_keys(spec[sec], sec)
    for key, default in _DEFAULTS.items():
        if key in ("data", "optim"):
            for k, v in default.items():
                spec[key].setdefault(k, copy.deepcopy(v))
        else:
            spec.setdefault(key, copy.deepcopy(default))

    # top level
    st = spec["stage"]
    if st not in (1, 2, 3, "mcls") or isinstance(st, bool):
        raise _err("stage", f"{st!r} is not allowed (allowed: 1, 2, 3, \"mcls\")")
    if spec["task"] is None:
        spec["task"] = TASK_OF_STAGE[st]
    _choice(spec, "task", "task", ["ce", "kd"])
    _str(spec, "model", "model")
    if not isinstance(spec["sizes"], dict):
        raise _err("sizes", f"expected an object (the config's model: section), got {spec['sizes']!r}")
    if not isinstance(spec["switches"], dict):
        raise _err("switches", f"expected an object of model switches, got {spec['switches']!r}")
    _int(spec, "seed", "seed")
    dev = spec["device"]
    if not isinstance(dev, str) or not re.fullmatch(r"cpu|cuda(:[0-9]+)?", dev):
        raise _err("device", f"expected cpu, cuda or cuda:N, got {dev!r}")
    _int(spec, "threads", "threads", minimum=1)
    if not isinstance(spec["bf16"], bool):
        raise _err("bf16", f"expected true or false, got {spec['bf16']!r}")
    _int(spec, "checkpoint_every", "checkpoint_every", minimum=1)
    _int(spec, "log_every", "log_every", minimum=1)
    _choice(spec, "select", "select", ["best", "last"])
    if spec["init_from"] is not None:
        raise _err("init_from", "initialising from another checkpoint is not supported yet "
                   "(it comes with stage 3); use null")

    # data
    d = spec["data"]
    _str(d, "train", "data.train")
    _str(d, "valid", "data.valid", nullable=True)
    _str(d, "features", "data.features", nullable=True)
    _choice(d, "src_field", "data.src_field", ["en", "src"])
    _choice(d, "tgt_field", "data.tgt_field", ["sum", "en"])
    _str(d, "src_vocab", "data.src_vocab")
    _str(d, "tgt_vocab", "data.tgt_vocab")
    _int(d, "max_video_rows", "data.max_video_rows", minimum=1)
    _choice(d, "missing_features", "data.missing_features", ["skip", "error"])
    _int(d, "workers", "data.workers", minimum=0)
    if d["valid"] is None and spec["select"] == "best":
        raise _err("data.valid", "null, but select is 'best' (selection by validation loss needs a "
                   "validation split; give one or set select: last)")

    # optim
    o = spec["optim"]
    _num(o, "lr", "optim.lr", positive=True)
    _int(o, "warmup_steps", "optim.warmup_steps", minimum=0)
    _int(o, "epochs", "optim.epochs", minimum=1)
    _int(o, "max_steps", "optim.max_steps", minimum=1, nullable=True)
    _int(o, "batch_size", "optim.batch_size", minimum=1, nullable=True)
    _int(o, "max_tokens", "optim.max_tokens", minimum=1, nullable=True)
    if o["batch_size"] is None and o["max_tokens"] is None:
        raise _err("optim.batch_size", "batch_size and max_tokens are both null; set at least one")
    _num(o, "clip_norm", "optim.clip_norm", nonneg=True)
    _num(o, "eps", "optim.eps", positive=True)
    _num(o, "weight_decay", "optim.weight_decay", nonneg=True)
    b = o["betas"]
    if (not isinstance(b, (list, tuple)) or len(b) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < 1 for x in b)):
        raise _err("optim.betas", f"expected two numbers in [0, 1), got {b!r}")
    o["betas"] = [float(x) for x in b]
    return spec


def numeric_diff(a: dict, b: dict) -> list[str]:
    """Dotted keys whose values differ between two specs, ignoring `NON_NUMERIC_KEYS`."""
    out: list[str] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if path in NON_NUMERIC_KEYS:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                walk(x.get(k), y.get(k), f"{path}.{k}" if path else str(k))
        elif x != y:
            out.append(path)

    walk(a, b, "")
    return out
