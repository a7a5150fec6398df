# Config validation (before any job), paths, and the target list of `rule all`.
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

try:
    from mcls.config import validate as _validate
    from mcls.errors import ConfigError as _ConfigError
except ImportError as exc:  # the package is not installed in this Python
    raise WorkflowError(
        f"cannot import the mcls package ({exc}); run `make demo` / `make test` once to create .venv, "
        "then activate it (`source .venv/bin/activate`) or call .venv/bin/snakemake"
    )

try:
    _filled = _validate(dict(config))
except _ConfigError as exc:
    raise WorkflowError(str(exc))
config.clear()
config.update(_filled)

RUN = config["run"]
R = f"results/{RUN}"
SRC = config["data"]["src_lang"]
SPLITS = ["pretrain", "train", "val", "test"]
CONDA_ENV = "../../envs/mcls.yaml"
DEMO = config["data"]["demo"]["enabled"]


wildcard_constraints:
    split="pretrain|train|val|test",


def log_path(rule, name="job"):
    return f"{R}/logs/{rule}/{name}.log"


def data_root_inputs():
    """What ingest waits for: the generated demo corpus or the configured downloads."""
    if DEMO:
        return [config["data"]["root"]]
    return [d["dest"] for d in config["data"]["downloads"]]


def data_targets():
    return (
        [f"{R}/data/{s}.parquet" for s in SPLITS]
        + [f"{R}/stats/table1.md", f"{R}/stats/table2.md"]
        + [f"{R}/vocab/en.tsv", f"{R}/vocab/{SRC}.tsv"]
        + [f"{R}/encoded/{s}.parquet" for s in SPLITS]
    )


def final_targets():
    targets = data_targets()
    for extra in EXTRA_TARGETS:
        targets += extra()
    return targets


# Rule files append functions returning their targets (features, models, evaluations).
EXTRA_TARGETS = []


# ---- models (workflow/rules/models.smk) -------------------------------------------
from mcls.model.config import PRESETS as MODEL_PRESETS

TRAIN = config["train"]
DECODE = config["decode"]
MODELS = config["models"]
STORE = f"{R}/features/store.json" if config["features"]["source"] != "none" else None
TABLE_NO = {"pt": "3", "zh": "4"}[SRC]
LANG_TITLE = {"pt": "Pt", "zh": "Zh"}[SRC]
DISPLAY = {
    "vdf": "VDF", "ncls": "NCLS", "mt": "MT", "ha": "HA", "mffg": "MFFG", "s2s": "S2S",
    "videornn": "VideoRNN", "vdf-no-ffenc": "VDF w/o FF-Enc", "vdf-no-cfdec": "VDF w/o CF-Dec",
    "vdf-no-video": "VDF w/o video",
}
# Paper order of Table III (text, video, text+video; ablations last).
TABLE_ORDER = ["s2s", "ncls", "videornn", "mt", "ha", "mffg", "vdf", "vdf-no-ffenc", "vdf-no-cfdec", "vdf-no-video"]
# stage → which split trains it, which encoded field feeds the text encoder, and its seed
STAGES = {
    "stage1": {"stage": 1, "train": "pretrain", "src_field": "en", "seed": TRAIN["seeds"]["stage1"]},
    "mcls": {"stage": "mcls", "train": "train", "src_field": "src", "seed": config["seed"]},
}
STAGE1_MODELS = ["vdf"]


def uses_video(model):
    return MODEL_PRESETS[model]["video_encoder"] != "none"


def stage_models(stage):
    return STAGE1_MODELS if stage == "stage1" else MODELS


def train_spec(model, stage):
    st = STAGES[stage]
    src_vocab = "en" if st["src_field"] == "en" else SRC
    return {
        "stage": st["stage"],
        "model": model,
        "sizes": config["model"],
        # stage 1: one English embedding shared by encoder and decoder (the paper's 89.9 M form)
        "switches": {"share_src_tgt_embedding": True} if stage == "stage1" else {},
        "data": {
            "train": f"{R}/encoded/{st['train']}.parquet",
            "valid": f"{R}/encoded/val.parquet",
            "features": STORE if uses_video(model) else None,
            "src_field": st["src_field"],
            "tgt_field": "sum",
            "src_vocab": f"{R}/vocab/{src_vocab}.tsv",
            "tgt_vocab": f"{R}/vocab/en.tsv",
            "max_video_rows": config["features"]["max_rows"],
        },
        "optim": {
            **{k: TRAIN[k] for k in ("lr", "warmup_steps", "epochs", "max_steps", "batch_size", "max_tokens", "clip_norm")},
            **TRAIN["stages"].get(stage, {}),
        },
        "seed": st["seed"],
        "device": TRAIN["device"],
        "threads": TRAIN["threads"],
        "checkpoint_every": TRAIN["checkpoint_every"],
        "select": TRAIN["select"],
    }


def train_inputs(w):
    spec = train_spec(w.model, w.stage)
    d = spec["data"]
    inputs = {"train": d["train"], "valid": d["valid"], "src_vocab": d["src_vocab"], "tgt_vocab": d["tgt_vocab"]}
    if d["features"]:
        inputs["features"] = d["features"]
    return inputs


def decode_inputs(w):
    inputs = {
        "checkpoint": f"{R}/models/{w.model}/{w.stage}/final.pt",
        "split": f"{R}/encoded/{w.split}.parquet",
        "references": f"{R}/data/{w.split}.parquet",
        "vocab": f"{R}/vocab/en.tsv",
    }
    if uses_video(w.model):
        inputs["features"] = STORE
    return inputs


def table_models():
    return [m for m in TABLE_ORDER if m in MODELS]
