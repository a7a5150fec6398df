"""The How2 scorer's metrics, reproduced exactly (SPEC §6).

    from mcls.metrics import score
    score(hypotheses, references)          # references: list[str] or list[list[str]]
    -> {"bleu1": …, "bleu2": …, "bleu3": …, "bleu4": …,      # ×100
        "rouge1": …, "rouge2": …, "rougeL": …,               # ×100, rouge-score, β = 1
        "rougeL_how2": …,                                    # ×100, COCO ROUGE-L, β = 1.2
        "meteor": … or "unavailable: <reason>",              # ×100, METEOR 1.5 jar
        "cider": …}                                          # raw CIDEr-D (e.g. 0.563)

Text is scored as given: whitespace-split, case and punctuation tokens kept (the pipeline's
text is already lowercased and tokenized); never the COCO PTB tokenizer. See docs/metrics.md.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import DataError
from .bleu import corpus_bleu
from .cider import cider_d
from .meteor import Meteor, MeteorUnavailable, meteor_or_reason
from .rouge import how2_rouge_l, rouge_f1

KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "rougeL_how2", "meteor", "cider")

__all__ = ["KEYS", "Meteor", "MeteorUnavailable", "corpus_bleu", "cider_d", "how2_rouge_l", "rouge_f1",
           "reference_lists", "score"]


def reference_lists(references: Sequence[str] | Sequence[Sequence[str]], what: str = "references") -> list[list[str]]:
    """Normalize references to one non-empty list of strings per segment; DataError otherwise."""
    out = []
    for i, refs in enumerate(references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise DataError(f"{what}: segment {i + 1} has no reference")
        for r in refs:
            if not isinstance(r, str):
                raise DataError(f"{what}: segment {i + 1}: a reference must be a string, got {type(r).__name__}")
            if not r.split():
                raise DataError(f"{what}: segment {i + 1} has an empty reference")
        out.append(refs)
    return out


def score(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
          meteor: bool | Meteor = True, *, hyp_name: str = "hypotheses", ref_name: str = "references") -> dict:
    """All metrics of SPEC §6 for one scored set (BLEU/ROUGE/METEOR ×100, CIDEr-D raw).

    `meteor`: True starts the METEOR jar (~8 s) for this call, a running `Meteor` is reused,
    False skips it ("unavailable: disabled"). CIDEr-D's idf comes from these references, so the
    numbers depend on the whole set. `hyp_name`/`ref_name` name the inputs in error messages.
    """
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise DataError("score() takes lists of segments, not a single string")
    hyps = list(hypotheses)
    if not hyps:
        raise DataError(f"{hyp_name}: nothing to score (0 segments)")
    if len(hyps) != len(references):
        raise DataError(f"{hyp_name} has {len(hyps)} segments but {ref_name} has {len(references)}; "
                        "they must be aligned one segment per line")
    for i, h in enumerate(hyps):
        if not isinstance(h, str):
            raise DataError(f"{hyp_name}: segment {i + 1} must be a string, got {type(h).__name__}")
    refs = reference_lists(references, ref_name)

    b1, b2, b3, b4 = corpus_bleu(hyps, refs, max_n=4)
    rouge = rouge_f1(hyps, refs)
    rl_how2, _ = how2_rouge_l(hyps, refs)
    cider, _ = cider_d(hyps, refs)
    if meteor is False:
        met: float | str = "unavailable: disabled (--no-meteor)"
    elif isinstance(meteor, Meteor):
        met = meteor_or_reason(hyps, refs, scorer=meteor)
    else:
        met = meteor_or_reason(hyps, refs)
    return {
        "bleu1": 100 * b1, "bleu2": 100 * b2, "bleu3": 100 * b3, "bleu4": 100 * b4,
        "rouge1": 100 * rouge["rouge1"], "rouge2": 100 * rouge["rouge2"], "rougeL": 100 * rouge["rougeL"],
        "rougeL_how2": 100 * rl_how2,
        "meteor": met,
        "cider": cider,
    }
