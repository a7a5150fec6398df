"""``mcls extract``, ``mcls import-features`` and ``mcls merge-features``.

    mcls extract --videos DIR|LIST --out STORE [--backbone resnext101] [--checkpoint FILE]
    mcls extract --table data/train.parquet data/val.parquet --shard 0 --num-shards 4 \
                 --out features/shards/shard-00000-of-00004.parquet --failures features/failures/…tsv
    mcls import-features --npy-dir video_action_features --out STORE
    mcls merge-features --shards features/shards/*.parquet --out features/store.json

``--out``: a path ending in ``.parquet`` is the shard file itself; any other path is a store
directory that receives ``shards/shard-XXXXX-of-YYYYY.parquet`` and ``failures/…tsv`` — and,
when there is one shard, the merged ``store.json`` too (so ``FeatureStore(DIR)`` works at once).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..errors import McLSError

log = logging.getLogger(__name__)

# Kept here (not imported from .backbones) so that building the parser does not import torch;
# a test checks it against the settings table.
BACKBONE_NAMES = ("resnext101", "r3d_18", "mc3_18", "r2plus1d_18", "s3d")


def _add_inputs(p: argparse.ArgumentParser, npy: bool) -> None:
    g = p.add_argument_group("inputs (one of)")
    if npy:
        g.add_argument("--npy-dir", help="directory of <video_id>.npy feature files (How2 video_action_features)")
    else:
        g.add_argument("--videos", help="directory of video files (id = file stem), or a list file: one PATH or "
                                        "ID<TAB>PATH per line")
    g.add_argument("--table", nargs="+", metavar="PARQUET",
                   help="split tables (data/<split>.parquet): their video_id and media_path columns")
    s = p.add_argument_group("sharding")
    s.add_argument("--shard", type=int, default=0, help="which shard this job writes (0-based; default 0)")
    s.add_argument("--num-shards", type=int, default=1,
                   help="videos are assigned to shards by a stable hash of their id (sha1 mod N)")
    p.add_argument("--out", required=True, help="shard file (*.parquet) or store directory")
    p.add_argument("--failures", help="failure manifest TSV (default: <store>/failures/<shard>.tsv, or "
                                      "<out>.failures.tsv next to a .parquet --out)")
    p.add_argument("--max-failure-fraction", type=float, default=0.02,
                   help="fail the job when a larger share of videos fails (default 0.02)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _refs(args, npy: bool):
    from . import inputs

    given = [x for x in ((args.npy_dir if npy else args.videos), args.table) if x]
    flag = "--npy-dir" if npy else "--videos"
    if len(given) != 1:
        raise McLSError(f"give exactly one of {flag} and --table")
    if args.table:
        refs = inputs.from_tables(args.table)
    elif npy:
        refs = inputs.from_npy_dir(args.npy_dir)
    else:
        refs = inputs.from_videos_arg(args.videos)
    return inputs.select_shard(refs, args.shard, args.num_shards), len(refs)


def _outputs(args) -> tuple[Path, Path, Path | None]:
    """(shard file, failure manifest, store.json to write or None)."""
    from .store import shard_name

    out = Path(args.out)
    name = shard_name(args.shard, args.num_shards)
    if out.suffix == ".parquet":
        shard_file, store_json = out, None
        failures = Path(args.failures) if args.failures else out.with_name(out.stem + ".failures.tsv")
    else:
        shard_file = out / "shards" / f"{name}.parquet"
        failures = Path(args.failures) if args.failures else out / "failures" / f"{name}.tsv"
        store_json = out / "store.json" if args.num_shards == 1 else None
    return shard_file, failures, store_json


# --------------------------------------------------------------------------------------------
# mcls extract


def extract_arguments(p: argparse.ArgumentParser) -> None:
    from .clips import CLIP_RULES

    _add_inputs(p, npy=False)
    m = p.add_argument_group("model")
    m.add_argument("--backbone", default="resnext101", choices=list(BACKBONE_NAMES))
    m.add_argument("--checkpoint", help="weights file (resnext-101-kinetics.pth for resnext101; see docs/features.md)")
    m.add_argument("--torchvision-weights", action="store_true",
                   help="torchvision backbones without --checkpoint: download torchvision's Kinetics-400 weights")
    m.add_argument("--random-init-ok", action="store_true",
                   help="without weights, run with seeded random weights (recorded as weights=random)")
    m.add_argument("--seed", type=int, default=42, help="seed of the random weights (default 42)")
    m.add_argument("--batch-size", type=int, default=4, help="clips per forward pass (default 4)")
    m.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (CUDA runs under bf16 autocast)")
    m.add_argument("--no-bf16", action="store_true", help="on CUDA, run in fp32 instead of bf16 autocast")
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    d = p.add_argument_group("decoding")
    d.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: native rate)")
    d.add_argument("--clip-rule", default="default", choices=list(CLIP_RULES),
                   help="default: floor(n/16) clips from frame 0; reference: the 2018 extractor's rule")
    d.add_argument("--min-side", type=int, default=32, help="videos whose short side is smaller fail (default 32)")
    d.add_argument("--max-aspect", type=float, default=4.0, help="videos with a larger aspect ratio fail (default 4)")
    d.add_argument("--decode-workers", type=int, default=1, help="decoder threads (each runs one ffmpeg; default 1)")
    d.add_argument("--ffmpeg-threads", type=int, default=1, help="threads per ffmpeg decoder (0 = ffmpeg's choice)")
    p.add_argument("--report", help="also write the run's figures (clips/s, failures) to this JSON file")


def extract_main(args) -> int:
    import torch

    from ..atomic import write_json
    from .backbones import get_spec, load_backbone
    from .decode import DecodeSettings
    from .extract import ShardExtractor, store_metadata
    from .store import merge_shards

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch_size < 1:
        raise McLSError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.fps is not None and args.fps <= 0:
        raise McLSError(f"--fps must be > 0, got {args.fps}")
    refs, n_all = _refs(args, npy=False)
    shard_file, failures, store_json = _outputs(args)
    spec = get_spec(args.backbone)
    log.info("shard %d/%d: %d of %d videos → %s", args.shard, args.num_shards, len(refs), n_all, shard_file)
    model = load_backbone(args.backbone, checkpoint=args.checkpoint, torchvision_weights=args.torchvision_weights,
                          random_init_ok=args.random_init_ok, seed=args.seed, device=args.device,
                          bf16=not args.no_bf16)
    settings = DecodeSettings(preprocess=spec.preprocess, fps=args.fps, clip_rule=args.clip_rule,
                              min_side=args.min_side, max_aspect=args.max_aspect, ffmpeg_threads=args.ffmpeg_threads)
    meta = store_metadata(model, settings, batch_size=args.batch_size, device=args.device, shard=args.shard,
                          num_shards=args.num_shards)
    extractor = ShardExtractor(model, settings, batch_size=args.batch_size, decode_workers=args.decode_workers,
                               progress=not args.no_progress)
    report = extractor.run(refs, shard_file, failures, metadata=meta, max_failure_fraction=args.max_failure_fraction)
    if store_json is not None:
        merge_shards([shard_file], store_json)
    summary = report.as_dict() | {"shard": shard_file.as_posix(), "failure_manifest": failures.as_posix()}
    if args.report:
        write_json(args.report, summary)
    print(json.dumps(summary), file=sys.stderr)
    if model.weights.get("weights") == "random":
        log.warning("the features in %s come from RANDOM weights (weights=random in the store metadata)", shard_file)
    return 0


# --------------------------------------------------------------------------------------------
# mcls import-features


def import_arguments(p: argparse.ArgumentParser) -> None:
    _add_inputs(p, npy=True)
    p.add_argument("--dim", type=int, default=None, help="expected feature dimension (default: the first file's)")
    p.add_argument("--clip-len", type=int, default=16, help="frames per feature row in the source (How2: 16)")


def import_main(args) -> int:
    from .. import code_version
    from .store import import_npy_shard, merge_shards

    refs, n_all = _refs(args, npy=True)
    shard_file, failures, store_json = _outputs(args)
    meta = {"source": "import", "backbone": "resnext101", "weights": "how2-release",
            "weights_info": {"weights": "how2-release", "note": "precomputed How2 ResNeXt-101 3D (Kinetics) features"},
            "preprocessing": {"clip_len": args.clip_len}, "clip_len": args.clip_len, "clip_rule": "unknown",
            "code_version": code_version(), "shard": args.shard, "num_shards": args.num_shards}
    report = import_npy_shard(refs, shard_file, failures, metadata=meta, max_failure_fraction=args.max_failure_fraction,
                              dim=args.dim, clip_len=args.clip_len, progress=not args.no_progress)
    if store_json is not None:
        merge_shards([shard_file], store_json)
    print(json.dumps(report | {"shard": shard_file.as_posix(), "of_videos": n_all}), file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# mcls merge-features


def merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", nargs="+", required=True, help="shard files (*.parquet)")
    p.add_argument("--out", required=True, help="merged index to write (features/store.json)")
    p.add_argument("--failures-out", help="also write every shard's failures as one TSV manifest")


def merge_main(args) -> int:
    from .failures import FailureManifest, FailureRecord
    from .store import merge_shards

    doc, failures = merge_shards(args.shards, args.out)
    if args.failures_out:
        FailureManifest([FailureRecord.from_dict(f) for f in sorted(failures, key=lambda f: f["video_id"])]).write(
            args.failures_out)
    print(json.dumps({"store": args.out, "videos": doc["num_videos"], "rows": doc["num_rows"], "dim": doc["dim"],
                      "failed": len(failures), "weights": doc["metadata"].get("weights")}), file=sys.stderr)
    return 0
