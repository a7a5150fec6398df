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
