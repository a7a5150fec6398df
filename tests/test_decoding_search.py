"""Beam search and greedy decoding on hand-written probability tables with known answers, an
exhaustive check, and greedy == beam 1 on real (tiny) models."""

import itertools
import math
import random

import pytest
import torch

from mcls.decoding import beam_search, decode, greedy, search_step
from mcls.model import build_model

EOS, A, B, C = 1, 3, 4, 5  # ids: 0 pad, 1 eos, 2 unk, then words
VOCAB = 6
NAMES = {A: "a", B: "b", C: "c"}


pytestmark = pytest.mark.usefixtures("one_thread")


class TableModel:
    """Implements the decoding contract: P(next | prefix) comes from a per-input table
    {prefix tuple: {token: prob}}; prefixes not in the table end with probability 1."""

    def __init__(self, tables):
        self.tables = tables
        self.calls = 0

    def encode(self, batch):
        return {"input": batch["src"][:, 0].clone(), "group": 1}

    def reorder(self, enc, cache, order):
        return {"input": enc["input"][order // enc["group"]], "group": 1}, cache

    def decode_step(self, tokens, enc, cache=None):
        self.calls += 1
        g = tokens.size(0) // enc["input"].size(0)
        out = torch.full((tokens.size(0), VOCAB), float("-inf"), dtype=torch.float64)
        for r in range(tokens.size(0)):
            table = self.tables[int(enc["input"][r // g])]
            prefix = tuple(tokens[r, 1:].tolist())
            dist = table(prefix) if callable(table) else table.get(prefix, {EOS: 1.0})
            for tok, p in dist.items():
                out[r, tok] = math.log(p)
        return out


def inputs(*which):
    return {"src": torch.tensor([[w] for w in which])}


# T1: the 2 x beam EOS rule. Beam 2, step 1 ranks: b-eos -1.0217, a-a -1.4271, a-eos -1.5607,
# a-b -1.8971: "b" ends (rank 0), "a"+EOS is ranked 3rd so it is dropped, a-a and a-b go on.
T1 = {(): {A: 0.6, B: 0.4}, (A,): {A: 0.4, EOS: 0.35, B: 0.25}, (B,): {EOS: 0.9, A: 0.1}}
# T2: beam beats greedy. Greedy: a c (ln .55 + ln .4) / 3 = -0.5047; beam 2: b c -0.3013.
T2 = {(): {A: 0.55, B: 0.45}, (A,): {C: 0.4, A: 0.35, B: 0.25}, (B,): {C: 0.9, A: 0.1}}
# T3: an input finishing early (with min_len=0): "" at step 0 (ln .7), "a" at step 1 ((ln .3) / 2).
T3 = {(): {EOS: 0.7, A: 0.3}}
# T4: stop_early. Beam 2: "b" ends at step 1, "a a" at step 2 -> 2 finalised, the search stops
# although "a a a" (step 3) is better; stop_early=False goes on and replaces the worst.
T4 = {(): {A: 0.5, B: 0.3, C: 0.2}, (A,): {A: 0.99, EOS: 0.01}, (A, A): {A: 0.99, EOS: 0.01}}


def ln(*ps):
    return sum(math.log(p) for p in ps)


def test_search_step_picks_2x_beam_best_and_only_beam_0_first():
    lprobs = torch.log(torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]]))  # (1, beam 2, V 4)
    s, tok, beams = search_step(lprobs, torch.zeros(1, 2), step=0)
    assert tok.tolist() == [[3, 2, 1, 0]] and beams.tolist() == [[0, 0, 0, 0]]  # beam 1 ignored at step 0
    s, tok, beams = search_step(lprobs, torch.tensor([[-1.0, -2.0]]), step=1)
    torch.testing.assert_close(s, torch.tensor([[-1 + math.log(0.4), -1 + math.log(0.3), -2 + math.log(0.7), -1 + math.log(0.2)]]))
    assert tok.tolist() == [[3, 2, 0, 1]] and beams.tolist() == [[0, 0, 1, 0]]


def test_fairseq_eos_rule_on_table_t1():
    (hyps,) = beam_search(TableModel([T1]), inputs(0), beam=2, nbest=5)
    got = [(h.tokens, round(h.score, 4)) for h in hyps]
    assert got == [([A, A], round(ln(0.6, 0.4) / 3, 4)), ([B], round(ln(0.4, 0.9) / 2, 4))], got
    assert got == [([3, 3], -0.4757), ([4], -0.5108)]
    assert all(h.tokens != [A] for h in hyps), "a+EOS ranked beyond the beam must not be finalised"
    for h in hyps:
        assert math.isclose(sum(h.positional_scores), h.log_prob, abs_tol=1e-9)
        assert len(h.positional_scores) == len(h.tokens) + 1


def test_beam_finds_what_greedy_misses_on_table_t2():
    (hyps,) = beam_search(TableModel([T2]), inputs(0), beam=2, nbest=2)
    assert [(h.tokens, round(h.score, 4)) for h in hyps] == [([B, C], -0.3013), ([A, C], -0.5047)]
    assert math.isclose(hyps[0].log_prob, ln(0.45, 0.9), abs_tol=1e-12)
    (g,) = greedy(TableModel([T2]), inputs(0))
    assert g[0].tokens == [A, C] and math.isclose(g[0].score, ln(0.55, 0.4) / 3, abs_tol=1e-12)


def test_batched_inputs_finish_at_different_steps():
    model = TableModel([T1, T2, T3])
    res = beam_search(model, inputs(0, 1, 2), beam=2, nbest=2, min_len=0)
    assert [h.tokens for h in res[0]] == [[A, A], [B]]
    assert [h.tokens for h in res[1]] == [[B, C], [A, C]]
    assert [(h.tokens, round(h.score, 4)) for h in res[2]] == [([], round(ln(0.7), 4)), ([A], round(ln(0.3) / 2, 4))]
    # and each input alone gives the same
    for i, table in enumerate([T1, T2, T3]):
        (alone,) = beam_search(TableModel([table]), inputs(0), beam=2, nbest=2, min_len=0)
        assert [(h.tokens, h.score) for h in alone] == [(h.tokens, h.score) for h in res[i]]


def test_max_len_forces_eos_and_length_penalty():
    always = lambda prefix: {A: 0.9, EOS: 0.1}  # noqa: E731
    for lenpen, expect in [(1.0, ln(0.9, 0.9, 0.1) / 3), (0.0, ln(0.9, 0.9, 0.1)), (2.0, ln(0.9, 0.9, 0.1) / 9)]:
        (hyps,) = beam_search(TableModel([always]), inputs(0), beam=1, max_len=2, lenpen=lenpen)
        assert hyps[0].tokens == [A, A] and math.isclose(hyps[0].score, expect, abs_tol=1e-12), (lenpen, hyps[0])
    (g,) = greedy(TableModel([always]), inputs(0), max_len=2)
    assert g[0].tokens == [A, A] and math.isclose(g[0].log_prob, ln(0.9, 0.9, 0.1), abs_tol=1e-12)


def test_min_len_blocks_early_eos():
    (hyps,) = beam_search(TableModel([T3]), inputs(0), beam=2, nbest=2)  # default min_len=1
    assert [h.tokens for h in hyps] == [[A]]  # "" is forbidden; a is the only finite path
    (g,) = greedy(TableModel([T3]), inputs(0))
    assert g[0].tokens == [A]
    (g,) = greedy(TableModel([T3]), inputs(0), min_len=0)
    assert g[0].tokens == []


def test_stop_early_and_its_alternative():
    (early,) = beam_search(TableModel([T4]), inputs(0), beam=2, nbest=2, max_len=4)
    assert [(h.tokens, round(h.score, 4)) for h in early] == [([B], round(ln(0.3) / 2, 4)), ([A, A], round(ln(0.5, 0.99, 0.01) / 3, 4))]
    (late,) = beam_search(TableModel([T4]), inputs(0), beam=2, nbest=2, max_len=4, stop_early=False)
    assert [(h.tokens, round(h.score, 4)) for h in late] == [([A, A, A], round(ln(0.5, 0.99, 0.99) / 4, 4)), ([B], -0.602)]


def random_table(seed, words=(A, B, C)):
    rng = random.Random(seed)
    table = {}
    for depth in range(3):
        for prefix in itertools.product(words, repeat=depth):
            ps = [rng.random() + 0.05 for _ in range(len(words) + 1)]
            z = sum(ps)
            table[prefix] = dict(zip((EOS, *words), (p / z for p in ps)))
    table_full = dict(table)
    for prefix in itertools.product(words, repeat=3):  # depth 3: only EOS allowed at max_len 3
        table_full[prefix] = {EOS: 1.0, A: 0.0001}  # A is masked by max_len anyway
    return table_full


def exhaustive(table, max_len, lenpen, words=(A, B, C)):
    out = []
    for n in range(max_len + 1):
        for seq in itertools.product(words, repeat=n):
            lp, prefix = 0.0, ()
            for tok in seq:
                lp += math.log(table[prefix][tok])
                prefix = prefix + (tok,)
            lp += math.log(table[prefix][EOS])
            out.append((list(seq), lp / (n + 1) ** lenpen))
    return sorted(out, key=lambda x: -x[1])


@pytest.mark.parametrize("seed", range(3))
def test_wide_beam_is_exhaustive(seed):
    table = random_table(seed)
    (hyps,) = beam_search(TableModel([table]), inputs(0), beam=64, max_len=3, nbest=100, min_len=0)
    expect = exhaustive(table, 3, 1.0)
    assert len(hyps) == len(expect) == 40
    for h, (toks, score) in zip(hyps, expect):
        assert h.tokens == toks and math.isclose(h.score, score, abs_tol=1e-9), (h, toks, score)


@pytest.mark.parametrize("seed", range(4))
def test_greedy_equals_beam_1_on_tables(seed):
    tables = [random_table(seed * 10 + i) for i in range(3)]
    g = greedy(TableModel(tables), inputs(0, 1, 2), max_len=3)
    b = beam_search(TableModel(tables), inputs(0, 1, 2), beam=1, max_len=3)
    for x, y in zip(g, b):
        assert x[0].tokens == y[0].tokens and math.isclose(x[0].score, y[0].score, abs_tol=1e-9)


TINY = dict(d_model=16, ffn_dim=32, heads=2, enc_layers=1, dec_layers=2, dropout=0.0,
            rnn_emb=8, rnn_hidden=12, rnn_layers=1, rnn_dropout=0.0)


@pytest.mark.parametrize("name", ["vdf", "mt", "ha"])
def test_real_models_greedy_equals_beam_1_and_cache_does_not_change_results(name):
    torch.manual_seed(3)
    m = build_model(name, TINY, 19, 19, 6).eval()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, 19, (4, 6), generator=g)
    src[2, 4:] = 0
    video = torch.randn(4, 5, 6, generator=g).abs()
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 3:] = False
    batch = dict(src=src, video=video, video_mask=mask)
    gr = greedy(m, batch, max_len=15)
    b1 = beam_search(m, batch, beam=1, max_len=15)
    assert [h[0].tokens for h in gr] == [h[0].tokens for h in b1]
    for x, y in zip(gr, b1):
        assert math.isclose(x[0].score, y[0].score, rel_tol=1e-5)
    cached = beam_search(m, batch, beam=4, max_len=15, nbest=4)
    uncached = beam_search(m, batch, beam=4, max_len=15, nbest=4, use_cache=False)
    assert [[h.tokens for h in hs] for hs in cached] == [[h.tokens for h in hs] for hs in uncached]
    best = decode(m, batch, mode="beam", beam=4, max_len=15)
    assert [h.tokens for h in best] == [hs[0].tokens for hs in cached]
    assert all(len(hs) >= 1 and hs == sorted(hs, key=lambda h: -h.score) for hs in cached)
    with pytest.raises(ValueError, match="mode 'sample'"):
        decode(m, batch, mode="sample")


def test_input_without_live_hypotheses_stops():
    model = TableModel([T3])
    (hyps,) = beam_search(model, inputs(0), beam=2, min_len=1, nbest=2, max_len=200)
    assert [h.tokens for h in hyps] == [[A]]
    assert model.calls == 2, f"decoded {model.calls} steps; nothing was left to finalise after step 1"
