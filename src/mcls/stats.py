"""Dataset statistics in the form of the paper's Table I (videos per split) and Table II
(per text kind: number of texts, average/max/min length in tokens, sentences, words).

Lengths are counted in tokens of the language's tokenizer (whitespace for En/Pt, characters
for Zh — so the Zh "words" are characters, as in the paper's Table II). Sentences are counted
by sentence-final punctuation tokens (``. ? ! 。 ？ ！``) plus an unterminated tail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from .atomic import write_text
from .errors import DataError
from .text import count_sentences, tokenizer_for

log = logging.getLogger(__name__)

LANG_NAMES = {"pt": "Pt", "zh": "Zh", "en": "En"}


@dataclass
class TextStats:
    texts: int = 0
    tokens: int = 0
    max_len: int = 0
    min_len: int | None = None
    sentences: int = 0
    max_sent: int = 0
    min_sent: int | None = None
    lengths: list[int] = field(default_factory=list, repr=False)

    def add(self, tokens: list[str]) -> None:
        n, s = len(tokens), count_sentences(tokens)
        self.texts += 1
        self.tokens += n
        self.max_len = max(self.max_len, n)
        self.min_len = n if self.min_len is None else min(self.min_len, n)
        self.sentences += s
        self.max_sent = max(self.max_sent, s)
        self.min_sent = s if self.min_sent is None else min(self.min_sent, s)

    def rows(self) -> list[tuple[str, str]]:
        avg = lambda a, b: f"{a / b:.1f}" if b else "-"  # noqa: E731
        return [
            ("Total number of texts", f"{self.texts:,}"),
            ("Average text length", avg(self.tokens, self.texts)),
            ("Maximum text length", f"{self.max_len:,}"),
            ("Minimum text length", f"{self.min_len or 0:,}"),
            ("Total number of sentences", f"{self.sentences:,}"),
            ("Average number of sentences", avg(self.sentences, self.texts)),
            ("Maximum number of sentences", f"{self.max_sent:,}"),
            ("Minimum number of sentences", f"{self.min_sent or 0:,}"),
            ("Total number of words", f"{self.tokens:,}"),
        ]


def _table_stats(paths: list[Path], column: str, lang: str) -> TextStats:
    tok = tokenizer_for(lang)
    st = TextStats()
    for p in paths:
        pf = pq.ParquetFile(p)
        for batch in pf.iter_batches(columns=[column], batch_size=8192):
            for text in batch.column(0).to_pylist():
                if text is not None:
                    st.add(tok(text))
    return st


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _tsv(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join("\t".join(r) for r in [header, *rows]) + "\n"


def compute(data_dir: Path, src_lang: str) -> tuple[tuple[list[str], list[list[str]]], tuple[list[str], list[list[str]]]]:
    tables = {s: data_dir / f"{s}.parquet" for s in ("pretrain", "train", "val", "test")}
    missing = [str(p) for p in tables.values() if not p.exists()]
    if missing:
        raise DataError(f"split tables missing: {', '.join(missing)} (run `mcls ingest` first)")
    n = {s: pq.ParquetFile(p).metadata.num_rows for s, p in tables.items()}
    src = LANG_NAMES[src_lang]
    t1_header = ["Partition", "Training", "Validation", "Test"]
    t1_rows = [
        [f"How2-MCLS: Video+{src}2En", f"{n['train']:,}", f"{n['val']:,}", f"{n['test']:,}"],
        ["How2-MS: Video+En2En", f"{n['pretrain']:,}", "-", "-"],
    ]
    mcls = [tables[s] for s in ("train", "val", "test")]
    kinds = [
        (f"{src} transcript (MCLS)", _table_stats(mcls, "transcript_src", src_lang)),
        ("En transcript (MCLS)", _table_stats(mcls, "transcript_en", "en")),
        ("Summary (MCLS)", _table_stats(mcls, "summary", "en")),
        ("En transcript (MS)", _table_stats([tables["pretrain"]], "transcript_en", "en")),
        ("Summary (MS)", _table_stats([tables["pretrain"]], "summary", "en")),
    ]
    t2_header = [""] + [k for k, _ in kinds]
    per_kind = [st.rows() for _, st in kinds]
    t2_rows = [[label] + [r[i][1] for r in per_kind] for i, (label, _) in enumerate(per_kind[0])]
    return (t1_header, t1_rows), (t2_header, t2_rows)


def write(data_dir: Path, src_lang: str, out_dir: Path) -> None:
    (h1, r1), (h2, r2) = compute(data_dir, src_lang)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "table1.tsv", _tsv(h1, r1))
    write_text(out_dir / "table1.md", "Table I: videos per split\n\n" + _md_table(h1, r1))
    write_text(out_dir / "table2.tsv", _tsv(h2, r2))
    write_text(out_dir / "table2.md", "Table II: corpus statistics (lengths in tokens)\n\n" + _md_table(h2, r2))


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="directory of split tables (data/)")
    p.add_argument("--src-lang", required=True, choices=["pt", "zh"])
    p.add_argument("--out", required=True, help="output directory for table1/table2 .tsv/.md")


def main(args) -> int:
    write(Path(args.data), args.src_lang, Path(args.out))
    log.info("wrote Tables I and II to %s", args.out)
    return 0
