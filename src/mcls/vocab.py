"""Vocabularies and encoding of split tables into token-id parquet (SPEC §1.2).

A vocabulary file is ``token<TAB>count`` per line; the id of a token is its line index.
The first three lines are the specials ``<pad>``=0, ``</s>``=1 (EOS, also BOS for teacher
forcing) and ``<unk>``=2. Regular tokens follow by descending count, ties broken by the
token string, so the file is a deterministic function of the training text.

Encoding appends EOS to every sequence and truncates to a maximum length *keeping* EOS
(the published code drops it). Encoded tables store ``list<int32>`` columns plus int32
length columns (see docs/DESIGN.md) and are written row group by row group, so memory stays
flat in the corpus size.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import code_version
from .atomic import atomic_path
from .errors import DataError
from .text import tokenizer_for

log = logging.getLogger(__name__)

PAD, EOS, UNK = 0, 1, 2
SPECIALS = ("<pad>", "</s>", "<unk>")
ROW_GROUP = 4096


class Vocab:
    """Token ↔ id mapping with the mcls specials at ids 0, 1, 2."""

    def __init__(self, tokens: Sequence[str], counts: Sequence[int] | None = None, lang: str = "en"):
        if tuple(tokens[:3]) != SPECIALS:
            raise DataError(f"vocabulary must start with {SPECIALS}, got {tuple(tokens[:3])}")
        self.itos = list(tokens)
        self.counts = list(counts) if counts is not None else [0] * len(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = [t for t, c in Counter(self.itos).items() if c > 1][:5]
            raise DataError(f"vocabulary has duplicate tokens {dup}")
        self.lang = lang
        self.tokenize = tokenizer_for(lang)

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, texts: Iterable[str], lang: str, min_count: int = 1) -> "Vocab":
        tok = tokenizer_for(lang)
        counter: Counter[str] = Counter()
        for text in texts:
            counter.update(tok(text))
        for s in SPECIALS:
            counter.pop(s, None)
        kept = sorted(((t, c) for t, c in counter.items() if c >= min_count), key=lambda tc: (-tc[1], tc[0]))
        tokens = list(SPECIALS) + [t for t, _ in kept]
        counts = [0, 0, 0] + [c for _, c in kept]
        return cls(tokens, counts, lang)

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                for t, c in zip(self.itos, self.counts):
                    fh.write(f"{t}\t{c}\n")

    @classmethod
    def load(cls, path: str | Path, lang: str | None = None) -> "Vocab":
        path = Path(path)
        if not path.exists():
            raise DataError(f"vocabulary file {path} not found (run `mcls vocab` first)")
        tokens, counts = [], []
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 2 or not parts[1].isdigit():
                    raise DataError(f"{path}:{lineno}: expected 'token<TAB>count', got {line.rstrip()!r}")
                tokens.append(parts[0])
                counts.append(int(parts[1]))
        return cls(tokens, counts, lang or path.stem)

    def encode(self, text: str, max_len: int | None = None) -> np.ndarray:
        """Token ids of `text` followed by EOS; truncated to `max_len` keeping EOS last."""
        stoi = self.stoi
        ids = [stoi.get(t, UNK) for t in self.tokenize(text)]
        if max_len is not None and len(ids) > max_len - 1:
            ids = ids[: max_len - 1]
        ids.append(EOS)
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int], strip_eos: bool = True) -> list[str]:
        out = []
        for i in ids:
            i = int(i)
            if strip_eos and i == EOS:
                break
            if i == PAD:
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return out


# ----------------------------------------------------------------------------------------
# building vocabularies from split tables

def iter_column(path: str | Path, column: str, batch_rows: int = 8192) -> Iterator[str]:
    """Yield the non-null strings of one column of a parquet table, batch by batch."""
    pf = pq.ParquetFile(path)
    if column not in pf.schema_arrow.names:
        raise DataError(f"{path}: no column {column!r} (columns: {pf.schema_arrow.names})")
    for batch in pf.iter_batches(batch_size=batch_rows, columns=[column]):
        for v in batch.column(0).to_pylist():
            if v is not None:
                yield v


def build_vocab(tables: Sequence[str | Path], columns: Sequence[str], lang: str, min_count: int) -> Vocab:
    def texts():
        for t in tables:
            for c in columns:
                yield from iter_column(t, c)

    return Vocab.build(texts(), lang, min_count)


# ----------------------------------------------------------------------------------------
# encoding split tables

ENCODED_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("en", pa.list_(pa.int32())),
    ("src", pa.list_(pa.int32())),
    ("sum", pa.list_(pa.int32())),
    ("en_len", pa.int32()),
    ("src_len", pa.int32()),
    ("sum_len", pa.int32()),
])


def _encode_column(vocab: Vocab, texts: list, max_len: int) -> tuple[pa.Array, np.ndarray]:
    offsets = np.zeros(len(texts) + 1, dtype=np.int32)
    chunks = []
    valid = np.ones(len(texts), dtype=bool)
    lens = np.zeros(len(texts), dtype=np.int32)
    for i, text in enumerate(texts):
        if text is None:
            valid[i] = False
            offsets[i + 1] = offsets[i]
            continue
        ids = vocab.encode(text, max_len)
        chunks.append(ids)
        lens[i] = len(ids)
        offsets[i + 1] = offsets[i] + len(ids)
    values = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    mask = None if valid.all() else pa.array(~valid)
    arr = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.int32()), mask=mask)
    return arr, lens


def encode_table(
    table_path: str | Path,
    out_path: str | Path,
    en_vocab: Vocab,
    src_vocab: Vocab | None,
    max_text_tokens: int = 800,
    max_summary_tokens: int = 800,
) -> int:
    """Encode one split table; returns the number of rows written."""
    pf = pq.ParquetFile(table_path)
    meta = {k.decode(): v.decode() for k, v in (pf.schema_arrow.metadata or {}).items()}
    meta.update({
        "mcls.encoded.en_vocab_size": str(len(en_vocab)),
        "mcls.encoded.src_vocab_size": str(len(src_vocab)) if src_vocab else "0",
        "mcls.encoded.max_text_tokens": str(max_text_tokens),
        "mcls.encoded.max_summary_tokens": str(max_summary_tokens),
        "mcls.code_version": code_version(),
    })
    schema = ENCODED_SCHEMA.with_metadata(meta)
    n = 0
    with atomic_path(out_path, suffix=".parquet") as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in pf.iter_batches(batch_size=ROW_GROUP, columns=["video_id", "transcript_en", "transcript_src", "summary"]):
                cols = batch.to_pydict()
                en, en_len = _encode_column(en_vocab, cols["transcript_en"], max_text_tokens)
                srcs = cols["transcript_src"]
                if src_vocab is None or all(s is None for s in srcs):
                    src = pa.nulls(len(srcs), type=pa.list_(pa.int32()))
                    src_len = np.zeros(len(srcs), dtype=np.int32)
                else:
                    src, src_len = _encode_column(src_vocab, srcs, max_text_tokens)
                summ, sum_len = _encode_column(en_vocab, cols["summary"], max_summary_tokens)
                out = pa.Table.from_arrays(
                    [pa.array(cols["video_id"], pa.string()), en, src, summ,
                     pa.array(en_len), pa.array(src_len), pa.array(sum_len)],
                    schema=schema,
                )
                writer.write_table(out, row_group_size=ROW_GROUP)
                n += len(srcs)
    return n


# ----------------------------------------------------------------------------------------
# CLI

def vocab_arguments(p) -> None:
    p.add_argument("--tables", nargs="+", required=True, help="split tables (data/<split>.parquet)")
    p.add_argument("--columns", nargs="+", required=True, help="text columns, e.g. transcript_en summary")
    p.add_argument("--lang", required=True, choices=["en", "pt", "zh"])
    p.add_argument("--min-count", type=int, default=1)
    p.add_argument("--out", required=True, help="vocabulary TSV to write")


def vocab_main(args) -> int:
    if args.min_count < 1:
        raise DataError(f"--min-count must be >= 1, got {args.min_count}")
    v = build_vocab(args.tables, args.columns, args.lang, args.min_count)
    v.save(args.out)
    log.info("vocabulary %s: %d entries (min count %d) from %s", args.out, len(v), args.min_count, ", ".join(map(str, args.tables)))
    return 0


def encode_arguments(p) -> None:
    p.add_argument("--table", required=True, help="split table to encode")
    p.add_argument("--en-vocab", required=True)
    p.add_argument("--src-vocab", default=None)
    p.add_argument("--src-lang", default=None, choices=["pt", "zh"])
    p.add_argument("--max-text-tokens", type=int, default=800)
    p.add_argument("--max-summary-tokens", type=int, default=800)
    p.add_argument("--out", required=True)


def encode_main(args) -> int:
    en = Vocab.load(args.en_vocab, "en")
    src = Vocab.load(args.src_vocab, args.src_lang or Path(args.src_vocab).stem) if args.src_vocab else None
    n = encode_table(args.table, args.out, en, src, args.max_text_tokens, args.max_summary_tokens)
    log.info("encoded %d rows of %s -> %s", n, args.table, args.out)
    return 0
