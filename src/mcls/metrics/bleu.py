"""Corpus BLEU-1..4 with the semantics of the COCO caption scorer used by the How2 scorer.

SPEC §6: tokens are whitespace-split as given; clipped n-gram counts are summed over the whole
set; the reference length of a segment is the reference closest in length to the hypothesis
(ties → the shorter one); brevity penalty exp(1 − r/c) when c < r; BLEU-k is the geometric mean
of p1..pk, each p_j = (correct_j + 1e-15) / (guess_j + 1e-9).

The epsilons matter only when an order has no match at all (then BLEU-k is tiny but not 0);
otherwise the values equal sacrebleu's (`tokenize='none', smooth_method='none',
effective_order=False`). nltk's corpus_bleu differs when a hypothesis has fewer than n tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

TINY = 1e-15  # added to the matched n-gram count ("so that if guess is 0 still return 0")
SMALL = 1e-9  # added to the hypothesis n-gram count and to the reference length


def ngrams(tokens: Sequence[str], max_n: int) -> Counter:
    """Counts of every n-gram (as a tuple) of orders 1..max_n."""
    counts: Counter = Counter()
    for n in range(1, max_n + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i:i + n])] += 1
    return counts


@dataclass
class BleuStats:
    """Sufficient statistics of corpus BLEU, summed over segments."""

    max_n: int = 4
    hyp_len: int = 0  # c: total hypothesis tokens
    ref_len: int = 0  # r: total closest-reference length
    guess: list[int] = field(default_factory=list)  # hypothesis n-grams per order
    correct: list[int] = field(default_factory=list)  # clipped matches per order

    def __post_init__(self) -> None:
        self.guess = self.guess or [0] * self.max_n
        self.correct = self.correct or [0] * self.max_n

    def add(self, hypothesis: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        """Add one segment (token lists)."""
        c = len(hypothesis)
        # closest reference length; on a tie the shorter reference wins
        r = min((abs(len(ref) - c), len(ref)) for ref in references)[1]
        max_ref: Counter = Counter()
        for ref in references:
            for gram, count in ngrams(ref, self.max_n).items():
                if count > max_ref[gram]:
                    max_ref[gram] = count
        self.hyp_len += c
        self.ref_len += r
        for gram, count in ngrams(hypothesis, self.max_n).items():
            self.correct[len(gram) - 1] += min(count, max_ref[gram])
        for n in range(1, self.max_n + 1):
            self.guess[n - 1] += max(0, c - n + 1)

    def scores(self) -> list[float]:
        """[BLEU-1, …, BLEU-max_n] as fractions (0..1)."""
        out = []
        log_prod = 0.0
        for n in range(self.max_n):
            log_prod += math.log((self.correct[n] + TINY) / (self.guess[n] + SMALL))
            out.append(math.exp(log_prod / (n + 1)))
        ratio = (self.hyp_len + TINY) / (self.ref_len + SMALL)
        if ratio < 1.0:
            bp = math.exp(1.0 - 1.0 / ratio)
            out = [b * bp for b in out]
        return out


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> list[float]:
    """Corpus BLEU-1..max_n (fractions) of whitespace-tokenized hypotheses against reference lists."""
    if not hypotheses:
        raise ValueError("BLEU of an empty set")
    stats = BleuStats(max_n=max_n)
    for hyp, refs in zip(hypotheses, references, strict=True):
        stats.add(hyp.split(), [r.split() for r in refs])
    return stats.scores()
