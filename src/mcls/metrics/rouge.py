"""ROUGE as in the paper's tables, and the How2 scorer's ROUGE-L (β = 1.2).

`rouge_f1` — ROUGE-1/2/L F1 (β = 1) per (reference, hypothesis) pair, averaged over pairs, with
Google's rouge-score package: a whitespace tokenizer object (its default tokenizer drops
punctuation and costs 2–3 points), no stemming, the reference passed first. With several
references a segment takes, per ROUGE type, the reference with the highest F1
(`RougeScorer.score_multi`).

`how2_rouge_l` — the COCO caption scorer's ROUGE-L used by the How2 scorer: LCS precision and
recall against every reference, the maximum precision and the maximum recall (possibly from
different references) combined as F_β with β = 1.2, averaged over segments.
"""

from __future__ import annotations

from typing import Sequence


class WhitespaceTokenizer:
    """rouge-score tokenizer object: split on whitespace, keep case and punctuation tokens."""

    def tokenize(self, text: str) -> list[str]:
        return text.split()


def rouge_f1(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean pair F1 of ROUGE-1, ROUGE-2 and ROUGE-L (fractions), keys rouge1/rouge2/rougeL."""
    from rouge_score.rouge_scorer import RougeScorer

    types = ("rouge1", "rouge2", "rougeL")
    scorer = RougeScorer(list(types), use_stemmer=False, tokenizer=WhitespaceTokenizer())
    sums = dict.fromkeys(types, 0.0)
    n = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        # reference first: score(target, prediction)
        result = scorer.score(refs[0], hyp) if len(refs) == 1 else scorer.score_multi(list(refs), hyp)
        for t in types:
            sums[t] += result[t].fmeasure
        n += 1
    if n == 0:
        raise ValueError("ROUGE of an empty set")
    return {t: sums[t] / n for t in types}


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(|a|·|b|) time, O(|b|) memory)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else (cur[j] if cur[j] > prev[j + 1] else prev[j + 1]))
        prev = cur
    return prev[-1]


def how2_rouge_l_segment(hypothesis: str, references: Sequence[str], beta: float = 1.2) -> float:
    """ROUGE-L F_β of one hypothesis: max LCS precision and max LCS recall over the references."""
    hyp = hypothesis.split()
    best_p = best_r = 0.0
    for ref in references:
        ref_tokens = ref.split()
        lcs = lcs_length(ref_tokens, hyp)
        if hyp:
            best_p = max(best_p, lcs / len(hyp))
        if ref_tokens:
            best_r = max(best_r, lcs / len(ref_tokens))
    if best_p == 0.0 or best_r == 0.0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * best_p * best_r / (best_r + b2 * best_p)


def how2_rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]], beta: float = 1.2) -> tuple[float, list[float]]:
    """(mean over segments, per-segment scores) of the How2 scorer's ROUGE-L, as fractions."""
    per = [how2_rouge_l_segment(h, refs, beta) for h, refs in zip(hypotheses, references, strict=True)]
    if not per:
        raise ValueError("ROUGE-L of an empty set")
    return sum(per) / len(per), per
