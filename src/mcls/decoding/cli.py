"""`mcls decode`: decode an encoded split with a trained checkpoint, write hypotheses.jsonl.

    mcls decode --checkpoint models/vdf/stage1/final.pt --split results/demo/encoded/test.parquet \
        --vocab results/demo/vocab/en.tsv --features results/demo/features/store.json \
        --references results/demo/data/test.parquet --out eval/vdf/test/hypotheses.jsonl

One JSON object per line, in split order: {"id", "hypothesis", "reference"}.

Integration points (kept small on purpose): `load_checkpoint_model` (checkpoint -> model),
`read_examples` (split + features -> list[Example]); the search itself is `mcls.decoding.decode`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_text
from ..errors import DataError, McLSError
from .data import Example, ids_to_text, make_batch, read_vocab
from .search import decode

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="final.pt / last.pt / best.pt of `mcls train`")
    p.add_argument("--split", required=True, help="encoded split table (encoded/<split>.parquet)")
    p.add_argument("--vocab", required=True, help="target vocabulary vocab/en.tsv (ids -> words)")
    p.add_argument("--out", required=True, help="hypotheses.jsonl to write (atomically)")
    p.add_argument("--features", default=None, help="feature store (store.json or shard directory) or a directory of <id>.npy; needed by video models")
    p.add_argument("--references", default=None, help="split table data/<split>.parquet: references from its `summary` column (default: the encoded `sum` ids, decoded)")
    p.add_argument("--src-field", choices=["en", "src"], default=None, help="encoded field fed to the text encoder (default: the checkpoint's training spec, else src)")
    p.add_argument("--mode", choices=["beam", "greedy"], default="beam", help="beam search (SPEC §5) or greedy (the published generator's behaviour)")
    p.add_argument("--beam", type=int, default=6)
    p.add_argument("--lenpen", type=float, default=1.0, help="score = sum log p / length^lenpen")
    p.add_argument("--max-len", type=int, default=200, help="tokens before the forced EOS")
    p.add_argument("--min-len", type=int, default=1, help="tokens before EOS is allowed (1: no empty summaries)")
    p.add_argument("--no-stop-early", dest="stop_early", action="store_false",
                   help="beam: go on after `beam` hypotheses ended while a live one can still beat them (slower)")
    p.add_argument("--batch-size", type=int, default=16, help="inputs decoded together")
    p.add_argument("--max-video-rows", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--limit", type=int, default=None, help="decode only the first N rows")


def load_checkpoint_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint (training format, or any dict with `model` and a stored
    model config), load weights strictly, eval mode."""
    from ..training.checkpoint import model_from_checkpoint

    path = Path(path)
    if not path.exists():
        raise McLSError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise McLSError(f"checkpoint {path} cannot be read with weights_only=True: {exc}") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise McLSError(f"{path} is not an mcls checkpoint (no 'model' state dict)")
    return model_from_checkpoint(obj, path).to(device).eval(), obj


class NpyDirectory:
    """Features as <dir>/<video_id>.npy (the How2 release layout)."""

    def __init__(self, path: Path):
        self.path = path

    def __contains__(self, video_id: str) -> bool:
        return (self.path / f"{video_id}.npy").exists()

    def get(self, video_id: str, max_rows: int = 1024) -> np.ndarray:
        return np.load(self.path / f"{video_id}.npy", mmap_mode="r")[:max_rows].astype(np.float32)


def open_features(path: str | Path):
    path = Path(path)
    if path.is_dir() and any(path.glob("*.npy")):
        return NpyDirectory(path)
    try:
        from ..video.store import FeatureStore  # the feature store (mcls.video.store)
    except ImportError as exc:
        raise McLSError(f"--features {path}: not a directory of .npy files and the feature store is unavailable ({exc})") from None
    return FeatureStore(path)


def read_references(path: str | Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["video_id", "summary"])
    return dict(zip(table.column("video_id").to_pylist(), table.column("summary").to_pylist()))


def read_examples(split: str | Path, *, src_field: str | None, features=None, references: dict | None = None,
                  vocab: list[str] | None = None, max_video_rows: int = 1024, limit: int | None = None) -> list[Example]:
    """Examples of an encoded split: source ids from `src_field` (None: no text), video from
    `features` (None: no video), reference text from `references` or the decoded `sum` ids."""
    from ..encoded import EncodedSplit

    ds = EncodedSplit(split)
    n = len(ds) if limit is None else min(limit, len(ds))
    out = []
    for i in range(n):
        vid = ds.video_ids[i]
        src = ds.get(i, src_field).astype(np.int64) if src_field else None
        video = None
        if features is not None:
            if vid not in features:
                raise DataError(f"video {vid} of {split} has no features in the feature store")
            video = features.get(vid, max_rows=max_video_rows)
        if references is not None:
            if vid not in references:
                raise DataError(f"video {vid} of {split} has no reference summary in --references")
            ref = references[vid]
        else:
            ref = ids_to_text(ds.get(i, "sum"), vocab) if vocab is not None else None
        out.append(Example(vid, src, video, ref))
    return out


def decode_examples(model, examples: list[Example], *, batch_size: int = 16, device="cpu", **search) -> list[list[int]]:
    """Best hypothesis token ids per example (input order); batches grouped by input length."""
    def size(e):
        return (len(e.src) if e.src is not None else 0) + (len(e.video) if e.video is not None else 0)

    order = sorted(range(len(examples)), key=lambda i: -size(examples[i]))
    out: list[list[int] | None] = [None] * len(examples)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        batch = make_batch([examples[i] for i in idx], device=device)
        for i, hyp in zip(idx, decode(model, batch, **search)):
            out[i] = hyp.tokens
    return out  # type: ignore[return-value]


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    model, ckpt = load_checkpoint_model(args.checkpoint, args.device)
    cfg = model.config
    src_field = args.src_field or ((ckpt.get("spec") or {}).get("data") or {}).get("src_field") or "src"
    if not cfg.uses_text:
        src_field = None
    features = None
    if cfg.uses_video:
        if not args.features:
            raise McLSError(f"model {cfg.name!r} reads video: give --features")
        features = open_features(args.features)
    vocab = read_vocab(args.vocab)
    if len(vocab) != cfg.tgt_vocab:
        raise McLSError(f"--vocab {args.vocab} has {len(vocab)} tokens but the model's target vocabulary has {cfg.tgt_vocab}")
    refs = read_references(args.references) if args.references else None
    examples = read_examples(args.split, src_field=src_field, features=features, references=refs, vocab=vocab,
                             max_video_rows=args.max_video_rows, limit=args.limit)
    t0 = time.perf_counter()
    hyps = decode_examples(model, examples, batch_size=args.batch_size, device=args.device, mode=args.mode,
                           beam=args.beam, max_len=args.max_len, lenpen=args.lenpen, min_len=args.min_len,
                           stop_early=args.stop_early)
    dt = time.perf_counter() - t0
    lines = [json.dumps({"id": e.id, "hypothesis": ids_to_text(h, vocab), "reference": e.reference}, ensure_ascii=False)
             for e, h in zip(examples, hyps)]
    write_text(args.out, "".join(line + "\n" for line in lines))
    log.info("decoded %d inputs (%s, beam %d) in %.1f s (%.2f summaries/s) -> %s", len(examples), args.mode,
             args.beam, dt, len(examples) / max(dt, 1e-9), args.out)
    return 0
