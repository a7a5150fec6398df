"""Video feature extraction: end-to-end vs model-only throughput, npy import, compression, random init.

    python bench/features.py [--videos 4] [--frames 192] [--size 640x360] [--fps 30]
                             [--batch-size 4] [--repeats 2] [--out bench/out/features]

1. **End-to-end vs model-only, same clips.** Generates ``--videos`` H.264 videos (How2-like
   640×360, 30 fps, yuv420p; coloured moving patterns), then times, alternately and
   ``--repeats`` times each (best kept):
     * model-only: the clips decoded once into memory beforehand, then only the forward passes
       of ResNeXt-101 3D in batches of ``--batch-size`` (channels_last_3d, inference_mode);
     * end-to-end: ``ShardExtractor.run`` on the video files — probe, ffmpeg decode + scale +
       crop, normalization, batching, model, parquet writing.
   The ratio end-to-end / model-only clips/s is the overhead of everything that is not the model
   (target ≥ 0.85 on 2 cores).
2. **npy import MB/s** on the real How2 sample (``../shared/how2-mcls-demo``; synthetic arrays of
   the same shape without it), best of 3.
3. **Compression** of the store's feature column on the real How2 features and on the random-init
   features of (1): uncompressed, zstd, zstd + BYTE_STREAM_SPLIT (levels 1, 3, 9), size ratio and
   write/read MB/s.
4. **Random-init features** on demo-like videos (4 colours × 4 patterns × 2 videos with
   different noise and motion, 160×120, 8 fps, like ``mcls demo-corpus``): statistics, and the
   accuracy of a linear (ridge) probe for the colour and for the pattern, held out one video at a
   time (its colour × pattern pair is still seen in training through the other video, as in the
   demo corpus) and one pair at a time (the pair is never seen); plus how often a video's nearest
   neighbour shows the same pair. Does the video information survive random weights?

Writes ``<out>/features.json`` and prints a markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mcls.video import synth  # noqa: E402
from mcls.video.backbones import load_backbone  # noqa: E402
from mcls.video.decode import DecodeSettings, decode_clips, normalize  # noqa: E402
from mcls.video.extract import ShardExtractor, store_metadata  # noqa: E402
from mcls.video.inputs import VideoRef, from_npy_dir  # noqa: E402
from mcls.video.store import FeatureStore, import_npy_shard  # noqa: E402

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
PATTERNS = ("plain", "striped", "dotted", "checkered")


def make_videos(d: Path, n: int, frames: int, w: int, h: int, fps: int) -> list[VideoRef]:
    refs = []
    for i in range(n):
        colour = list(COLOURS.values())[i % len(COLOURS)]
        pat = PATTERNS[i % len(PATTERNS)]
        path = synth.write_video(d / f"bench{i:02d}.mp4", synth.pattern_frames(frames, h, w, colour, pat, seed=i), fps,
                                 gop=250)
        refs.append(VideoRef(path.stem, str(path)))
    return refs


def model_only(fm, clips: list[np.ndarray], batch: int) -> float:
    """Seconds for the forward passes alone over ``clips`` (already decoded and normalized)."""
    t = time.perf_counter()
    for i in range(0, len(clips), batch):
        fm(np.stack(clips[i:i + batch]))
    return time.perf_counter() - t


def bench_throughput(args, tmp: Path) -> tuple[dict, np.ndarray]:
    w, h = map(int, args.size.split("x"))
    t = time.perf_counter()
    refs = make_videos(tmp / "videos", args.videos, args.frames, w, h, args.fps)
    gen_s = time.perf_counter() - t
    torch.set_num_threads(args.threads)
    fm = load_backbone("resnext101", random_init_ok=True, seed=42)
    settings = DecodeSettings(preprocess=fm.spec.preprocess)
    clips = []
    t = time.perf_counter()
    for r in refs:
        _, cs = decode_clips(r.path, settings)
        clips += [normalize(c, settings.preprocess) for *_, c in cs]
    decode_s = time.perf_counter() - t
    n = len(clips)
    model_only(fm, clips[:args.batch_size], args.batch_size)              # warm-up (oneDNN primitives)
    meta = store_metadata(fm, settings, batch_size=args.batch_size, device="cpu")
    runs = {"model_only": [], "end_to_end": []}
    extractor = ShardExtractor(fm, settings, batch_size=args.batch_size, decode_workers=1, progress=False)
    report = None
    for rep in range(args.repeats):
        runs["model_only"].append(n / model_only(fm, clips, args.batch_size))
        out = tmp / f"e2e{rep}.parquet"
        report = extractor.run(refs, out, tmp / f"e2e{rep}.tsv", metadata=meta)
        assert report.clips == n, (report.clips, n)
        runs["end_to_end"].append(report.clips_per_s)
    feats = np.concatenate([FeatureStore(tmp / "e2e0.parquet").get(r.video_id) for r in refs])
    best_model, best_e2e = max(runs["model_only"]), max(runs["end_to_end"])
    return {
        "videos": args.videos, "frames_per_video": args.frames, "size": args.size, "fps": args.fps,
        "clips": n, "batch_size": args.batch_size, "threads": args.threads,
        "generate_s": round(gen_s, 2),
        "decode_only_clips_per_s": round(n / decode_s, 2),
        "model_only_clips_per_s": [round(x, 3) for x in runs["model_only"]],
        "end_to_end_clips_per_s": [round(x, 3) for x in runs["end_to_end"]],
        "best_model_only": round(best_model, 3), "best_end_to_end": round(best_e2e, 3),
        "ratio_best": round(best_e2e / best_model, 3),
        "ratio_per_repeat": [round(e / m, 3) for e, m in zip(runs["end_to_end"], runs["model_only"])],
        "last_e2e_report": report.as_dict() if report else None,
    }, feats


def bench_import(tmp: Path) -> dict:
    npy_dir = REPO.parent / "shared" / "how2-mcls-demo" / "video_action_features"
    source = "how2-mcls-demo (18 real videos)"
    if not npy_dir.is_dir():
        npy_dir = tmp / "npy"
        npy_dir.mkdir()
        rng = np.random.default_rng(0)
        for i in range(18):
            a = np.maximum(rng.normal(0.1, 0.5, (int(rng.integers(120, 450)), 2048)), 0).astype(np.float32)
            np.save(npy_dir / f"v{i:02d}.npy", a)
        source = "synthetic (../shared absent)"
    refs = from_npy_dir(npy_dir)
    best = None
    for rep in range(3):
        r = import_npy_shard(refs, tmp / f"imp{rep}.parquet", tmp / f"imp{rep}.tsv", metadata={"source": "import"},
                             progress=False)
        best = r if best is None or r["mb_per_s"] > best["mb_per_s"] else best
    size = (tmp / "imp0.parquet").stat().st_size
    return {"source": source, "files": len(refs), "mb": round(best["bytes_in"] / 1e6, 1),
            "best_mb_per_s": round(best["mb_per_s"], 1), "store_over_raw": round(size / best["bytes_in"], 3)}, npy_dir


def bench_compression(arrays: list[np.ndarray]) -> list[dict]:
    raw = sum(a.nbytes for a in arrays)
    d = arrays[0].shape[1]
    schema = pa.schema([("features", pa.list_(pa.field("element", pa.float32(), nullable=False), d))])
    rows = []
    for name, comp, level, bss in [("none", "none", None, False), ("zstd-1", "zstd", 1, False),
                                   ("zstd-1 + bss", "zstd", 1, True), ("zstd-3 + bss", "zstd", 3, True),
                                   ("zstd-9 + bss", "zstd", 9, True)]:
        with tempfile.TemporaryDirectory() as td:
            path = Path(td) / "c.parquet"
            t = time.perf_counter()
            w = pq.ParquetWriter(path, schema, compression=comp, compression_level=level,
                                 use_byte_stream_split=["features.list.element"] if bss else False,
                                 use_dictionary=False, write_statistics=False)
            for a in arrays:
                w.write_table(pa.table([pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), d)],
                                       schema=schema), row_group_size=len(a))
            w.close()
            tw = time.perf_counter() - t
            t = time.perf_counter()
            pf = pq.ParquetFile(path, memory_map=True)
            for i in range(pf.num_row_groups):
                pf.read_row_group(i).column(0).chunk(0).flatten().to_numpy()
            tr = time.perf_counter() - t
            rows.append({"codec": name, "ratio": round(path.stat().st_size / raw, 3),
                         "write_mb_per_s": round(raw / 1e6 / tw, 1), "read_mb_per_s": round(raw / 1e6 / tr, 1)})
    return rows


def _ridge_loo(feats: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Leave one group out: a ridge-regression probe (one-hot targets, dual form, λ = 0.1 × mean
    squared norm) trained on the other groups' rows predicts each held-out row's label."""
    classes = sorted(set(y))
    hits = 0
    for g in sorted(set(groups)):
        train, test = groups != g, groups == g
        mu = feats[train].mean(0)
        x = feats[train] - mu
        gram = x @ x.T
        lam = 0.1 * float(np.trace(gram)) / len(x)
        targets = np.stack([(y[train] == c).astype(np.float64) for c in classes], 1)
        alpha = np.linalg.solve(gram + lam * np.eye(len(x)), targets - targets.mean(0))
        scores = (feats[test] - mu) @ x.T @ alpha
        hits += int(sum(classes[i] == t for i, t in zip(scores.argmax(1), y[test])))
    return hits / len(feats)


def bench_random_init(args, tmp: Path) -> dict:
    """Two demo-like videos (different noise and motion) per colour × pattern pair, one clip each."""
    fm = load_backbone("resnext101", random_init_ok=True, seed=42)
    settings = DecodeSettings(preprocess=fm.spec.preprocess)
    d = tmp / "demo"
    d.mkdir()
    labels, feats = [], []
    for ci, (cname, rgb) in enumerate(COLOURS.items()):
        for pi, pat in enumerate(PATTERNS):
            for inst in range(2):
                path = synth.write_video(d / f"{cname}-{pat}-{inst}.mp4", synth.pattern_frames(
                    16, 120, 160, rgb, pat, seed=100 * ci + 10 * pi + inst), 8)
                _, cs = decode_clips(str(path), settings)
                feats.append(fm(np.stack([normalize(c, settings.preprocess) for *_, c in cs]))[0])
                labels.append((cname, pat))
    f = np.stack(feats)
    colour = np.array([c for c, _ in labels])
    pattern = np.array([p for _, p in labels])
    combo = np.array([f"{c}/{p}" for c, p in labels])
    video = np.arange(len(f))
    dist = np.linalg.norm(f[:, None] - f[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    return {
        "videos": len(f), "mean": round(float(f.mean()), 3), "std": round(float(f.std()), 3),
        "max": round(float(f.max()), 3), "zero_fraction": round(float((f == 0).mean()), 3),
        "per_clip_mean_range": [round(float(f.mean(1).min()), 3), round(float(f.mean(1).max()), 3)],
        "probe_seen_pair": {"colour": _ridge_loo(f, colour, video), "pattern": _ridge_loo(f, pattern, video)},
        "probe_unseen_pair": {"colour": _ridge_loo(f, colour, combo), "pattern": _ridge_loo(f, pattern, combo)},
        "nearest_neighbour_same_pair": round(float(np.mean(combo[dist.argmin(1)] == combo)), 3),
        "chance": 0.25, "output_scale": fm.weights["output_scale"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=192)
    p.add_argument("--size", default="640x360")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "features"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mcls-bench-features-") as td:
        tmp = Path(td)
        (tmp / "videos").mkdir()
        throughput, random_feats = bench_throughput(args, tmp)
        imp, npy_dir = bench_import(tmp)
        how2 = [np.load(f) for f in sorted(Path(npy_dir).glob("*.npy"))]
        compression = {"how2": bench_compression(how2),
                       "random_init": bench_compression([random_feats[i:i + 12] for i in range(0, len(random_feats), 12)])}
        random_init = bench_random_init(args, tmp)
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                          "load_avg_at_end": os.getloadavg()},
              "command": "python " + " ".join(sys.argv), "throughput": throughput, "npy_import": imp,
              "compression": compression, "random_init": random_init}
    (out / "features.json").write_text(json.dumps(result, indent=2) + "\n")
    t = throughput
    print(f"## Video features ({t['clips']} clips of {t['size']} {t['fps']} fps H.264, batch {t['batch_size']}, "
          f"{t['threads']} threads)\n")
    print("| measure | clips/s |\n|---|---|")
    print(f"| model only (decode excluded), per repeat | {', '.join(map(str, t['model_only_clips_per_s']))} |")
    print(f"| end to end (probe + ffmpeg + model + parquet), per repeat | {', '.join(map(str, t['end_to_end_clips_per_s']))} |")
    print(f"| decode only (probe + ffmpeg + normalize, 1 thread) | {t['decode_only_clips_per_s']} |")
    print(f"\nend-to-end / model-only: best {t['ratio_best']}, per repeat {t['ratio_per_repeat']}\n")
    print(f"npy import ({imp['source']}, {imp['mb']} MB): {imp['best_mb_per_s']} MB/s; store/raw {imp['store_over_raw']}\n")
    for name, rows in compression.items():
        print(f"compression ({name}): " + "; ".join(f"{r['codec']} {r['ratio']} (w {r['write_mb_per_s']}, "
                                                       f"r {r['read_mb_per_s']} MB/s)" for r in rows))
    r = random_init
    print(f"\nrandom init: mean {r['mean']} std {r['std']} max {r['max']} zeros {r['zero_fraction']}; "
          f"ridge probe, pair seen in training: colour {r['probe_seen_pair']['colour']} pattern "
          f"{r['probe_seen_pair']['pattern']}; pair unseen: colour {r['probe_unseen_pair']['colour']} pattern "
          f"{r['probe_unseen_pair']['pattern']}; nearest neighbour = same pair {r['nearest_neighbour_same_pair']}")
    print(f"\nwritten: {out / 'features.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
