"""Ingest + vocabulary + encoding throughput on a generated How2-sized corpus (text only).

Generates a corpus in the How2-MCLS release layout with How2's shape — `pretrain` (How2-MS)
60k videos, `train` 13,167, `val` 150, `test` 127; transcripts ~290 tokens, summaries ~33,
Zipf-distributed words from an 80k vocabulary — then times, each step in its own process
(peak RSS from wait4):

  mcls:     ingest (streaming, validated)  → vocab en + pt → encode 4 splits
  baseline: the straightforward way — read whole files into lists, build pandas frames,
            Counter vocabularies, encode with Python lists, DataFrame.to_parquet

Memory flatness: the mcls pipeline runs at two corpus sizes (¼ and full); its peak RSS
should barely move while the baseline's grows with the corpus.

    python bench/ingest.py [--scale 1.0] [--out bench/out/ingest]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


SIZES = {"pretrain": 60000, "train": 13167, "val": 150, "test": 127}


def generate(root: Path, scale: float, seed: int = 0) -> dict:
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(80000)])
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / ranks
    p /= p.sum()
    counts = {}

    def docs(lengths: np.ndarray) -> list[str]:
        ids = rng.choice(len(vocab), size=int(lengths.sum()), p=p)  # one draw for the whole split
        words = vocab[ids]
        ends = np.cumsum(lengths)
        return [" ".join(words[e - n:e]) for n, e in zip(lengths, ends)]

    for split, n in SIZES.items():
        n = max(1, int(n * scale))
        counts[split] = n
        ids = [f"{split[:3]}{i:08d}" for i in range(n)]
        lens = rng.integers(150, 450, size=n)
        en = docs(lens)
        sm = docs(rng.integers(15, 50, size=n))
        (root / f"{split}_action.txt").write_text("\n".join(ids))
        (root / f"{split}_art_en.txt").write_text("\n".join(en))
        (root / f"{split}_sum.txt").write_text("\n".join(sm))
        if split != "pretrain":
            (root / f"{split}_art_pt.txt").write_text("\n".join(docs((lens * 1.05).astype(int))))
    return counts


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command run in its own process.

    Linux counts a child's pre-exec (forked) image in its ru_maxrss, so the bench process
    itself stays small: the corpus is generated in a child process too."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def mcls_pipeline(root: Path, out: Path) -> list[tuple[str, float, float]]:
    py = sys.executable
    steps = [
        ("ingest", [py, "-m", "mcls", "ingest", "--format", "how2-mcls", "--root", str(root), "--src-lang", "pt",
                    "--media", "none", "--out", str(out / "data")]),
        ("vocab en", [py, "-m", "mcls", "vocab", "--tables", str(out / "data/pretrain.parquet"), str(out / "data/train.parquet"),
                      "--columns", "transcript_en", "summary", "--lang", "en", "--out", str(out / "vocab/en.tsv")]),
        ("vocab pt", [py, "-m", "mcls", "vocab", "--tables", str(out / "data/train.parquet"), "--columns", "transcript_src",
                      "--lang", "pt", "--out", str(out / "vocab/pt.tsv")]),
    ]
    for s in SIZES:
        steps.append((f"encode {s}", [py, "-m", "mcls", "encode", "--table", str(out / f"data/{s}.parquet"),
                                      "--en-vocab", str(out / "vocab/en.tsv"), "--src-vocab", str(out / "vocab/pt.tsv"),
                                      "--src-lang", "pt", "--out", str(out / f"encoded/{s}.parquet")]))
    return [(name, *run(cmd)) for name, cmd in steps]


BASELINE = r'''
import sys, pandas as pd, collections, pathlib
root, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
frames = {}
for s in ("pretrain", "train", "val", "test"):
    d = {"video_id": (root / f"{s}_action.txt").read_text().splitlines(),
         "transcript_en": (root / f"{s}_art_en.txt").read_text().splitlines(),
         "summary": (root / f"{s}_sum.txt").read_text().splitlines()}
    d["transcript_src"] = (root / f"{s}_art_pt.txt").read_text().splitlines() if s != "pretrain" else [None] * len(d["video_id"])
    frames[s] = pd.DataFrame(d)
    frames[s].to_parquet(out / f"{s}.parquet")
def vocab(texts):
    c = collections.Counter(t for x in texts for t in x.split())
    return {t: i + 3 for i, (t, _) in enumerate(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))}
en = vocab(list(frames["pretrain"].transcript_en) + list(frames["pretrain"].summary) + list(frames["train"].transcript_en) + list(frames["train"].summary))
pt = vocab(list(frames["train"].transcript_src))
for s, f in frames.items():
    enc = pd.DataFrame({"video_id": f.video_id,
        "en": [[en.get(t, 2) for t in x.split()][:799] + [1] for x in f.transcript_en],
        "src": [None if x is None else [pt.get(t, 2) for t in x.split()][:799] + [1] for x in f.transcript_src],
        "sum": [[en.get(t, 2) for t in x.split()][:799] + [1] for x in f.summary]})
    enc.to_parquet(out / f"enc_{s}.parquet")
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="corpus size relative to How2 (1.0 = 73k videos)")
    ap.add_argument("--out", default="bench/out/ingest")
    ap.add_argument("--generate", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        print(json.dumps(generate(Path(args.generate), args.scale)))
        return
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    results = {}
    for label, scale in (("quarter", args.scale / 4), ("full", args.scale)):
        root = out / f"corpus-{label}"
        t0 = time.perf_counter()
        gen_out = subprocess.run([sys.executable, __file__, "--generate", str(root), "--scale", str(scale)],
                                 check=True, capture_output=True, text=True).stdout
        counts = json.loads(gen_out)
        gen = time.perf_counter() - t0
        rows = sum(counts.values())
        mb = sum(p.stat().st_size for p in root.iterdir()) / 2**20
        steps = mcls_pipeline(root, out / f"mcls-{label}")
        total = sum(s[1] for s in steps)
        peak = max(s[2] for s in steps)
        b_wall, b_peak = run([sys.executable, "-c", BASELINE, str(root), str(out / f"baseline-{label}")])
        results[label] = {"videos": rows, "text_mb": round(mb, 1), "generate_s": round(gen, 1),
                          "steps": [{"step": n, "seconds": round(w, 2), "peak_rss_mib": round(r, 1)} for n, w, r in steps],
                          "mcls_seconds": round(total, 2), "mcls_rows_per_s": round(rows / total), "mcls_peak_rss_mib": round(peak, 1),
                          "baseline_seconds": round(b_wall, 2), "baseline_rows_per_s": round(rows / b_wall),
                          "baseline_peak_rss_mib": round(b_peak, 1)}
        shutil.rmtree(root)
    f, q = results["full"], results["quarter"]
    results["speedup_vs_baseline"] = round(f["baseline_seconds"] / f["mcls_seconds"], 2)
    results["memory_ratio_vs_baseline"] = round(f["mcls_peak_rss_mib"] / f["baseline_peak_rss_mib"], 2)
    results["mcls_peak_growth_quarter_to_full"] = round(f["mcls_peak_rss_mib"] / q["mcls_peak_rss_mib"], 2)
    results["baseline_peak_growth_quarter_to_full"] = round(f["baseline_peak_rss_mib"] / q["baseline_peak_rss_mib"], 2)
    print(json.dumps(results, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
