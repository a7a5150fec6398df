"""Training throughput of the real training loop at the paper's VDF size, and its peak memory.

    .venv/bin/python bench/train.py                    # defaults below, ~1 min on 2 cores
    .venv/bin/python bench/train.py --vocab 78123      # the published En vocabulary

Paper config (SPEC §2, §4): VDF, d=512, FFN 2048, 8 heads, 4+4 layers, stage-1 form (one shared
En embedding), batch 8, AdamW + clip 0.1; inputs ~400-token transcripts, ~160 clips of 2048-d
features, ~55-token summaries, each length drawn ±15 % so bucketing has something to do. Random
token ids; features are generated per video from its id when a batch asks for them (standing in
for the feature store), so they do not count towards the memory of the whole split.

It runs `mcls.training.Trainer` itself — data loading, collate, forward, backward, clipping,
AdamW, logging — for `--steps` optimizer steps and reads the numbers back from train.jsonl,
skipping the first `--skip` steps (allocator warm-up). tokens/s counts the real (non-pad)
transcript + summary tokens; peak RSS is the process's maximum resident set (ru_maxrss).
`data_share` is the part of the step time spent waiting for batches (feature generation,
collate); `load_average_1m` (at start and end) says how busy the shared machine was: above ~2
other processes compete for the 2 cores, so the median and minimum step times are given too,
and the process CPU seconds per step (less sensitive to contention; with `--threads 2` an idle
machine gives about `cpu_seconds_per_step / 2` seconds per step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

PAPER = dict(d_model=512, ffn_dim=2048, heads=8, enc_layers=4, dec_layers=4, dropout=0.1)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vdf", help="mcls.model preset")
    p.add_argument("--vocab", type=int, default=20000, help="shared En vocabulary size")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--src-len", type=int, default=400)
    p.add_argument("--sum-len", type=int, default=55)
    p.add_argument("--clips", type=int, default=160)
    p.add_argument("--dim", type=int, default=2048, help="video feature width")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--skip", type=int, default=2, help="first steps left out of the figures")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    p.add_argument("--textbook", action="store_true",
                   help="baseline: fusion in the textbook order (no reassociation) and multi-pass AdamW")
    p.add_argument("--compare", action="store_true",
                   help="run the baseline and mcls, alternating, each in its own process; print both and the ratio")
    p.add_argument("--repeats", type=int, default=2, help="with --compare: runs of each")
    return p.parse_args(argv)


def compare(args, argv) -> int:
    import subprocess

    rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--compare",)]
    runs = {"textbook": [], "mcls": []}
    for _ in range(args.repeats):
        for kind in ("textbook", "mcls"):
            cmd = [sys.executable, __file__, *rest] + (["--textbook"] if kind == "textbook" else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[kind].append(json.loads(out[out.index("{"):]))
    med = {k: float(np.median([r["seconds_per_step_median"] for r in v])) for k, v in runs.items()}
    result = {"runs": runs, "median_seconds_per_step": med,
              "speedup_vs_textbook": round(med["textbook"] / med["mcls"], 2),
              "peak_rss_mb": {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}}
    print(json.dumps(result, indent=2))
    return 0


class GeneratedFeatures:
    """Feature source: (k, dim) non-negative float32 rows drawn from a seed derived from the id."""

    def __init__(self, clips: dict[str, int], dim: int):
        self.clips, self.dim = clips, dim

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.clips

    def get(self, video_id: str, max_rows: int = 1024) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(video_id.encode()))
        return rng.random((min(self.clips[video_id], max_rows), self.dim), dtype=np.float32)


def write_split(path: Path, n: int, args, seed: int, prefix: str) -> dict[str, int]:
    rng = np.random.default_rng(seed)

    def seqs(mean):
        lens = rng.integers(int(mean * 0.85), int(mean * 1.15) + 1, size=n)
        return [np.append(rng.integers(3, args.vocab, size=m - 1), 1).astype(np.int32).tolist() for m in lens]

    ids = [f"{prefix}{i:05d}" for i in range(n)]
    en, summ = seqs(args.src_len), seqs(args.sum_len)
    table = pa.table({
        "video_id": ids,
        "en": pa.array(en, type=pa.list_(pa.int32())), "src": pa.array([None] * n, type=pa.list_(pa.int32())),
        "sum": pa.array(summ, type=pa.list_(pa.int32())),
        "en_len": pa.array([len(x) for x in en], type=pa.int32()), "src_len": pa.array([0] * n, type=pa.int32()),
        "sum_len": pa.array([len(x) for x in summ], type=pa.int32()),
    })
    pq.write_table(table, path)
    return {v: int(k) for v, k in zip(ids, rng.integers(int(args.clips * 0.85), int(args.clips * 1.15) + 1, size=n))}


def main(argv=None) -> int:
    args = parse(argv)
    if args.compare:
        return compare(args, argv)
    from mcls import code_version
    from mcls.training import Trainer

    if args.textbook:
        import mcls.training.optim as optim
        from mcls.model.fusion import CascadedVideoAttention, ForgetGateFusion

        ForgetGateFusion.reassociate = CascadedVideoAttention.reassociate = False
        optim.FUSED = False

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="mcls-bench-train-")
        out = Path(tmp.name)
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    n = args.batch * args.steps
    clips = write_split(out / "train.parquet", n, args, seed=1, prefix="t")
    clips.update(write_split(out / "valid.parquet", args.batch, args, seed=2, prefix="v"))
    vocab = out / "vocab.tsv"
    vocab.write_text("".join(f"w{i}\t1\n" for i in range(args.vocab)), encoding="utf-8")
    spec = {
        "stage": 1, "model": args.model, "sizes": PAPER, "switches": {"share_src_tgt_embedding": True},
        "data": {"train": str(out / "train.parquet"), "valid": str(out / "valid.parquet"), "features": None,
                 "src_field": "en", "tgt_field": "sum", "src_vocab": str(vocab), "tgt_vocab": str(vocab)},
        "optim": {"lr": 1.5e-4, "warmup_steps": 4000, "epochs": 1, "max_steps": args.steps,
                  "batch_size": args.batch, "max_tokens": None, "clip_norm": 0.1},
        "seed": 42, "device": args.device, "threads": args.threads, "checkpoint_every": 10**9,
        "log_every": 1, "select": "last",
    }
    spec["data"]["valid"] = None
    load0 = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    trainer = Trainer(spec, out / "run", features=GeneratedFeatures(clips, args.dim))
    summary = trainer.run()
    wall = time.perf_counter() - t0
    recs = [json.loads(x) for x in (out / "run" / "train.jsonl").read_text().splitlines()]
    steps = [r for r in recs if r["event"] == "train"][args.skip:]
    per = [r["seconds"] for r in steps]
    secs = sum(per)
    tokens = sum(r["tokens"] for r in steps)
    result = {
        "variant": "textbook" if args.textbook else "mcls",
        "model": args.model, "parameters": summary["parameters"], "vocab": args.vocab, "batch": args.batch,
        "src_len": args.src_len, "sum_len": args.sum_len, "clips": args.clips, "threads": args.threads,
        "device": args.device, "timed_steps": len(steps),
        "seconds_per_step": round(secs / len(steps), 3),
        "seconds_per_step_median": round(float(np.median(per)), 3),
        "seconds_per_step_min": round(float(np.min(per)), 3),
        "tokens_per_s": round(tokens / secs, 1),
        "tokens_per_s_at_median": round(tokens / len(steps) / float(np.median(per)), 1),
        "samples_per_s": round(args.batch * len(steps) / secs, 2),
        "pad_waste": round(float(np.mean([r["pad_waste"] for r in steps])), 4),
        "video_pad_waste": round(float(np.mean([r["video_pad_waste"] for r in steps])), 4),
        "cpu_seconds_per_step": round(sum(r["cpu_seconds"] for r in steps) / len(steps), 3),
        "tokens_per_cpu_s": round(tokens / sum(r["cpu_seconds"] for r in steps), 1),
        "data_share": round(sum(r["data_seconds"] for r in steps) / secs, 4),
        "load_average_1m": [load0, round(os.getloadavg()[0], 2)],  # at start, at end
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_cuda_mb": summary["peak_cuda_mb"],
        "wall_s": round(wall, 1), "torch": torch.__version__, "python": platform.python_version(),
        "code_version": code_version(),
    }
    print(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
