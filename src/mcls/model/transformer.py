"""Transformer parts: the swappable text encoder (eq. 3), the video input (eq. 2 + learned
positions), the pre-LN decoder whose fusion layer is the cascade (eqs. 5-7) or the hierarchical
layer (MFFG / HA-TF), and the post-LN Masked Transformer (MT) video encoder and decoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .fusion import CascadedVideoAttention, HierarchicalAttention
from .layers import (
    PAD, EncoderLayer, FeedForward, LearnedPositions, MultiheadAttention, PostLNLayer,
    self_attention, sinusoid_table,
)


# --------------------------------------------------------------------------------------------
# Incremental-decoding cache helpers (shared by every decoder)
#   cache = {"len": t0, "static": <per-input tensors>, "step": <per-row tensors>}
#   "static" (memory keys/values, initial states) has B_enc rows and is computed once;
#   "step" (self-attention keys/values, RNN states) has one row per decoder row.
# --------------------------------------------------------------------------------------------
def new_positions(tokens, cache):
    """The part of `tokens` (B, t) not yet in `cache`, and how many positions precede it."""
    if cache is None:
        return tokens, 0
    start = cache.get("len", 0)
    assert start < tokens.size(1), f"cache already holds {start} positions, tokens have {tokens.size(1)}"
    cache["len"] = tokens.size(1)
    return tokens[:, start:], start


def static_memory(cache, compute):
    if cache is None:
        return compute()
    if "static" not in cache:
        cache["static"] = compute()
    return cache["static"]


def step_caches(cache, n: int):
    if cache is None:
        return [None] * n
    return cache.setdefault("step", [{} for _ in range(n)])


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------
class TextEncoder(nn.Module):
    """Eq. (3): T_Trm = BiTrm(X). Token embedding + learned positions (no sqrt(d) scaling; pads
    get the zero position), dropout, pre-LN layers, final LayerNorm.

    This module is what stage 2 distils and stage 3 swaps: it owns its token embedding
    (`embed_tokens`, shared with the decoder only in the stage-1 form) and positions."""

    def __init__(self, cfg, n_layers: int, embed_tokens: nn.Embedding | None = None):
        super().__init__()
        d = cfg.d_model
        self.embed_tokens = embed_tokens if embed_tokens is not None else nn.Embedding(cfg.src_vocab, d, padding_idx=PAD)
        self.embed_positions = LearnedPositions(cfg.max_positions, d)
        self.layers = nn.ModuleList(
            EncoderLayer(d, cfg.heads, cfg.ffn_dim, cfg.dropout, cfg.attn_dropout, cfg.act_dropout)
            for _ in range(n_layers)
        )
        self.layer_norm = nn.LayerNorm(d)
        self.dropout = cfg.dropout

    def embed(self, src):  # (B, n) -> (B, n, d): E_tok + P (the vocab-level KD target)
        return self.embed_tokens(src) + self.embed_positions(src)

    def forward(self, src, layer: int | None = None, pre_final_ln: bool = False):
        """(B, n) -> (B, n, d). `layer` = k returns the output after k layers (k = 0: E_tok + P,
        no dropout, no LayerNorm); the final LayerNorm is applied unless `pre_final_ln`."""
        n_layers = len(self.layers)
        k = n_layers if layer is None else layer
        assert 0 <= k <= n_layers, f"layer {k} not in 0..{n_layers}"
        x = self.embed(src)
        if k == 0:
            return x
        mask = src.ne(PAD)  # (B, n)
        x = F.dropout(x, self.dropout, self.training)
        for lyr in self.layers[:k]:
            x = lyr(x, mask)
        return x if pre_final_ln else self.layer_norm(x)


class VideoPositions(nn.Module):
    """Eq. (2) features V (k, Dv) + learned video positions (a 1030 x Dv table, rows 0..k-1,
    added to padded clips too, as published). No projection: the video stays Dv-d."""

    def __init__(self, cfg):
        super().__init__()
        self.embed_positions = nn.Embedding(cfg.max_video_positions, cfg.video_dim)

    def forward(self, video, mask):  # (B, k, Dv), (B, k)
        k = video.size(1)
        assert k <= self.embed_positions.num_embeddings, f"video has {k} clips > {self.embed_positions.num_embeddings} positions"
        return {"video": video + self.embed_positions.weight[:k], "video_mask": mask}


# --------------------------------------------------------------------------------------------
# Decoder (pre-LN) with one fusion layer
# --------------------------------------------------------------------------------------------
class DecoderLayer(nn.Module):
    """Pre-LN decoder layer; `fusion` selects the layer kind:
      none    : x += SelfAttn; x += EncAttn(T_en); x += FFN
      cascade : VDF's cascaded fusion layer, eqs. (5)-(7) (video attended after the text)
      hier    : MFFG / HA-TF layer: text and video attended in parallel from the same query,
                a shared LayerNorm on both contexts, hierarchical attention combines them.
    `ln_twice` reproduces the published layers, which apply final_layer_norm again after the
    FFN residual (x = LN3(x + FFN(LN3 x)))."""

    def __init__(self, cfg, fusion: str):
        super().__init__()
        d, h = cfg.d_model, cfg.heads
        self.self_attn = MultiheadAttention(d, h, cfg.attn_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = MultiheadAttention(d, h, cfg.attn_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        if fusion == "cascade":
            self.cascade = CascadedVideoAttention(d, cfg.video_dim, cfg.dropout)
        elif fusion == "hier":
            self.video_proj = nn.Linear(cfg.video_dim, d)  # V W_vp + b (2048 -> d), once per input
            self.video_attn = MultiheadAttention(d, h, cfg.attn_dropout)
            self.context_layer_norm = nn.LayerNorm(d)  # shared by both contexts
            self.hier_attention = HierarchicalAttention(d, d, d, 2, shared_ctx_proj=True, query_bias=False)
        else:
            assert fusion == "none", f"unknown decoder fusion {fusion!r}"
        self.ffn = FeedForward(d, cfg.ffn_dim, cfg.act_dropout)
        self.final_layer_norm = nn.LayerNorm(d)
        self.fusion, self.ln_twice, self.dropout = fusion, cfg.dec_ffn_ln_twice, cfg.dropout

    def memory(self, enc: dict, incremental: bool = False) -> dict:
        """Keys/values of the memories (B_enc rows), computed once per input."""
        k, v = self.encoder_attn.kv(enc["text"])  # (B, h, n, dh)
        st = {"k": k, "v": v}
        if self.fusion == "cascade" and incremental:
            st["cascade"] = self.cascade.memory(enc["video"])  # (B, k, d) keys and values
        if self.fusion == "hier":
            st["vk"], st["vv"] = self.video_attn.kv(self.video_proj(enc["video"]))  # (B, h, k, dh)
        return st

    def forward(self, x, enc, st, cache):  # x (Bq, t, d); Bq = g * B_enc
        drop = lambda y: F.dropout(y, self.dropout, self.training)  # noqa: E731
        # masked self-attention: C^X
        x = x + drop(self_attention(self.self_attn, self.self_attn_layer_norm(x), cache, causal=cache is None))
        h = self.encoder_attn_layer_norm(x)
        c_t = self.encoder_attn(h, st["k"], st["v"], mask=enc["text_mask"])  # C^Y = Att(C^X, T_en, T_en), eq. (5)
        if self.fusion == "hier":
            c_v = self.video_attn(h, st["vk"], st["vv"], mask=enc["video_mask"])
            ln = self.context_layer_norm
            x = x + drop(self.hier_attention([ln(drop(c_t)), ln(drop(c_v))], h))
        else:
            x = x + drop(c_t)  # C^X + C^Y
            if self.fusion == "cascade":
                x = self.cascade(x, enc["video"], enc["video_mask"], st.get("cascade"))  # C^M, eqs. (6)-(7)
        x = x + drop(self.ffn(self.final_layer_norm(x)))
        return self.final_layer_norm(x) if self.ln_twice else x


class TransformerDecoder(nn.Module):
    """Token embedding + learned positions, pre-LN layers (layer `dec_fusion_layer` is the fusion
    layer), final LayerNorm, output projection tied to the target embedding (MFFG: untied)."""

    def __init__(self, cfg, embed_tokens: nn.Embedding):
        super().__init__()
        d = cfg.d_model
        self.embed_tokens = embed_tokens
        self.embed_positions = LearnedPositions(cfg.max_positions, d)
        at = cfg.dec_fusion_index
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, cfg.decoder_fusion if i == at else "none") for i in range(cfg.dec_layers)
        )
        self.layer_norm = nn.LayerNorm(d)
        self.output_projection = None if cfg.tie_output else nn.Linear(d, cfg.tgt_vocab, bias=False)
        self.dropout = cfg.dropout

    def forward(self, tokens, enc, cache=None, last_only=False):  # tokens (Bq, t) -> (Bq, t', V)
        new, start = new_positions(tokens, cache)
        x = self.embed_tokens(new) + self.embed_positions(new, start)  # (Bq, t', d)
        x = F.dropout(x, self.dropout, self.training)
        st = static_memory(cache, lambda: [layer.memory(enc, cache is not None) for layer in self.layers])
        steps = step_caches(cache, len(self.layers))
        for i, layer in enumerate(self.layers):
            x = layer(x, enc, st[i], steps[i])
        x = self.layer_norm(x[:, -1:] if last_only else x)
        w = self.embed_tokens.weight if self.output_projection is None else self.output_projection.weight
        return F.linear(x, w)


# --------------------------------------------------------------------------------------------
# Masked Transformer (MT, Zhou et al. 2018), video -> text, post-LN, layer-wise cross-attention
# --------------------------------------------------------------------------------------------
class MTVideoEncoder(nn.Module):
    """Linear(Dv -> d) -> Dropout -> ReLU, + sinusoids, Dropout, post-LN layers; the padding mask
    multiplies every layer's output. Returns every layer's output (the decoder's layer l attends
    encoder layer l)."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.embed = nn.Linear(cfg.video_dim, d)
        self.layers = nn.ModuleList(
            PostLNLayer(d, cfg.heads, cfg.ffn_dim, cfg.dropout, cfg.attn_dropout, cfg.act_dropout, cross=False)
            for _ in range(cfg.enc_layers)
        )
        self.dropout = cfg.dropout

    def forward(self, video, mask):  # (B, k, Dv), (B, k)
        x = F.relu(F.dropout(self.embed(video), self.dropout, self.training))  # (B, k, d)
        x = x + sinusoid_table(x.size(1), x.size(2), x.device, x.dtype)
        x = F.dropout(x, self.dropout, self.training)
        keep = mask.unsqueeze(-1).to(x.dtype)
        outs = []
        for layer in self.layers:
            x = layer(x, mask=mask) * keep
            outs.append(x)
        return {"video_layers": outs, "video_mask": mask}


class MTDecoder(nn.Module):
    """Embedding = output weight x sqrt(d) (tied) + sinusoids, post-LN layers with causal
    self-attention and cross-attention to encoder layer min(l, enc_layers - 1), output
    Linear(d -> V) with bias."""

    def __init__(self, cfg, embed_tokens: nn.Embedding):
        super().__init__()
        d = cfg.d_model
        self.embed_tokens = embed_tokens
        self.output_bias = nn.Parameter(torch.zeros(cfg.tgt_vocab))
        self.layers = nn.ModuleList(
            PostLNLayer(d, cfg.heads, cfg.ffn_dim, cfg.dropout, cfg.attn_dropout, cfg.act_dropout, cross=True)
            for _ in range(cfg.dec_layers)
        )
        self.scale, self.dropout = math.sqrt(d), cfg.dropout

    def memory(self, enc):
        layers = enc["video_layers"]
        return [self.layers[i].encoder_attn.kv(layers[min(i, len(layers) - 1)]) for i in range(len(self.layers))]

    def forward(self, tokens, enc, cache=None, last_only=False):
        new, start = new_positions(tokens, cache)
        x = self.embed_tokens(new) * self.scale
        x = x + sinusoid_table(new.size(1), x.size(2), x.device, x.dtype, start=start)
        x = F.dropout(x, self.dropout, self.training)
        st = static_memory(cache, lambda: self.memory(enc))
        steps = step_caches(cache, len(self.layers))
        for i, layer in enumerate(self.layers):
            x = layer(x, causal=cache is None, cache=steps[i], memory_kv=st[i], memory_mask=enc["video_mask"])
        if last_only:
            x = x[:, -1:]
        return F.linear(x, self.embed_tokens.weight, self.output_bias)
