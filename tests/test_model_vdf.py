"""VDF equations (FGF eq. 4, cascade eqs. 5-7), video masking, text-encoder features for
distillation, positions, stage-3 surgery."""

from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from mcls.model import build_model, build_text_encoder, model_from_config
from mcls.model.fusion import CascadedVideoAttention, ForgetGateFusion
from mcls.model.layers import LearnedPositions

TINY = dict(d_model=16, ffn_dim=32, heads=2, enc_layers=2, dec_layers=2, dropout=0.0)
V, DV = 29, 12


pytestmark = pytest.mark.usefixtures("one_thread")


def batch(seed=0, b=3, n=7, k=5, l=6):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, V, (b, n), generator=g)
    src[0, 4:] = 0
    src[2, 6:] = 0
    video = torch.randn(b, k, DV, generator=g, dtype=torch.float64).abs()
    mask = torch.ones(b, k, dtype=torch.bool)
    mask[1, 2:] = False
    video[~mask] = 0
    tgt = torch.randint(3, V, (b, l), generator=g)
    tgt[:, 0] = 1
    return dict(src=src, video=video, video_mask=mask, tgt_in=tgt)


def tiny(name, **kw):
    torch.manual_seed(1)
    return build_model(name, TINY, V, V, DV, **kw).double().eval()


@pytest.mark.parametrize("n", [3, 8], ids=["direct k>=n", "reassociated k<n"])
def test_fgf_is_equation_4(n):
    torch.manual_seed(0)
    fgf = ForgetGateFusion(4, 6).double()
    t = torch.randn(2, n, 4, dtype=torch.float64)
    v = torch.randn(2, 5, 6, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = fgf(t, v, mask)
    scores = (t @ fgf.w_q.weight.T) @ v.transpose(1, 2) / 8  # (B, n, k)
    alpha = torch.softmax(scores.masked_fill(~mask[:, None], float("-inf")), dim=-1)
    v_t = alpha @ v
    memory = v_t @ fgf.w_m.weight.T + fgf.w_m.bias
    gate = torch.sigmoid(torch.cat([t, v_t], -1) @ fgf.w_g.weight.T)
    expect = t + torch.cat([t, memory * gate], -1) @ fgf.w_f.weight.T + fgf.w_f.bias
    torch.testing.assert_close(out, expect)
    # padded clips do not take part
    v2 = v.clone()
    v2[0, 3:] = 100.0
    torch.testing.assert_close(fgf(t, v2, mask), out)
    # gradients agree with the textbook formula too
    t.requires_grad_(True)
    g1 = torch.autograd.grad(fgf(t, v, mask).sum(), [t, fgf.w_m.weight, fgf.w_g.weight])
    v_t = torch.softmax(((t @ fgf.w_q.weight.T) @ v.transpose(1, 2) / 8).masked_fill(~mask[:, None], float("-inf")), -1) @ v
    e = t + torch.cat([t, (v_t @ fgf.w_m.weight.T + fgf.w_m.bias) * torch.sigmoid(torch.cat([t, v_t], -1) @ fgf.w_g.weight.T)], -1) @ fgf.w_f.weight.T
    g2 = torch.autograd.grad(e.sum(), [t, fgf.w_m.weight, fgf.w_g.weight])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_cascade_is_equations_6_and_7():
    torch.manual_seed(0)
    cas = CascadedVideoAttention(4, 6, dropout=0.0).double()
    for p in cas.layer_norm.parameters():  # non-trivial LayerNorm affine
        torch.nn.init.normal_(p)
    x = torch.randn(2, 3, 4, dtype=torch.float64)  # C^X + C^Y
    v = torch.randn(2, 5, 6, dtype=torch.float64)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 4:] = False
    h = F.layer_norm(x, (4,), cas.layer_norm.weight, cas.layer_norm.bias)
    scores = (h @ cas.w_a.weight.T) @ v.transpose(1, 2) / 8
    c_v = torch.softmax(scores.masked_fill(~mask[:, None], float("-inf")), -1) @ v  # eq. (6)
    expect = torch.cat([h, c_v], -1) @ cas.w_de.weight.T + cas.w_de.bias + x  # eq. (7)
    torch.testing.assert_close(cas(x, v, mask), expect)
    # the reassociated memory path (used while decoding incrementally) gives the same result
    torch.testing.assert_close(cas(x, v, mask, cas.memory(v)), expect)
    v_short = v[:, :1]  # one clip: the cheaper association is the reassociated one
    h_short = torch.softmax(torch.zeros(2, 3, 1, dtype=torch.float64), -1) @ v_short
    expect_short = torch.cat([h, h_short], -1) @ cas.w_de.weight.T + cas.w_de.bias + x
    torch.testing.assert_close(cas(x, v_short, mask[:, :1]), expect_short)
    # grouped queries (a beam of 3 rows per input) attend their own input's video
    xg = x.repeat_interleave(3, 0)
    torch.testing.assert_close(cas(xg, v, mask), expect.repeat_interleave(3, 0))


def test_video_mask_switch():
    b = batch()
    b2 = dict(b, video=b["video"].clone())
    b2["video"][1, 2:] = 7.0  # change only padded clips of input 1
    masked = tiny("vdf")
    torch.testing.assert_close(masked(b), masked(b2))
    published = tiny("vdf", video_mask=False)
    out1, out2 = published(b), published(b2)
    assert (out1[1] - out2[1]).abs().max() > 1e-3, "video_mask=False must attend padded clips"
    torch.testing.assert_close(out1[0], out2[0])  # other inputs unaffected


def test_inputs_are_independent_of_batch_padding():
    b = batch()
    for name in ["vdf", "mffg", "ha-tf", "ha", "mt"]:
        m = tiny(name)
        full = m(b)
        for i in range(3):
            n = int(b["src"][i].ne(0).sum())
            k = int(b["video_mask"][i].sum())
            one = dict(src=b["src"][i : i + 1, :n], video=b["video"][i : i + 1, :k],
                       video_mask=b["video_mask"][i : i + 1, :k], tgt_in=b["tgt_in"][i : i + 1])
            torch.testing.assert_close(m(one), full[i : i + 1], msg=f"{name}: input {i} depends on padding")


def test_encode_text_layers_for_distillation():
    m = tiny("vdf")
    src = batch()["src"]
    te = m.text_encoder
    e0 = m.encode_text(src, layer=0)
    expect0 = te.embed_tokens(src) + te.embed_positions(src)
    torch.testing.assert_close(e0, expect0)
    assert e0[0, 4:].abs().sum() == 0  # pad tokens: zero embedding and zero position
    pre = m.encode_text(src, layer=2, pre_final_ln=True)
    post = m.encode_text(src, layer=2)
    torch.testing.assert_close(te.layer_norm(pre), post)
    torch.testing.assert_close(m.encode_text(src), post)  # default: all layers, post-LN = T_Trm
    one = m.encode_text(src, layer=1)
    assert not torch.allclose(one, post)
    ncls = tiny("ncls")
    torch.testing.assert_close(ncls.encode(dict(src=src))["text"], ncls.encode_text(src))


def test_learned_positions_fairseq_style():
    pos = LearnedPositions(8, 3)
    assert pos.weight.shape[0] == 9  # max positions + pad + 1
    toks = torch.tensor([[5, 6, 7, 0], [5, 0, 0, 0]])
    rows = torch.tensor([[1, 2, 3, 0], [1, 0, 0, 0]])  # real tokens from row 1, pads row 0
    torch.testing.assert_close(pos(toks), pos.weight[rows])
    torch.testing.assert_close(pos(torch.tensor([[9]]), start=2), pos.weight[torch.tensor([[3]])])  # incremental step 3


def test_stage3_surgery_swaps_only_the_text_encoder():
    torch.manual_seed(0)
    stage1 = build_model("vdf", TINY, V, V, DV, share_src_tgt_embedding=True)
    student = build_model("vdf", TINY, 17, V, DV).text_encoder  # stage 2 trains a fresh encoder on Pt
    stage3 = build_model("vdf", TINY, 17, V, DV)
    sd = {k: v for k, v in stage1.state_dict().items() if not k.startswith("text_encoder.")}
    sd.update({f"text_encoder.{k}": v for k, v in student.state_dict().items()})
    stage3.load_state_dict(sd, strict=True)
    torch.testing.assert_close(stage3.decoder.embed_tokens.weight, stage1.decoder.embed_tokens.weight)
    torch.testing.assert_close(stage3.text_encoder.embed_tokens.weight, student.embed_tokens.weight)
    torch.testing.assert_close(stage3.fusion.fgf.w_q.weight, stage1.fusion.fgf.w_q.weight)
    assert stage3.text_encoder.embed_tokens is not stage3.decoder.embed_tokens
    # stage 1 state dict carries the shared embedding under both names
    sd1 = stage1.state_dict()
    assert sd1["text_encoder.embed_tokens.weight"].data_ptr() == sd1["decoder.embed_tokens.weight"].data_ptr()


def test_published_decoder_layer_norm_quirk():
    b = batch()
    plain, quirk = tiny("vdf"), tiny("vdf", dec_ffn_ln_twice=True)
    quirk.load_state_dict(plain.state_dict())
    assert not torch.allclose(plain(b), quirk(b))
    # the quirk normalises every decoder layer's output
    layer = quirk.decoder.layers[1]
    seen = {}
    layer.register_forward_hook(lambda mod, inp, out: seen.setdefault("out", out))
    quirk(b)
    out = seen["out"]
    expect = F.layer_norm(out, (16,), layer.final_layer_norm.weight, layer.final_layer_norm.bias)
    torch.testing.assert_close(out, expect, atol=1e-4, rtol=0)  # LN at its initial (1, 0) affine is idempotent up to eps


def test_swap_text_encoder_for_stage3_keeps_config_consistent():
    for parts in ("all", "embeddings"):
        torch.manual_seed(0)
        stage1 = build_model("vdf", TINY, V, V, DV, share_src_tgt_embedding=True)
        en_embedding = stage1.decoder.embed_tokens.weight.detach().clone()
        old_layer = stage1.text_encoder.layers[0].self_attn.q_proj.weight.detach().clone()
        student = build_text_encoder(stage1.config, src_vocab=17)
        assert student.embed_tokens.num_embeddings == 17 and len(student.layers) == 2
        stage1.swap_text_encoder(student, parts=parts)
        assert stage1.config.src_vocab == 17 and not stage1.config.share_src_tgt_embedding
        assert stage1.text_encoder.embed_tokens is student.embed_tokens
        torch.testing.assert_close(stage1.decoder.embed_tokens.weight, en_embedding)
        kept = stage1.text_encoder.layers[0].self_attn.q_proj.weight
        assert torch.equal(kept, old_layer) == (parts == "embeddings")
        rebuilt = model_from_config(asdict(stage1.config))
        rebuilt.load_state_dict(stage1.state_dict(), strict=True)
        assert rebuilt.num_parameters() == stage1.num_parameters()
        src = torch.randint(3, 17, (2, 5))
        out = stage1(dict(src=src, video=torch.rand(2, 3, DV), tgt_in=torch.ones(2, 2, dtype=torch.long)))
        assert out.shape == (2, 2, V)
