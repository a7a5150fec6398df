"""Training: datasets, bucketing sampler, one trainer for every stage, checkpoints, DDP.

    from mcls.training import Trainer, parse_spec
    Trainer(spec, "results/demo/models/vdf/stage1").run()

See docs/training.md for the spec keys and the outputs.
"""

from .checkpoint import load as load_checkpoint
from .checkpoint import load_model
from .data import BucketSampler, SplitData, collate, shard
from .loop import Trainer, train
from .optim import WarmupLinearDecay, build_optimizer, lr_factor
from .spec import parse_spec
from .tasks import TASKS, CrossEntropyTask, cross_entropy_sum

__all__ = [
    "BucketSampler", "CrossEntropyTask", "SplitData", "TASKS", "Trainer", "WarmupLinearDecay",
    "build_optimizer", "collate", "cross_entropy_sum", "load_checkpoint", "load_model", "lr_factor",
    "parse_spec", "shard", "train",
]
