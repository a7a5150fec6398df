"""Parameter counts of the paper-size VDF, parameter names, presets, configs."""

from dataclasses import asdict

import pytest
import torch

from mcls.errors import ConfigError
from mcls.model import PRESETS, ModelConfig, build_model, model_from_config

PAPER = dict(d_model=512, ffn_dim=2048, heads=8, enc_layers=4, dec_layers=4, dropout=0.1)
EN, PT = 78_123, 55_784  # published dictionaries (78,120 / 55,781 words + specials)
TINY = dict(d_model=16, ffn_dim=32, heads=2, enc_layers=2, dec_layers=2, dropout=0.0,
            rnn_emb=8, rnn_hidden=12, rnn_layers=1, rnn_dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def meta_model(*args, **kw):
    with torch.device("meta"):  # count without allocating 90M parameters
        return build_model(*args, **kw)


def test_paper_vdf_stage1_count():
    m = meta_model("vdf", PAPER, EN, EN, 2048, share_src_tgt_embedding=True)
    assert m.num_parameters() == 89_899_008, m.num_parameters()
    assert m.text_encoder.embed_tokens is m.decoder.embed_tokens


def test_paper_vdf_stage3_count():
    m = meta_model("vdf", PAPER, PT, EN, 2048)
    assert m.num_parameters() == 118_460_416, m.num_parameters()
    assert m.num_parameters() - 89_899_008 == PT * 512


def test_paper_vdf_count_by_part():
    """The itemised arithmetic of docs/model.md."""
    m = meta_model("vdf", PAPER, EN, EN, 2048, share_src_tgt_embedding=True)

    def count(prefix):
        return sum(p.numel() for n, p in m.named_parameters() if n.startswith(prefix))

    layer_enc = 4 * (512 * 512 + 512) + 2 * 1024 + (512 * 2048 + 2048) + (2048 * 512 + 512)
    assert count("text_encoder.embed_tokens") == EN * 512
    assert count("text_encoder.embed_positions") == 1025 * 512
    assert count("text_encoder.layers") == 4 * layer_enc
    assert count("video_encoder") == 1030 * 2048
    assert count("fusion.fgf") == 512 * 2048 + (2048 * 2048 + 2048) + 2560 * 2048 + (2560 * 512 + 512)
    assert count("fusion.layers") == layer_enc
    assert count("decoder.layers.0.cascade") == 512 * 2048 + (2560 * 512 + 512) + 1024
    assert count("decoder.embed_tokens") == 0  # shared: named once, under text_encoder
    assert count("decoder.embed_positions") == 1025 * 512


def test_parameter_names_are_stable():
    m = build_model("vdf", TINY, 11, 13, 6)
    names = set(dict(m.named_parameters()))
    for n in ["text_encoder.embed_tokens.weight", "text_encoder.embed_positions.weight",
              "text_encoder.layers.0.self_attn.q_proj.weight", "text_encoder.layers.1.final_layer_norm.bias",
              "text_encoder.layer_norm.weight", "video_encoder.embed_positions.weight",
              "fusion.fgf.w_q.weight", "fusion.fgf.w_m.bias", "fusion.fgf.w_g.weight", "fusion.fgf.w_f.bias",
              "fusion.layers.0.self_attn.k_proj.weight", "fusion.layer_norm.weight",
              "decoder.embed_tokens.weight", "decoder.embed_positions.weight",
              "decoder.layers.0.cascade.w_a.weight", "decoder.layers.0.cascade.w_de.bias",
              "decoder.layers.0.cascade.layer_norm.weight", "decoder.layers.1.encoder_attn.v_proj.weight",
              "decoder.layer_norm.weight"]:
        assert n in names, f"{n} missing; have {sorted(names)[:8]}…"
    assert "fusion.fgf.w_q.bias" not in names and "decoder.layers.0.cascade.w_a.bias" not in names
    assert not any(n.startswith("decoder.layers.1.cascade") for n in names)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips(name):
    torch.manual_seed(0)
    m = build_model(name, TINY, 11, 13, 6)
    cfg = asdict(m.config)
    assert cfg["name"] == name
    again = model_from_config(cfg)
    sd1, sd2 = m.state_dict(), again.state_dict()
    assert {k: v.shape for k, v in sd1.items()} == {k: v.shape for k, v in sd2.items()}
    again.load_state_dict(sd1, strict=True)
    assert again.num_parameters() == m.num_parameters() > 0


def test_presets_pick_their_parts():
    def parts(name):
        c = build_model(name, TINY, 11, 13, 6).config
        return c.text_encoder, c.video_encoder, c.fusion, c.decoder, c.decoder_fusion

    assert parts("vdf") == ("transformer", "positions", "fgf", "transformer", "cascade")
    assert parts("vdf-no-ffenc") == ("transformer", "positions", "none", "transformer", "cascade")
    assert parts("vdf-no-cfdec") == ("transformer", "positions", "fgf", "transformer", "none")
    assert parts("vdf-no-video") == parts("ncls") == ("transformer", "none", "none", "transformer", "none")
    assert parts("mffg") == ("transformer", "positions", "mffg", "transformer", "hier")
    assert parts("ha") == ("bigru", "raw", "none", "cgru", "none")
    assert parts("videornn") == ("none", "bigru", "none", "cgru", "none")
    assert parts("mt") == ("none", "mt", "none", "mt", "none")
    assert parts("s2s") == ("bigru", "none", "none", "luong", "none")
    # MFFG's output projection is untied, everyone else's transformer output is tied
    assert build_model("mffg", TINY, 11, 13, 6).decoder.output_projection is not None
    assert build_model("vdf", TINY, 11, 13, 6).decoder.output_projection is None


def test_table_xi_fusion_positions_keep_the_size():
    base = build_model("vdf", TINY, 11, 13, 6)
    ee = build_model("vdf-enc-early-dec-late", TINY, 11, 13, 6)
    assert ee.num_parameters() == base.num_parameters()
    assert len(base.text_encoder.layers) == 2 and len(base.fusion.layers) == 1  # late: 2 text layers, FGF, 1 layer
    assert len(ee.text_encoder.layers) == 1 and len(ee.fusion.layers) == 2  # early: 1 text layer, FGF, 1 + 1 layers
    assert hasattr(base.decoder.layers[0], "cascade") and not hasattr(base.decoder.layers[1], "cascade")
    assert hasattr(ee.decoder.layers[1], "cascade") and not hasattr(ee.decoder.layers[0], "cascade")


def test_bad_configs_name_the_problem():
    with pytest.raises(ConfigError, match="unknown model preset 'vdff'"):
        build_model("vdff", TINY, 11, 13, 6)
    with pytest.raises(ConfigError, match="unknown key.*hidden"):
        build_model("vdf", {**TINY, "hidden": 3}, 11, 13, 6)
    with pytest.raises(ConfigError, match="src_vocab=11 != tgt_vocab=13"):
        build_model("vdf", TINY, 11, 13, 6, share_src_tgt_embedding=True)
    with pytest.raises(ConfigError, match="enc_fusion_layer 3 not in 1..enc_layers=2"):
        build_model("vdf", TINY, 11, 13, 6, enc_fusion_layer=3)
    with pytest.raises(ConfigError, match="decoder fusion needs video_encoder=positions"):
        ModelConfig(src_vocab=11, tgt_vocab=13, video_encoder="none", fusion="none")
    with pytest.raises(ConfigError, match="not divisible"):
        build_model("vdf", {**TINY, "heads": 3}, 11, 13, 6)


def test_init_follows_spec():
    torch.manual_seed(0)
    m = build_model("vdf", dict(PAPER, enc_layers=1, dec_layers=1), 300, 300, 2048)
    emb = m.text_encoder.embed_tokens.weight
    assert emb[0].abs().sum() == 0 and m.decoder.embed_tokens.weight[0].abs().sum() == 0  # pad rows
    assert m.text_encoder.embed_positions.weight[0].abs().sum() == 0
    assert abs(emb[1:].std().item() - (2 / 512) ** 0.5) < 0.01  # kaiming normal, fan_in = 512
    w = m.fusion.fgf.w_m.weight  # 2048 -> 2048
    assert abs(w.std().item() - (2 / 2048) ** 0.5) < 0.002
    for name, p in m.named_parameters():
        if name.endswith(".bias") and "layer_norm" not in name:
            assert p.abs().sum() == 0, f"{name} not zero-initialised"
