"""CIDEr-D as computed by the COCO caption scorer used by the How2 scorer (reported raw).

For every segment, n-grams of orders 1..4 are weighted tf·idf with
idf(g) = log(N) − log(max(1, df(g))), where N is the number of segments scored and df(g) the
number of segments whose references contain g — so the idf comes from the references of the
scored set, and scoring a subset changes every number. Per order n, the hypothesis vector is
compared to each reference vector with a *clipped* cosine Σ_g min(h_g, r_g)·r_g / (‖h‖‖r‖),
times a Gaussian length penalty exp(−δ²/(2σ²)), σ = 6. A segment's score is the mean over
orders, averaged over its references, ×10; CIDEr-D is the mean over segments.

δ is the difference of token counts. (The COCO code counts each side's bigrams, len − 1, which
gives the same δ for non-empty text; an empty hypothesis scores 0 either way, and references
are never empty.)
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Sequence

from .bleu import ngrams


def _tfidf(counts: Counter, idf, n: int) -> tuple[list[dict], list[float]]:
    """Per order: {n-gram: tf·idf} and the vector's Euclidean norm."""
    vec: list[dict] = [{} for _ in range(n)]
    norm2 = [0.0] * n
    for gram, tf in counts.items():
        k = len(gram) - 1
        w = tf * idf(gram)
        vec[k][gram] = w
        norm2[k] += w * w
    return vec, [math.sqrt(x) for x in norm2]


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> tuple[float, list[float]]:
    """(mean, per-segment scores) of CIDEr-D on the raw scale (the paper's 1.064-style numbers)."""
    hyp_tokens = [h.split() for h in hypotheses]
    ref_tokens = [[r.split() for r in refs] for refs in references]
    hyp_counts = [ngrams(t, n) for t in hyp_tokens]
    ref_counts = [[ngrams(t, n) for t in refs] for refs in ref_tokens]
    if len(hyp_counts) != len(ref_counts) or not hyp_counts:
        raise ValueError(f"CIDEr-D needs aligned, non-empty sets: {len(hyp_counts)} hypotheses, "
                         f"{len(ref_counts)} reference lists")

    df: Counter = Counter()
    for refs in ref_counts:
        df.update(set().union(*(r.keys() for r in refs)))
    log_n = math.log(float(len(ref_counts)))

    def idf(gram) -> float:
        return log_n - math.log(max(1.0, df[gram]))

    scores = []
    for hyp, refs, h_tok, r_toks in zip(hyp_counts, ref_counts, hyp_tokens, ref_tokens):
        h_vec, h_norm = _tfidf(hyp, idf, n)
        total = [0.0] * n
        for ref, r_tok in zip(refs, r_toks):
            r_vec, r_norm = _tfidf(ref, idf, n)
            penalty = math.exp(-((len(h_tok) - len(r_tok)) ** 2) / (2 * sigma**2))
            for k in range(n):
                rk = r_vec[k]
                val = sum(min(w, rk.get(g, 0.0)) * rk.get(g, 0.0) for g, w in h_vec[k].items())
                if h_norm[k] != 0 and r_norm[k] != 0:
                    val /= h_norm[k] * r_norm[k]
                total[k] += val * penalty
        scores.append(sum(total) / n / len(refs) * 10.0)
    return sum(scores) / len(scores), scores
