"""Metrics (SPEC §6): conformance with the How2 scorer, hand-computed cases, the METEOR jar, the CLI."""

from __future__ import annotations

import json
import math
import random
import shutil
import stat
from pathlib import Path

import pytest

from mcls import cli
from mcls.errors import DataError
from mcls.metrics import KEYS, Meteor, MeteorUnavailable, corpus_bleu, cider_d, how2_rouge_l, rouge_f1, score
from mcls.metrics.meteor import find_jar, meteor_or_reason
from mcls.metrics.rouge import lcs_length

REPO = Path(__file__).resolve().parents[1]
EVAL_DEMO = REPO.parent / "shared" / "how2-official" / "eval-demo"

# SPEC §6 conformance values with the number of decimals they are printed with.
SPEC_VALUES = {
    "bleu1": (39.114, 3), "bleu2": (23.515, 3), "bleu3": (12.008, 3), "bleu4": (6.576, 3),
    "rouge1": (40.41, 2), "rouge2": (14.55, 2), "rougeL": (31.32, 2),
    "rougeL_how2": (31.2, 1),  # the How2 scorer prints 0.312 (a fraction), i.e. 31.2
    "cider": (0.563, 3),
}
SPEC_METEOR = (17.18, 2)


def printed(value: float, decimals: int) -> float:
    """Tolerance: the value must round to the printed number (half a unit in the last place)."""
    return pytest.approx(value, abs=0.5 * 10 ** -decimals + 1e-12)


def demo() -> tuple[list[str], list[str]]:
    if not EVAL_DEMO.is_dir():
        pytest.skip(f"{EVAL_DEMO} is absent (the shared How2 eval-demo data)")
    hyps = (EVAL_DEMO / "demo.test.hypothesis").read_text(encoding="utf-8").splitlines()
    refs = (EVAL_DEMO / "demo.test.reference").read_text(encoding="utf-8").splitlines()
    return hyps, refs


def meteor_available() -> bool:
    if shutil.which("java") is None:
        return False
    try:
        return find_jar().is_file()
    except MeteorUnavailable:
        return False


# ---------------------------------------------------------------- conformance on How2 eval-demo

def test_conformance_eval_demo_without_meteor():
    hyps, refs = demo()
    result = score(hyps, refs, meteor=False)
    assert list(result) == list(KEYS)
    for key, (expected, decimals) in SPEC_VALUES.items():
        assert result[key] == printed(expected, decimals), key
    assert result["meteor"].startswith("unavailable: disabled")


def test_bleu_equals_sacrebleu_on_eval_demo():
    """SPEC §6: sacrebleu (no tokenization, no smoothing) matches when every order has a match."""
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = demo()
    ours = corpus_bleu(hyps, [[r] for r in refs])
    for n in range(1, 5):
        metric = sacrebleu.metrics.BLEU(tokenize="none", smooth_method="none", effective_order=False,
                                        max_ngram_order=n)
        assert 100 * ours[n - 1] == pytest.approx(metric.corpus_score(hyps, [refs]).score, rel=1e-9)


@pytest.mark.skipif(not meteor_available(), reason="java or the pycocoevalcap METEOR jar is absent")
def test_meteor_jar():
    """One JVM (~8 s): eval-demo conformance, several references, protocol-breaking text."""
    hyps, refs = demo()
    with Meteor() as m:
        value = meteor_or_reason(hyps, [[r] for r in refs], scorer=m)
        assert value == printed(*SPEC_METEOR)
        corpus, segs = m.score(["a cat sat on the mat .", ""], [["the cat sat on a mat ."], ["the dog ran ."]])
        assert segs[1] == 0.0 and 0.0 < segs[0] < 1.0
        # a duplicated reference changes nothing; an exactly matching second reference wins
        single = m.score(["a cat sat on the mat ."], [["the cat sat on a mat ."]])[0]
        assert m.score(["a cat sat on the mat ."], [["the cat sat on a mat ."] * 2])[0] == pytest.approx(single)
        assert m.score(["a cat sat on the mat ."], [["the dog ran .", "a cat sat on the mat ."]])[0] == 1.0
        # '|||' and newlines would break the line protocol: they are removed, the session keeps working
        assert m.score(["a ||| cat\nsat"], [["a cat sat"]])[0] == 1.0
        assert m.score(hyps, [[r] for r in refs])[0] == pytest.approx(value / 100)
        # no -norm: text is scored as given (with -norm the jar would lowercase, split 'sat.' and give 1.0)
        assert m.score(["The cat sat."], [["the cat sat ."]])[0] == pytest.approx(0.152866242, abs=1e-8)


# ---------------------------------------------------------------- BLEU by hand

def test_bleu_short_hypotheses_and_missing_orders():
    # hyp 1 has no 3-grams: it adds nothing to the 3-gram denominator (nltk would add 1 and get p3 = 1/2)
    hyps = ["the cat", "on the mat"]
    refs = [["the cat sat"], ["on the mat"]]
    b1, b2, b3, b4 = corpus_bleu(hyps, refs)
    bp = math.exp(1 - 6 / 5)  # c = 5 < r = 6
    assert b1 == pytest.approx(bp, rel=1e-8)
    assert b2 == pytest.approx(bp, rel=1e-8)
    assert b3 == pytest.approx(bp, rel=1e-8)
    # no 4-gram at all: p4 = 1e-15 / 1e-9, so BLEU-4 is small but not 0 (COCO epsilons)
    assert b4 == pytest.approx((1e-15 / 1e-9) ** 0.25 * bp, rel=1e-9)
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    nltk3 = nltk_bleu.corpus_bleu([[r.split() for r in rs] for rs in refs], [h.split() for h in hyps],
                                  weights=(1 / 3, 1 / 3, 1 / 3))
    assert nltk3 == pytest.approx((0.5 ** (1 / 3)) * bp)  # the difference SPEC §6 warns about
    assert abs(nltk3 - b3) > 0.1


def test_bleu_clipping_and_closest_reference_tie():
    # c = 4; references of length 2 and 6 are both 2 away: the shorter wins, so no brevity penalty
    b1, b2, b3, _ = corpus_bleu(["the the the cat"], [["the cat", "the cat on the mat ."]])
    assert b1 == pytest.approx(3 / 4)  # 'the' clipped to 2 (its maximum count in one reference)
    assert b2 == pytest.approx(math.sqrt(3 / 4 * 1 / 3))
    assert b3 == pytest.approx((3 / 4 * 1 / 3 * 1e-15 / (2 + 1e-9)) ** (1 / 3), rel=1e-9)


# ---------------------------------------------------------------- ROUGE by hand

def test_rouge_keeps_punctuation_and_does_not_stem():
    r = rouge_f1(["hello , world ."], [["hello world"]])
    assert r["rouge1"] == pytest.approx(2 / 3)  # P = 2/4, R = 2/2 (the default tokenizer would give 1.0)
    assert r["rouge2"] == 0.0  # 'hello ,' ', world' 'world .' vs 'hello world'
    assert r["rougeL"] == pytest.approx(2 / 3)
    r = rouge_f1(["cats running"], [["cat running"]])
    assert r["rouge1"] == pytest.approx(0.5)  # no stemming: cats != cat


def test_rouge_is_the_mean_of_pair_f1_and_reference_order_matters():
    r = rouge_f1(["a b c d", "x y"], [["a b c d"], ["p q"]])
    assert r["rouge1"] == pytest.approx(0.5) and r["rougeL"] == pytest.approx(0.5)
    # recall is against the reference: hyp 'a b' vs ref 'a b c d' → P = 1, R = 1/2
    r = rouge_f1(["a b"], [["a b c d"]])
    assert r["rouge1"] == pytest.approx(2 * 1 * 0.5 / 1.5)


def test_lcs_length():
    assert lcs_length("a b c b d a b".split(), "b d c a b a".split()) == 4
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(list("abc"), list("abc")) == 3


def test_how2_rouge_l_beta_and_multiple_references():
    # single reference: P = 1, R = 1/2, F_1.2 = 2.44 · 0.5 / (0.5 + 1.44)
    mean, per = how2_rouge_l(["a b c d"], [["a b c d e f g h"]])
    assert mean == pytest.approx(2.44 * 0.5 / 1.94)
    # max P (from the long reference) and max R (from the short one) are taken independently
    mean, per = how2_rouge_l(["a b c d", "z"], [["a b", "a b c d e f g h"], ["y"]])
    assert per == pytest.approx([1.0, 0.0])
    assert mean == pytest.approx(0.5)


# ---------------------------------------------------------------- CIDEr-D by hand

def test_cider_idf_comes_from_the_scored_set():
    hyps = ["a b", "a c", "e f"]
    refs = [["a b"], ["a d"], ["e f"]]
    mean, per = cider_d(hyps, refs)
    # segments 1 and 3 match exactly: cosine 1 for orders 1 and 2, 0 for 3 and 4 → 10 · 2/4
    assert per[0] == pytest.approx(5.0) and per[2] == pytest.approx(5.0)
    # segment 2: only 'a' matches; idf(a) = log 3 − log 2 (it is in 2 of the 3 reference sets),
    # idf(c) = idf(d) = log 3 (c unseen → df clipped to 1)
    a, c = math.log(3 / 2), math.log(3)
    assert per[1] == pytest.approx(10 / 4 * a * a / (a * a + c * c))
    assert mean == pytest.approx(sum(per) / 3)
    # scored without segment 1, 'a' is in 1 of 2 reference sets: the same pair scores differently
    _, per_subset = cider_d(hyps[1:], refs[1:])
    assert per_subset[0] == pytest.approx(10 / 4 * 0.5)
    # a set of one segment has idf 0 for every n-gram
    assert cider_d(["a b"], [["a b"]])[0] == 0.0


def test_cider_length_penalty_and_clipping():
    # identical bags of unigram/bigram weights except a repeated word: clipping caps its credit
    refs = [["x y"], ["p q"], ["r s"]]
    _, per = cider_d(["x y x y", "p q", "r s"], refs)
    w = math.log(3)
    # order 1: hyp {x:2w, y:2w}, ref {x:w, y:w}: Σ min·r = 2w², norms 2√2·w and √2·w → 1/2
    # order 2: hyp {xy:2w, yx:w} vs {xy:w}: min(2w,w)·w = w², norms √5·w and w → 1/√5
    # length 4 vs 2 tokens → penalty exp(−2²/(2·6²))
    expected = 10 / 4 * (0.5 + 1 / math.sqrt(5)) * math.exp(-4 / 72)
    assert per[0] == pytest.approx(expected)


# ---------------------------------------------------------------- against the COCO reference code

def _random_corpus(rng: random.Random, n: int):
    vocab = "a b c d e f g h . ,".split()
    sent = lambda lo, hi: " ".join(rng.choice(vocab) for _ in range(rng.randint(lo, hi)))  # noqa: E731
    hyps = [sent(0, 14) for _ in range(n)]
    refs = [[sent(1, 14) for _ in range(rng.randint(1, 3))] for _ in range(n)]
    return hyps, refs


def test_bleu_cider_rouge_l_equal_the_coco_scorer_on_random_sets(capsys):
    pytest.importorskip("pycocoevalcap.bleu.bleu")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    rng = random.Random(4)
    for trial in range(5):
        hyps, refs = _random_corpus(rng, 30)
        gts = {i: refs[i] for i in range(len(hyps))}
        res = {i: [hyps[i]] for i in range(len(hyps))}
        coco_bleu, _ = Bleu(4).compute_score(gts, res)
        assert corpus_bleu(hyps, refs) == pytest.approx(coco_bleu, rel=1e-9), trial
        coco_cider, coco_cider_seg = Cider().compute_score(gts, res)
        mean, per = cider_d(hyps, refs)
        assert mean == pytest.approx(coco_cider, rel=1e-9, abs=1e-12)
        assert per == pytest.approx(list(coco_cider_seg), rel=1e-9, abs=1e-12)
        coco_rouge, _ = Rouge().compute_score(gts, res)
        assert how2_rouge_l(hyps, refs)[0] == pytest.approx(coco_rouge, rel=1e-12)
    capsys.readouterr()  # the COCO BLEU scorer prints its statistics


# ---------------------------------------------------------------- input validation

def test_score_validates_its_input():
    with pytest.raises(DataError, match="0 segments"):
        score([], [], meteor=False)
    with pytest.raises(DataError, match="2 segments but .* has 1"):
        score(["a", "b"], ["a"], meteor=False)
    with pytest.raises(DataError, match="segment 2 has an empty reference"):
        score(["a", "b"], ["a", "  "], meteor=False)
    with pytest.raises(DataError, match="no reference"):
        score(["a"], [[]], meteor=False)
    # a list of strings and a list of one-element lists are the same references
    assert score(["a b c", "d e"], ["a b c", "d f"], meteor=False) == \
        score(["a b c", "d e"], [["a b c"], ["d f"]], meteor=False)


# ---------------------------------------------------------------- METEOR fallback (no JVM needed)

def _fake_jar_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "paraphrase-en.gz").write_bytes(b"")
    jar = tmp_path / "meteor-1.5.jar"
    jar.write_bytes(b"")
    return jar


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_meteor_unavailable_reasons(tmp_path, monkeypatch):
    value = meteor_or_reason(["a"], [["a"]], java="no-such-java-binary")
    assert value.startswith("unavailable: java not found")
    with pytest.raises(MeteorUnavailable, match="does not exist"):
        Meteor(java="sh", jar=tmp_path / "missing.jar")
    (tmp_path / "meteor-1.5.jar").write_bytes(b"")
    with pytest.raises(MeteorUnavailable, match="paraphrase table"):
        Meteor(java="sh", jar=tmp_path / "meteor-1.5.jar")
    monkeypatch.setenv("MCLS_METEOR_JAR", str(tmp_path / "elsewhere.jar"))
    assert find_jar() == tmp_path / "elsewhere.jar"


def test_meteor_failure_and_hang_are_reported(tmp_path):
    jar = _fake_jar_dir(tmp_path)
    crash = _script(tmp_path / "crash-java", "echo 'Error: Unable to access jarfile' >&2; exit 1")
    value = meteor_or_reason(["a"], [["a"]], java=crash, jar=jar)
    assert value.startswith("unavailable: METEOR jar") and "Unable to access jarfile" in value
    hang = _script(tmp_path / "hang-java", "exec sleep 30")
    with Meteor(java=hang, jar=jar, timeout_s=0.5) as m:
        with pytest.raises(MeteorUnavailable, match="timed out"):
            m.score(["a"], [["a"]])


# ---------------------------------------------------------------- CLI

def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["evaluate", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_text_and_jsonl_give_one_json_object(tmp_path, capsys):
    hyps = ["the cat sat on the mat .", "a dog , running", "hello world"]
    refs = ["the cat is on the mat .", "the dog runs", "hello there world"]
    refs2 = ["a cat sat on a mat .", "a dog , running", "hi world"]
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n")
    (tmp_path / "ref2.txt").write_text("\n".join(refs2))  # no final newline
    rc, out, _ = _run(capsys, "--hyp", str(tmp_path / "hyp.txt"), "--ref", str(tmp_path / "ref.txt"),
                      "--no-meteor", "--out", str(tmp_path / "m.json"))
    assert rc == 0 and len(out.strip().splitlines()) == 1
    printed_obj = json.loads(out)
    assert list(printed_obj) == list(KEYS)
    assert printed_obj["meteor"].startswith("unavailable: disabled")
    assert all(isinstance(printed_obj[k], float) for k in KEYS if k != "meteor")
    assert json.loads((tmp_path / "m.json").read_text()) == printed_obj
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left
    assert printed_obj == score(hyps, refs, meteor=False)

    lines = [json.dumps({"id": f"v{i}", "hypothesis": h, "reference": r}) for i, (h, r) in enumerate(zip(hyps, refs))]
    (tmp_path / "hypotheses.jsonl").write_text("\n".join(lines) + "\n")
    rc, out, _ = _run(capsys, "--jsonl", str(tmp_path / "hypotheses.jsonl"), "--no-meteor")
    assert rc == 0 and json.loads(out) == printed_obj

    # several --ref files = several references per segment
    rc, out, _ = _run(capsys, "--hyp", str(tmp_path / "hyp.txt"), "--ref", str(tmp_path / "ref.txt"),
                      str(tmp_path / "ref2.txt"), "--no-meteor")
    assert rc == 0 and json.loads(out) == score(hyps, [list(p) for p in zip(refs, refs2)], meteor=False)
    assert json.loads(out)["rouge1"] > printed_obj["rouge1"]


def test_cli_reports_input_errors(tmp_path, capsys):
    (tmp_path / "hyp.txt").write_text("a b\nc d\n")
    (tmp_path / "ref.txt").write_text("a b\n")
    (tmp_path / "empty.txt").write_text("")
    rc, out, err = _run(capsys, "--hyp", str(tmp_path / "hyp.txt"), "--ref", str(tmp_path / "ref.txt"), "--no-meteor")
    assert rc == 2 and out == ""
    assert "hyp.txt has 2 lines" in err and "ref.txt has 1" in err
    rc, _, err = _run(capsys, "--hyp", str(tmp_path / "empty.txt"), "--ref", str(tmp_path / "ref.txt"), "--no-meteor")
    assert rc == 2 and "empty.txt is empty" in err
    rc, _, err = _run(capsys, "--hyp", str(tmp_path / "nope.txt"), "--ref", str(tmp_path / "ref.txt"))
    assert rc == 2 and "nope.txt: file not found" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "hypothesis": "x", "reference": "y"}\n{"id": "a", "hypothesis": "x", "reference": "y"}\n')
    rc, _, err = _run(capsys, "--jsonl", str(bad), "--no-meteor")
    assert rc == 2 and "id 'a' on line 2 already appeared on line 1" in err
    bad.write_text('{"id": "a", "hypothesis": "x"}\n')
    rc, _, err = _run(capsys, "--jsonl", str(bad), "--no-meteor")
    assert rc == 2 and "line 1 must be an object with keys" in err
    rc, _, err = _run(capsys, "--no-meteor")
    assert rc == 2 and "nothing to score" in err
    assert not (tmp_path / "m.json").exists()
