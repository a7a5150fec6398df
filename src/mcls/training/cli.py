"""`mcls train --spec JSON_OR_FILE --out DIR`: train one stage of one model (see docs/training.md).

Run it under `torchrun --nproc_per_node N -m mcls.cli train …` for DDP. Re-running the same
command after a kill resumes from `DIR/checkpoints/last.pt`.
"""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--spec", required=True,
                   help="stage spec: a JSON object, or a JSON/YAML file holding one (keys: docs/training.md)")
    p.add_argument("--out", required=True, help="output directory (checkpoints/, train.jsonl, model.json, final.pt)")
    p.add_argument("--resume", choices=["auto", "require", "never"], default="auto",
                   help="auto (default): resume from OUT/checkpoints/last.pt when it was written with the same "
                        "spec, else start afresh (old checkpoints moved to checkpoints.stale/); require: fail "
                        "unless resuming; never: always start afresh")


def main(args) -> int:
    from .loop import Trainer
    from .spec import load_spec_arg

    Trainer(load_spec_arg(args.spec), args.out, resume=args.resume).run()
    return 0
