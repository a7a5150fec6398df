"""`mcls summarize`: the end-user command — one transcript (+ video) in, one English summary out.

    mcls summarize --checkpoint results/demo/models/vdf/mcls/final.pt \\
        --transcript talk.pt.txt --video talk.mp4

The checkpoint's training spec names the vocabularies and the feature store it was trained
with; the store's metadata names the backbone, its weights and the preprocessing, so a raw
video is turned into features exactly as the training videos were (same backbone, weights,
frame rate rule, clip rule). `--features` takes precomputed ``(k, D)`` features (.npy) instead.
Every path can be overridden (`--src-vocab`, `--tgt-vocab`, `--store`, `--backbone-checkpoint`).

Transcripts are expected in How2 form (lowercased, punctuation split off); raw text is
normalized that way unless `--pretokenized` is given.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np

from .errors import DataError, McLSError

log = logging.getLogger(__name__)

_PUNCT = re.compile(r"([.,!?;:()\[\]\"«»¿¡])")
_CLITIC = re.compile(r"(\w)('(?:s|m|re|ve|ll|d)\b|n't\b)")


def normalize_transcript(text: str, lang: str) -> str:
    """Raw text → How2 style: lowercase, punctuation as separate tokens, English clitics split
    ("i'm" → "i 'm"). Chinese is left as written (it is tokenized by character)."""
    if lang == "zh":
        return " ".join(text.split())
    text = text.lower().replace("’", "'")
    text = _PUNCT.sub(r" \1 ", text)
    if lang == "en":
        text = _CLITIC.sub(r"\1 \2", text)
    return " ".join(text.split())


def _spec_path(ckpt: dict, key: str) -> str | None:
    return ((ckpt.get("spec") or {}).get("data") or {}).get(key)


def video_features(video: str | Path, store_meta: dict, *, backbone_checkpoint: str | None = None,
                   device: str = "cpu", batch_size: int = 4) -> np.ndarray:
    """Extract (k, D) features of one video with the backbone/weights/preprocessing in `store_meta`."""
    from .video.backbones import load_backbone
    from .video.resnext import sha256_file
    from .video.decode import DecodeSettings, decode_clips, normalize
    from .video.failures import VideoFailure

    if store_meta.get("source") != "extract":
        raise McLSError(
            "the model was trained on imported (precomputed) features, whose extractor settings are not "
            "recorded; give --features with features made the same way (e.g. the How2 release's .npy)"
        )
    info = store_meta.get("weights_info") or {}
    weights = store_meta.get("weights")
    ckpt = backbone_checkpoint
    if weights and weights != "random":
        ckpt = ckpt or info.get("checkpoint")
        if not ckpt or not Path(ckpt).exists():
            raise McLSError(f"the training features used backbone weights {weights}; give --backbone-checkpoint "
                            f"(recorded path {info.get('checkpoint')!r} is not available)")
        if f"sha256:{sha256_file(Path(ckpt))}" != weights:
            raise McLSError(f"--backbone-checkpoint {ckpt} is not the checkpoint the training features were made with ({weights})")
    seed = (info.get("random_init") or {}).get("seed", 42)
    model = load_backbone(store_meta["backbone"], checkpoint=ckpt if weights != "random" else None,
                          random_init_ok=weights == "random", seed=seed, device=device)
    pre = store_meta.get("preprocessing") or {}
    settings = DecodeSettings(preprocess=model.spec.preprocess, fps=pre.get("fps"),
                              clip_rule=store_meta.get("clip_rule", "default"),
                              min_side=pre.get("min_side", 32), max_aspect=pre.get("max_aspect", 4.0))
    try:
        _plan, clips = decode_clips(str(video), settings)
    except VideoFailure as exc:
        raise McLSError(f"video {video}: {exc.reason}: {exc.message}") from None
    frames = [normalize(f, settings.preprocess) for _i, _s, _e, f in clips]
    feats = [model(np.stack(frames[i:i + batch_size])) for i in range(0, len(frames), batch_size)]
    return np.concatenate(feats).astype(np.float32)


def summarize(checkpoint: str | Path, transcript: str | None, *, features: np.ndarray | None = None,
              video: str | Path | None = None, src_vocab: str | None = None, tgt_vocab: str | None = None,
              store: str | None = None, backbone_checkpoint: str | None = None, pretokenized: bool = False,
              mode: str = "beam", beam: int = 6, lenpen: float = 1.0, max_len: int = 200,
              device: str = "cpu", max_video_rows: int = 1024) -> str:
    from .decoding import decode
    from .decoding.cli import load_checkpoint_model
    from .decoding.data import Example, make_batch
    from .vocab import Vocab

    model, ckpt = load_checkpoint_model(checkpoint, device)
    cfg = model.config
    src_ids = None
    if cfg.uses_text:
        if transcript is None:
            raise McLSError(f"model {cfg.name!r} reads a transcript: give --transcript")
        sv = src_vocab or _spec_path(ckpt, "src_vocab")
        if not sv:
            raise McLSError("the checkpoint names no source vocabulary: give --src-vocab")
        lang = Path(sv).stem if Path(sv).stem in ("en", "pt", "zh") else "en"
        vocab = Vocab.load(sv, lang)
        if len(vocab) != cfg.src_vocab:
            raise McLSError(f"source vocabulary {sv} has {len(vocab)} entries, the model expects {cfg.src_vocab}")
        text = transcript if pretokenized else normalize_transcript(transcript, lang)
        src_ids = vocab.encode(text, (ckpt.get("spec") or {}).get("data", {}).get("max_text_tokens", 800))
        unk = float(np.mean(src_ids[:-1] == 2)) if len(src_ids) > 1 else 0.0
        if unk > 0.5:
            log.warning("%.0f%% of the transcript's tokens are unknown to the model's %s vocabulary — is it in "
                        "the right language?", 100 * unk, lang)
    video_feats = None
    if cfg.uses_video:
        if features is not None:
            video_feats = np.asarray(features, dtype=np.float32)
        elif video is not None:
            store_path = store or _spec_path(ckpt, "features")
            if not store_path:
                raise McLSError("the checkpoint names no feature store: give --store (its metadata says how to extract)")
            from .video.store import FeatureStore

            video_feats = video_features(video, FeatureStore(store_path).metadata,
                                         backbone_checkpoint=backbone_checkpoint, device=device)
        else:
            raise McLSError(f"model {cfg.name!r} reads video: give --features NPY or --video FILE")
        if video_feats.ndim != 2 or video_feats.shape[1] != cfg.video_dim:
            raise McLSError(f"video features have shape {video_feats.shape}; the model expects (k, {cfg.video_dim})")
    tv = tgt_vocab or _spec_path(ckpt, "tgt_vocab")
    if not tv:
        raise McLSError("the checkpoint names no target vocabulary: give --tgt-vocab")
    out_vocab = Vocab.load(tv, "en")
    if len(out_vocab) != cfg.tgt_vocab:
        raise McLSError(f"target vocabulary {tv} has {len(out_vocab)} entries, the model expects {cfg.tgt_vocab}")
    batch = make_batch([Example("input", src_ids, video_feats)], device=device, max_video_rows=max_video_rows)
    hyp = decode(model, batch, mode=mode, beam=beam, lenpen=lenpen, max_len=max_len)[0]
    return " ".join(out_vocab.decode(hyp.tokens))


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help="a trained model (models/<model>/<stage>/final.pt)")
    p.add_argument("--transcript", default=None, help="transcript file in the source language ('-' = stdin)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--features", default=None, help="precomputed (k, D) video features (.npy)")
    g.add_argument("--video", default=None, help="a raw video: features are extracted as for training")
    p.add_argument("--src-vocab", default=None, help="default: the checkpoint's training vocabulary")
    p.add_argument("--tgt-vocab", default=None, help="default: the checkpoint's training vocabulary")
    p.add_argument("--store", default=None, help="feature store whose metadata says how to extract (default: the checkpoint's)")
    p.add_argument("--backbone-checkpoint", default=None, help="resnext-101-kinetics.pth when the features used it")
    p.add_argument("--pretokenized", action="store_true", help="the transcript is already in How2 form")
    p.add_argument("--mode", choices=["beam", "greedy"], default="beam")
    p.add_argument("--beam", type=int, default=6)
    p.add_argument("--lenpen", type=float, default=1.0)
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print {\"summary\": …} instead of plain text")


def main(args) -> int:
    transcript = None
    if args.transcript:
        if args.transcript == "-":
            transcript = sys.stdin.read()
        else:
            path = Path(args.transcript)
            if not path.exists():
                raise DataError(f"transcript file {path} not found")
            try:
                transcript = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"transcript {path} is not UTF-8 ({exc}); re-encode it") from None
        if not transcript.strip():
            raise DataError(f"transcript {args.transcript} is empty")
    feats = None
    if args.features:
        p = Path(args.features)
        if not p.exists():
            raise DataError(f"features file {p} not found")
        try:
            feats = np.load(p)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"features file {p} is not a readable .npy ({exc})") from None
    if args.video and not Path(args.video).exists():
        raise DataError(f"video file {args.video} not found")
    text = summarize(args.checkpoint, transcript, features=feats, video=args.video, src_vocab=args.src_vocab,
                     tgt_vocab=args.tgt_vocab, store=args.store, backbone_checkpoint=args.backbone_checkpoint,
                     pretokenized=args.pretokenized, mode=args.mode, beam=args.beam, lenpen=args.lenpen,
                     max_len=args.max_len, device=args.device)
    print(json.dumps({"summary": text}, ensure_ascii=False) if args.json else text)
    return 0
