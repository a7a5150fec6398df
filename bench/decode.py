"""Decoding throughput of a paper-size VDF: cached incremental beam search against the same
search without the cache, in three modes (one process each, so each peak RSS is its own):

  cached        encoder + fusion once, memory keys/values once, self-attention keys/values cached
  uncached      decode_step(cache=None) every step: the whole decoder prefix and every memory
                key/value projection recomputed; encoder + fusion once
  recompute     everything every step: encoder, forget fusion encoder and the decoder prefix
                (what the published generator effectively does)

    .venv/bin/python bench/decode.py                      # defaults below, ~1 min on 2 idle cores
    .venv/bin/python bench/decode.py --inputs 2 --max-len 20   # quicker
    .venv/bin/python bench/decode.py --threads 1          # when another job holds a core: 2 OpenMP
                                                          # threads on a busy 2-core machine stall

Paper config: d=512, FFN 2048, 8 heads, 4+4 layers; vocab 20k (moderate, both sides),
~400-token transcripts, ~160 clips of 2048-d features, beam 6, lenpen 1. Random weights and
inputs; EOS is suppressed until max_len (min_len = max_len) so every run does the same number
of steps whatever the weights. Each mode runs in its own process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import resource
import subprocess
import sys
import time

PAPER = dict(d_model=512, ffn_dim=2048, heads=8, enc_layers=4, dec_layers=4, dropout=0.1)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=4, help="transcripts decoded together (one batch)")
    p.add_argument("--src-len", type=int, default=400)
    p.add_argument("--clips", type=int, default=160)
    p.add_argument("--vocab", type=int, default=20000)
    p.add_argument("--beam", type=int, default=6)
    p.add_argument("--max-len", type=int, default=40, help="summary tokens decoded (EOS forced after)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default="cached,uncached,recompute")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class RecomputeEverything:
    """Decoding contract around a model whose decode_step re-encodes the inputs every step."""

    def __init__(self, model):
        self.model = model

    def encode(self, batch):
        return {**{k: v for k, v in batch.items() if k in ("src", "video", "video_mask")}, "group": 1}

    def reorder(self, enc, cache, order):
        return self.model.reorder(enc, None, order)  # index-selects the input rows like memories

    def decode_step(self, tokens, enc, cache=None):
        real = self.model.encode({k: v for k, v in enc.items() if k != "group"})
        real["group"] = enc["group"]
        return self.model.decode_step(tokens, real, None)


def child(args) -> dict:
    import torch

    from mcls.decoding import beam_search
    from mcls.model import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model("vdf", PAPER, args.vocab, args.vocab, 2048).eval()
    g = torch.Generator().manual_seed(args.seed + 1)
    n = args.inputs
    src_lens = [args.src_len - 7 * i for i in range(n)]  # ~400 tokens, slightly ragged
    clips = [args.clips - 5 * i for i in range(n)]
    src = torch.zeros(n, max(src_lens), dtype=torch.long)
    video = torch.zeros(n, max(clips), 2048)
    mask = torch.zeros(n, max(clips), dtype=torch.bool)
    for i in range(n):
        src[i, : src_lens[i] - 1] = torch.randint(3, args.vocab, (src_lens[i] - 1,), generator=g)
        src[i, src_lens[i] - 1] = 1  # EOS
        video[i, : clips[i]] = torch.randn(clips[i], 2048, generator=g).abs()  # ReLU'd features
        mask[i, : clips[i]] = True
    batch = {"src": src, "video": video, "video_mask": mask}
    use_cache = args.child == "cached"
    searched = RecomputeEverything(model) if args.child == "recompute" else model
    beam_search(searched, {k: v[:1] for k, v in batch.items()}, beam=2, max_len=2, use_cache=use_cache)  # warm-up
    encode_s = []
    plain_encode = searched.encode

    def timed_encode(b):  # the one encoder pass of the search (per step in `recompute`: inside decode_step)
        t = time.perf_counter()
        out = plain_encode(b)
        encode_s.append(time.perf_counter() - t)
        return out

    searched.encode = timed_encode
    base = rss_mb()
    t0 = time.perf_counter()
    hyps = beam_search(searched, batch, beam=args.beam, max_len=args.max_len, min_len=args.max_len, use_cache=use_cache)
    dt = time.perf_counter() - t0
    steps = args.max_len + 1
    digest = hashlib.sha1(json.dumps([h[0].tokens for h in hyps]).encode()).hexdigest()[:12]
    return {
        "mode": args.child, "seconds": dt, "summaries_per_s": n / dt, "steps": steps, "encode_s": sum(encode_s),
        "ms_per_step": 1000 * (dt - sum(encode_s)) / steps, "peak_rss_mb": rss_mb(), "rss_before_decode_mb": base,
        "params": model.num_parameters(), "hyp_digest": digest,
        "scores": [round(h[0].score, 4) for h in hyps],
    }


def main(argv=None) -> int:
    args = parse(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    import torch

    results = {}
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--child", mode] + [a for a in (argv if argv is not None else sys.argv[1:])]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:9s} {r['seconds']:7.1f} s  {r['summaries_per_s']:.3f} summaries/s  encode {r['encode_s']:.2f} s  "
              f"{r['ms_per_step']:7.1f} ms/step after it  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (before decoding {r['rss_before_decode_mb']:.0f} MB)  hyps {r['hyp_digest']}",
              flush=True)
    report = {
        "config": {**PAPER, "vocab": args.vocab, "inputs": args.inputs, "src_len": args.src_len, "clips": args.clips,
                   "beam": args.beam, "max_len": args.max_len, "threads": args.threads},
        "torch": torch.__version__, "machine": platform.machine(), "results": results,
    }
    if "cached" in results:
        c = results["cached"]
        for other in ("uncached", "recompute"):
            if other in results:
                u = results[other]
                report[f"speedup_vs_{other}"] = u["seconds"] / c["seconds"]
                report[f"same_hypotheses_{other}"] = c["hyp_digest"] == u["hyp_digest"]
                print(f"speed-up cached vs {other}: {u['seconds'] / c['seconds']:.1f}x; same hypotheses: {c['hyp_digest'] == u['hyp_digest']}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
