"""The decoding contract for every model family: teacher-forced logits == uncached steps ==
cached incremental steps; beams share memories (enc["group"]) and reorder correctly."""

import pytest
import torch

from mcls.model import PRESETS, build_model

TINY = dict(d_model=16, ffn_dim=32, heads=2, enc_layers=2, dec_layers=2, dropout=0.0,
            rnn_emb=8, rnn_hidden=12, rnn_layers=2, rnn_dropout=0.0)
V, DV = 23, 10


pytestmark = pytest.mark.usefixtures("one_thread")


def make_batch(b=3, n=7, k=5, l=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V, (b, n), generator=g)
    src[1, 5:] = 0
    src[2, 3:] = 0
    video = torch.randn(b, k, DV, generator=g, dtype=torch.float64)
    mask = torch.ones(b, k, dtype=torch.bool)
    mask[0, 3:] = False
    video[~mask] = 0
    tgt = torch.randint(3, V, (b, l), generator=g)
    tgt[:, 0] = 1
    return dict(src=src, video=video, video_mask=mask, tgt_in=tgt)


def model(name):
    torch.manual_seed(0)
    return build_model(name, TINY, V, V, DV).double().eval()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_cached_equals_uncached_equals_forward(name):
    m, b = model(name), make_batch()
    with torch.no_grad():
        ref = torch.log_softmax(m(b), dim=-1)  # (B, l, V)
        enc = m.encode(b)
        cache = {}
        for t in range(1, b["tgt_in"].size(1) + 1):
            prefix = b["tgt_in"][:, :t]
            cached = m.decode_step(prefix, enc, cache)
            uncached = m.decode_step(prefix, enc, None)
            torch.testing.assert_close(uncached, ref[:, t - 1], rtol=0, atol=1e-10, msg=f"{name} step {t}: uncached")
            torch.testing.assert_close(cached, uncached, rtol=0, atol=1e-10, msg=f"{name} step {t}: cached")


@pytest.mark.parametrize("name", ["vdf", "mffg", "ha-tf", "mt", "ha", "videornn", "s2s"])
def test_beams_share_memories_and_reorder(name):
    """Expand to beams of 3 (memories stay one row per input), decode with random within-beam
    reorders and a dropped input; compare every step with a model fed the explicit rows."""
    m, b = model(name), make_batch()
    beam, steps = 3, 5
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        enc = m.encode(b)
        cache = {}
        enc, cache = m.reorder(enc, cache, torch.arange(3).repeat_interleave(beam))
        assert enc["group"] == beam
        tokens = torch.full((3 * beam, 1), 1)
        inputs = torch.arange(3).repeat_interleave(beam)  # input of every row
        for step in range(steps):
            lp = m.decode_step(tokens, enc, cache)
            # reference: every row decoded alone from scratch with its own input
            for r in range(tokens.size(0)):
                one = {k: v[inputs[r] : inputs[r] + 1] for k, v in b.items() if k != "tgt_in"}
                ref = m.decode_step(tokens[r : r + 1], m.encode(one), None)
                torch.testing.assert_close(lp[r : r + 1], ref, rtol=0, atol=1e-10, msg=f"{name} step {step} row {r}")
            groups = tokens.size(0) // beam
            order = torch.cat([i * beam + torch.randint(0, beam, (beam,), generator=g) for i in range(groups)])
            if step == 2:  # the middle input finishes: drop its beam
                keep = [i for i in range(groups) if i != 1]
                order = order.view(groups, beam)[keep].reshape(-1)
            enc, cache = m.reorder(enc, cache, order)
            assert enc["group"] == beam
            new = torch.randint(3, V, (order.numel(), 1), generator=g)
            tokens = torch.cat([tokens[order], new], dim=1)
            inputs = inputs[order]


def test_reorder_falls_back_to_one_memory_row_per_decoder_row():
    m, b = model("vdf"), make_batch()
    with torch.no_grad():
        enc = m.encode(b)
        cache = {}
        tokens = torch.full((3, 1), 1)
        m.decode_step(tokens, enc, cache)
        order = torch.tensor([2, 0, 0, 1, 2])  # not beam-shaped: runs of different lengths
        enc2, cache2 = m.reorder(enc, cache, order)
        assert enc2["group"] == 1 and enc2["text"].size(0) == 5
        tokens2 = torch.cat([tokens[order], torch.full((5, 1), 7)], 1)
        got = m.decode_step(tokens2, enc2, cache2)
        for r, i in enumerate(order.tolist()):
            one = {k: v[i : i + 1] for k, v in b.items() if k != "tgt_in"}
            ref = m.decode_step(tokens2[r : r + 1], m.encode(one), None)
            torch.testing.assert_close(got[r : r + 1], ref, rtol=0, atol=1e-10)


def test_cache_refuses_a_stale_prefix():
    m, b = model("ncls"), make_batch()
    with torch.no_grad():
        enc = m.encode(b)
        cache = {}
        m.decode_step(b["tgt_in"][:, :2], enc, cache)
        with pytest.raises(AssertionError, match="cache already holds 2 positions, tokens have 2"):
            m.decode_step(b["tgt_in"][:, :2], enc, cache)
