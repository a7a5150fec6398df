"""Building blocks shared by every model family: initialisation, attention, positions, layers.

Conventions (all tensors batch-first):
  B  = rows of a tensor; in decoding the decoder runs B_dec = g * B_enc rows where each group of
       g consecutive rows (a beam) shares one input's memories (see `attend`).
  n  = text length, k = video clips, t = target prefix length, d = model width, Dv = video width.
Masks are Bool with True = a real position (take part in attention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD, EOS, UNK = 0, 1, 2  # DESIGN.md: <pad>=0, </s>=1 (also BOS), <unk>=2


# --------------------------------------------------------------------------------------------
# Initialisation (SPEC §2): kaiming-normal (fan-in) Linear weights and embeddings, zero biases,
# zero pad rows. LayerNorms keep (1, 0); recurrent cells keep PyTorch's uniform default.
# --------------------------------------------------------------------------------------------
def init_parameters(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)  # std = sqrt(2 / fan_in)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.kaiming_normal_(m.weight)  # fan_in = embedding dim (as the published code)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------
def attend(q, k, v, mask=None, *, scale=None, dropout=0.0, causal=False, attn_mask=None):
    """Scaled dot-product attention where groups of query rows share keys/values.

    q: (Bq, h, t, dk); k: (Bk, h, n, dk); v: (Bk, h, n, dv) with Bq = g * Bk: query rows
    [i*g, (i+1)*g) attend memory row i (a beam attends its input's memory without copying it).
    mask: (Bk, n) Bool key mask (True = attend). attn_mask: (t, n) Bool, only when g == 1.
    Returns (Bq, h, t, dv).
    """
    bq, h, t, _ = q.shape
    bk = k.size(0)
    if k.dtype != q.dtype:  # autocast: a float32 memory (e.g. raw video) against bf16 queries
        k, v = k.to(q.dtype), v.to(q.dtype)
    g = bq // bk
    assert g * bk == bq, f"query rows {bq} are not a multiple of memory rows {bk}"
    if g > 1:
        assert not causal and attn_mask is None, "grouped queries only for memory attention"
        q = q.view(bk, g, h, t, -1).transpose(1, 2).reshape(bk, h, g * t, -1)
    m = None
    if mask is not None:
        m = mask[:, None, None, :]  # (Bk, 1, 1, n)
    if attn_mask is not None:
        m = attn_mask if m is None else (m & attn_mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=dropout, is_causal=causal, scale=scale)
    if g > 1:
        out = out.view(bk, h, g, t, -1).transpose(1, 2).reshape(bq, h, t, -1)
    return out


class MultiheadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (same parameter count as
    fairseq's fused in_proj), q scaled by d_head^-1/2 inside SDPA.

    `kv(memory)` projects keys/values once (cached for encoder memories); `forward(x, k, v)`
    attends them. Self-attention callers concatenate cached keys/values themselves.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True, kv_dim: int | None = None):
        super().__init__()
        assert dim % heads == 0, f"d_model {dim} is not divisible by heads {heads}"
        kv_dim = kv_dim or dim
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def _split(self, x):  # (B, n, d) -> (B, h, n, dh)
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def kv(self, memory):
        return self._split(self.k_proj(memory)), self._split(self.v_proj(memory))

    def forward(self, x, k, v, mask=None, causal=False, attn_mask=None):
        b, t, d = x.shape
        q = self._split(self.q_proj(x))
        drop = self.dropout if self.training else 0.0
        out = attend(q, k, v, mask, dropout=drop, causal=causal, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


def self_attention(attn: MultiheadAttention, x, cache: dict | None, mask=None, causal=False):
    """Self-attention over x (B, t, d); with `cache` (a dict with optional 'k', 'v' of earlier
    positions, shape (B, h, t0, dh)) the new keys/values are appended and attention is causal
    over cached + new positions."""
    k, v = attn.kv(x)
    if cache is None:
        return attn(x, k, v, mask=mask, causal=causal)
    if "k" in cache:
        k = torch.cat([cache["k"], k], dim=2)
        v = torch.cat([cache["v"], v], dim=2)
    cache["k"], cache["v"] = k, v
    t, total = x.size(1), k.size(2)
    attn_mask = None
    if t > 1:  # several new positions at once: causal with an offset
        attn_mask = torch.ones(t, total, dtype=torch.bool, device=x.device).tril(total - t)
    return attn(x, k, v, attn_mask=attn_mask)


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, relu_dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.relu_dropout = relu_dropout

    def forward(self, x):
        return self.fc2(F.dropout(F.relu(self.fc1(x)), self.relu_dropout, self.training))


# --------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------
class LearnedPositions(nn.Embedding):
    """fairseq learned positions: the i-th real token (0-based) gets row PAD + 1 + i, pads get the
    zeroed PAD row. Table rows = max_positions + PAD + 1 (1025 for 1024 positions)."""

    def __init__(self, max_positions: int, dim: int):
        super().__init__(max_positions + PAD + 1, dim, padding_idx=PAD)
        self.max_positions = max_positions

    def forward(self, tokens, start: int = 0):  # tokens (B, t), `start` real tokens precede them
        real = tokens.ne(PAD)
        pos = (torch.cumsum(real, dim=1) + start) * real + PAD
        top = start + tokens.size(1)
        assert top <= self.max_positions, f"sequence length {top} > max positions {self.max_positions}"
        return super().forward(pos)


def sinusoid_table(length: int, dim: int, device=None, dtype=torch.float32, start: int = 0):
    """Interleaved sinusoids (densecap): channel c even -> sin(p / 10000^(c/d)), odd c ->
    cos(p / 10000^((c-1)/d)), positions p = start .. start+length-1. Returns (length, dim)."""
    pos = torch.arange(start, start + length, device=device, dtype=torch.float64)[:, None]
    even = torch.arange(0, dim, 2, device=device, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, even / dim)  # (length, ceil(d/2))
    table = torch.zeros(length, dim, device=device, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return table.to(dtype)


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------
class StdLayerNorm(nn.Module):
    """densecap / annotated-transformer LayerNorm: (x - mean) / (unbiased std + eps) * a + b."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)  # unbiased
        return self.weight * (x - mean) / (std + self.eps) + self.bias


# --------------------------------------------------------------------------------------------
# Transformer layers
# --------------------------------------------------------------------------------------------
class EncoderLayer(nn.Module):
    """Pre-LN transformer encoder layer (fairseq normalize_before):
    x += Drop(SelfAttn(LN1 x)); x += Drop(FFN(LN2 x))."""

    def __init__(self, dim, heads, ffn_dim, dropout, attention_dropout, relu_dropout):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, relu_dropout)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = dropout

    def forward(self, x, mask):  # x (B, n, d), mask (B, n)
        x = x + F.dropout(self_attention(self.self_attn, self.self_attn_layer_norm(x), None, mask=mask), self.dropout, self.training)
        return x + F.dropout(self.ffn(self.final_layer_norm(x)), self.dropout, self.training)


class PostLNLayer(nn.Module):
    """Post-LN transformer layer of the Masked Transformer (Zhou et al. 2018, densecap):
    x = LN(x + Drop(SelfAttn(x))) [; x = LN(x + Drop(CrossAttn(x, M)))]; x = LN(x + Drop(FFN(x))).
    q/k/v/o projections without bias; LayerNorm with unbiased std and eps added to the std."""

    def __init__(self, dim, heads, ffn_dim, dropout, attention_dropout, relu_dropout, cross: bool):
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads, attention_dropout, bias=False)
        self.self_attn_layer_norm = StdLayerNorm(dim)
        if cross:
            self.encoder_attn = MultiheadAttention(dim, heads, attention_dropout, bias=False)
            self.encoder_attn_layer_norm = StdLayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, relu_dropout)
        self.final_layer_norm = StdLayerNorm(dim)
        self.dropout = dropout

    def forward(self, x, mask=None, causal=False, cache=None, memory_kv=None, memory_mask=None):
        drop = lambda y: F.dropout(y, self.dropout, self.training)  # noqa: E731
        x = self.self_attn_layer_norm(x + drop(self_attention(self.self_attn, x, cache, mask=mask, causal=causal)))
        if memory_kv is not None:
            x = self.encoder_attn_layer_norm(x + drop(self.encoder_attn(x, *memory_kv, mask=memory_mask)))
        return self.final_layer_norm(x + drop(self.ffn(x)))


def masked_mean(x, mask):
    """Mean over dim 1 of x (B, n, C) counting only mask (B, n) positions -> (B, C)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def expand_rows(x, g: int):
    """(B, ...) -> (B*g, ...), each row repeated g times consecutively (a beam group)."""
    return x if g == 1 else x.repeat_interleave(g, dim=0)


__all__ = [
    "PAD", "EOS", "UNK", "init_parameters", "attend", "MultiheadAttention", "self_attention",
    "FeedForward", "LearnedPositions", "sinusoid_table", "StdLayerNorm", "EncoderLayer",
    "PostLNLayer", "masked_mean", "expand_rows",
]
