"""`mcls evaluate`: score hypotheses against references with the How2 scorer's metrics.

    mcls evaluate --hyp hyp.txt --ref ref.txt [--ref ref2.txt …] [--out metrics.json] [--no-meteor]
    mcls evaluate --jsonl hypotheses.jsonl [--out metrics.json] [--no-meteor]

Plain-text files hold one segment per line (several --ref files = several references per
segment). A hypotheses.jsonl line is {"id", "hypothesis", "reference"} where "reference" is a
string or a list of strings. Prints one JSON object on one line with the keys of
`mcls.metrics.KEYS`; `--out` also writes it atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from ..atomic import write_json
from ..errors import DataError
from . import KEYS, score

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hyp", type=Path, metavar="FILE", help="hypotheses, one segment per line")
    p.add_argument("--ref", type=Path, nargs="+", metavar="FILE",
                   help="references, one segment per line, aligned with --hyp (repeat files for several references)")
    p.add_argument("--jsonl", type=Path, metavar="FILE",
                   help='hypotheses.jsonl from mcls decode: lines {"id", "hypothesis", "reference"}')
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON object here (atomically)")
    p.add_argument("--no-meteor", action="store_true",
                   help='skip the METEOR jar (~8 s JVM start, ~1.2 GB); meteor is then "unavailable: disabled"')


def read_lines(path: Path) -> list[str]:
    """Segments of a plain-text file: one per '\\n'-terminated line (only '\\n' splits; '\\r' dropped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    if not text.strip():
        raise DataError(f"{path} is empty: nothing to score")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_text_pair(hyp: Path, refs: list[Path]) -> tuple[list[str], list[list[str]]]:
    """Hypotheses and per-segment reference lists from aligned plain-text files."""
    hyps = read_lines(hyp)
    columns = [read_lines(r) for r in refs]
    for path, col in zip(refs, columns):
        if len(col) != len(hyps):
            raise DataError(f"line counts differ: {hyp} has {len(hyps)} lines but {path} has {len(col)}; "
                            "hypotheses and references must be aligned one segment per line")
    for path, col in zip(refs, columns):
        for i, line in enumerate(col):
            if not line.split():
                raise DataError(f"{path}: line {i + 1} is an empty reference")
    return hyps, [list(seg) for seg in zip(*columns)]


def read_jsonl(path: Path) -> tuple[list[str], list[list[str]]]:
    """Hypotheses and reference lists from a hypotheses.jsonl file (ids must be unique)."""
    hyps: list[str] = []
    refs: list[list[str]] = []
    seen: dict[str, int] = {}
    for no, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {no} is not JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not {"id", "hypothesis", "reference"} <= obj.keys():
            raise DataError(f'{path}: line {no} must be an object with keys "id", "hypothesis", "reference"')
        vid, hyp, ref = str(obj["id"]), obj["hypothesis"], obj["reference"]
        if vid in seen:
            raise DataError(f"{path}: id {vid!r} on line {no} already appeared on line {seen[vid]}")
        seen[vid] = no
        ref = [ref] if isinstance(ref, str) else ref
        if not isinstance(hyp, str) or not isinstance(ref, list) or not ref \
                or not all(isinstance(r, str) and r.split() for r in ref):
            raise DataError(f"{path}: line {no} (id {vid!r}): \"hypothesis\" must be a string and "
                            "\"reference\" a non-empty string or list of non-empty strings")
        hyps.append(hyp)
        refs.append(ref)
    if not hyps:
        raise DataError(f"{path} has no segments: nothing to score")
    return hyps, refs


def main(args: argparse.Namespace) -> int:
    if args.jsonl is not None:
        if args.hyp is not None or args.ref is not None:
            raise DataError("give either --jsonl or --hyp/--ref, not both")
        hyps, refs = read_jsonl(args.jsonl)
        names = {"hyp_name": str(args.jsonl), "ref_name": str(args.jsonl)}
    elif args.hyp is not None and args.ref is not None:
        hyps, refs = read_text_pair(args.hyp, args.ref)
        names = {"hyp_name": str(args.hyp), "ref_name": ", ".join(map(str, args.ref))}
    else:
        raise DataError("nothing to score: give --hyp FILE --ref FILE, or --jsonl hypotheses.jsonl")

    start = time.perf_counter()
    result = score(hyps, refs, meteor=not args.no_meteor, **names)
    log.info("scored %d segments in %.1f s", len(hyps), time.perf_counter() - start)
    result = {k: result[k] for k in KEYS}
    if args.out is not None:
        write_json(args.out, result)
    print(json.dumps(result))
    return 0
