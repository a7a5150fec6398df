"""Result tables in the paper's layout, made from `metrics.json` files.

``mcls table --row "VDF=results/…/metrics.json" --row "NCLS=…" --title "…" --out table3``
writes ``table3.md`` and ``table3.tsv`` with the columns of the paper's Tables III–VI:
BLEU-1..4, ROUGE-1/2/L, METEOR (×100) and CIDEr (raw). A metric reported as unavailable
(e.g. METEOR without Java) is shown as ``n/a`` and its reason is listed under the table.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .atomic import write_text
from .errors import McLSError

log = logging.getLogger(__name__)

COLUMNS = [("BLEU-1", "bleu1"), ("BLEU-2", "bleu2"), ("BLEU-3", "bleu3"), ("BLEU-4", "bleu4"),
           ("ROUGE-1", "rouge1"), ("ROUGE-2", "rouge2"), ("ROUGE-L", "rougeL"),
           ("METEOR", "meteor"), ("CIDEr", "cider")]


def _fmt(key: str, value) -> str:
    if isinstance(value, (int, float)):
        return f"{value:.3f}" if key == "cider" else f"{value:.2f}"
    return "n/a"


def load_rows(rows: list[str]) -> list[tuple[str, dict]]:
    out = []
    for item in rows:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise McLSError(f"--row {item!r}: expected NAME=metrics.json")
        p = Path(path)
        if not p.exists():
            raise McLSError(f"--row {name}: metrics file {p} not found (run its evaluate job first)")
        try:
            metrics = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise McLSError(f"--row {name}: {p} is not JSON ({exc})") from None
        missing = [k for _, k in COLUMNS if k not in metrics]
        if missing:
            raise McLSError(f"--row {name}: {p} lacks metrics {missing}")
        out.append((name, metrics))
    return out


def render(rows: list[tuple[str, dict]], title: str) -> tuple[str, str]:
    header = ["Method"] + [c for c, _ in COLUMNS]
    body = [[name] + [_fmt(k, m[k]) for _, k in COLUMNS] for name, m in rows]
    best = {}
    for j, (_, k) in enumerate(COLUMNS, 1):
        vals = [(m[k], i) for i, (_, m) in enumerate(rows) if isinstance(m[k], (int, float))]
        if vals:
            best[j] = max(vals)[1]
    md_rows = [[f"**{cell}**" if j and best.get(j) == i else cell for j, cell in enumerate(r)] for i, r in enumerate(body)]
    md = [f"{title}\n", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(COLUMNS)) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in md_rows]
    notes = sorted({f"{name}: {k} {m[k]}" for name, m in rows for _, k in COLUMNS if not isinstance(m[k], (int, float))})
    if notes:
        md += ["", *(f"- {n}" for n in notes)]
    md.append("\nBest value of each column in bold. BLEU/ROUGE/METEOR ×100, CIDEr raw (How2 scorer).")
    tsv = "\n".join("\t".join(r) for r in [header, *body]) + "\n"
    return "\n".join(md) + "\n", tsv


def add_arguments(p) -> None:
    p.add_argument("--row", action="append", required=True, help="NAME=path/to/metrics.json (repeatable, in order)")
    p.add_argument("--title", default="Results")
    p.add_argument("--out", required=True, help="output path without extension (.md and .tsv are written)")


def main(args) -> int:
    rows = load_rows(args.row)
    md, tsv = render(rows, args.title)
    out = Path(args.out)
    write_text(out.with_suffix(".tsv"), tsv)
    write_text(out.with_suffix(".md"), md)
    log.info("wrote %s.{md,tsv} (%d rows)", out, len(rows))
    return 0
