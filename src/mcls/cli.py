"""`mcls` command line: one sub-command per pipeline step; Snakemake rules call these.

The table below is the whole registry: each sub-command names the module and the two functions
that define its arguments and run it. Modules are imported only when their command runs, so
`mcls ingest` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import McLSError

# name: (module, add-arguments function, run function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "check-config": ("mcls.config", "add_arguments", "main", "validate a config file against the schema"),
    "download": ("mcls.download", "add_arguments", "main", "fetch/verify/unpack configured data files"),
    "demo-corpus": ("mcls.democorpus", "add_arguments", "main", "generate the embedded demo corpus (How2-MCLS layout, real mp4s)"),
    "ingest": ("mcls.ingest", "add_arguments", "main", "read a How2 layout and write one parquet table per split"),
    "stats": ("mcls.stats", "add_arguments", "main", "write the statistics of the paper's Tables I and II"),
    "vocab": ("mcls.vocab", "vocab_arguments", "vocab_main", "build a vocabulary from split tables"),
    "encode": ("mcls.vocab", "encode_arguments", "encode_main", "encode split tables to list<int32> parquet"),
    "extract": ("mcls.video.cli", "extract_arguments", "extract_main", "extract 3D-CNN video features into the feature store"),
    "import-features": ("mcls.video.cli", "import_arguments", "import_main", "import precomputed How2 .npy features into the feature store"),
    "merge-features": ("mcls.video.cli", "merge_arguments", "merge_main", "merge feature-store shards into one index"),
    "train": ("mcls.training.cli", "add_arguments", "main", "train one stage of one model from a stage spec"),
    "decode": ("mcls.decoding.cli", "add_arguments", "main", "decode a split with a trained checkpoint (beam or greedy)"),
    "evaluate": ("mcls.metrics.cli", "add_arguments", "main", "score hypotheses against references (How2 scorer metrics)"),
    "table": ("mcls.tables", "add_arguments", "main", "make a results table (paper layout) from metrics.json files"),
    "summarize": ("mcls.summarize", "add_arguments", "main", "summarize one transcript + video with a trained model"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcls", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, args_fn, _run_fn, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if only is None or name == only:
            getattr(importlib.import_module(module), args_fn)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only import the module of the command being run (help for all commands stays cheap).
    only = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 1
    module, _args_fn, run_fn, _help = COMMANDS[args.command]
    try:
        rc = getattr(importlib.import_module(module), run_fn)(args)
    except McLSError as exc:
        print(f"mcls {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
