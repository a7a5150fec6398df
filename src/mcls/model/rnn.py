"""RNN family (S2S, VideoRNN, HA): bi-GRU encoders, nmtpytorch's conditional GRU decoder with
MLP attention per memory and hierarchical attention over memories, and Luong's global-attention
decoder with input feeding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .fusion import HierarchicalAttention
from .layers import PAD, attend, expand_rows, masked_mean
from .transformer import new_positions, static_memory


def run_birnn(rnn: nn.GRU, x, mask):
    """Bidirectional GRU over the real (prefix) positions of x (B, n, E) -> (B, n, 2H), pads 0."""
    lengths = mask.sum(1)
    assert bool((lengths > 0).all()), f"every sequence needs >= 1 position, lengths {lengths.tolist()}"
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out


class RNNTextEncoder(nn.Module):
    """Emb -> Dropout -> L-layer bi-GRU (H per direction) -> Dropout: C_T (B, n, 2H)."""

    def __init__(self, cfg, embed_tokens: nn.Embedding | None = None):
        super().__init__()
        self.embed_tokens = embed_tokens if embed_tokens is not None else nn.Embedding(cfg.src_vocab, cfg.rnn_emb, padding_idx=PAD)
        self.rnn = nn.GRU(cfg.rnn_emb, cfg.rnn_hidden, cfg.rnn_layers, batch_first=True, bidirectional=True)
        self.dropout = cfg.rnn_dropout

    def forward(self, src, layer=None, pre_final_ln=False):
        assert layer is None, "layer-wise text features exist only for the transformer text encoder"
        mask = src.ne(PAD)
        x = F.dropout(self.embed_tokens(src), self.dropout, self.training)
        return F.dropout(run_birnn(self.rnn, x, mask), self.dropout, self.training)


class RNNVideoEncoder(nn.Module):
    """VideoRNN: L-layer bi-GRU over the raw Dv-d clip features -> C_V (B, k, 2H), Dropout."""

    def __init__(self, cfg):
        super().__init__()
        self.rnn = nn.GRU(cfg.video_dim, cfg.rnn_hidden, cfg.rnn_layers, batch_first=True, bidirectional=True)
        self.dropout = cfg.rnn_dropout

    def forward(self, video, mask):
        return {"video": F.dropout(run_birnn(self.rnn, video, mask), self.dropout, self.training), "video_mask": mask}


class RawVideo(nn.Module):
    """HA: the Dv-d features themselves are the attention memory (no encoder, no parameters)."""

    def __init__(self, cfg=None):
        super().__init__()

    def forward(self, video, mask):
        return {"video": video, "video_mask": mask}


class MLPAttention(nn.Module):
    """nmtpytorch MLP attention: u_i = w^T tanh(U c_i + W h) (no biases), alpha = masked softmax,
    z = P sum_i alpha_i c_i with P = ctx2hid (no bias). U c is computed once per input."""

    def __init__(self, ctx_dim: int, hid_dim: int, mid_dim: int):
        super().__init__()
        self.ctx2mid = nn.Linear(ctx_dim, mid_dim, bias=False)
        self.hid2mid = nn.Linear(hid_dim, mid_dim, bias=False)
        self.mlp = nn.Linear(mid_dim, 1, bias=False)
        self.ctx2hid = nn.Linear(ctx_dim, hid_dim, bias=False)

    def forward(self, h, ctx, ctx_mid, mask):  # h (Bq, H); ctx (Bk, n, C); ctx_mid (Bk, n, mid); Bq = g*Bk
        bk, n, _ = ctx.shape
        g = h.size(0) // bk
        hq = self.hid2mid(h).view(bk, g, 1, -1)  # (Bk, g, 1, mid)
        u = self.mlp(torch.tanh(ctx_mid[:, None] + hq)).squeeze(-1)  # (Bk, g, n)
        u = u.masked_fill(~mask[:, None, :], float("-inf"))
        alpha = torch.softmax(u, dim=-1)
        z = torch.bmm(alpha, ctx).view(bk * g, -1)  # (Bq, C)
        return self.ctx2hid(z)  # (Bq, H)


class CGRUDecoder(nn.Module):
    """Conditional GRU decoder (nmtpytorch `ConditionalDecoder`, HA's `conditionalmm`):
        s_0 = tanh(W_i mean_masked(C_first) + b)
        h1  = GRU1(emb(y_{t-1}), s_{t-1})
        z_m = MLPAttention_m(h1, C_m)              one per memory (text, video)
        z   = z_0  or  HierarchicalAttention([z_m], h1)
        s_t = GRU2(z, h1)
        p(y_t) = softmax(E_tgt Drop(tanh(W_b s_t + b_b)) + b_o)   output tied to the target embedding
    """

    def __init__(self, cfg, embed_tokens: nn.Embedding, memories: list[tuple[str, int]]):
        super().__init__()
        H = cfg.rnn_hidden
        self.memories = [name for name, _ in memories]
        self.embed_tokens = embed_tokens
        self.init_proj = nn.Linear(memories[0][1], H)
        self.gru1 = nn.GRUCell(cfg.rnn_emb, H)
        self.attentions = nn.ModuleList(MLPAttention(dim, H, H) for _, dim in memories)
        self.hier_attention = (
            HierarchicalAttention(H, H, H, len(memories), shared_ctx_proj=False, query_bias=True) if len(memories) > 1 else None
        )
        self.gru2 = nn.GRUCell(H, H)
        self.hid2out = nn.Linear(H, cfg.rnn_emb)
        self.output_bias = nn.Parameter(torch.zeros(cfg.tgt_vocab))
        self.dropout = cfg.rnn_dropout

    def memory(self, enc):
        first = self.memories[0]
        return {
            "mid": [att.ctx2mid(enc[m]) for att, m in zip(self.attentions, self.memories)],
            "h0": torch.tanh(self.init_proj(masked_mean(enc[first], enc[first + "_mask"]))),  # (B, H)
        }

    def forward(self, tokens, enc, cache=None, last_only=False):
        new, start = new_positions(tokens, cache)
        st = static_memory(cache, lambda: self.memory(enc))
        g = tokens.size(0) // st["h0"].size(0)
        h = cache["step"]["h"] if start > 0 else expand_rows(st["h0"], g)  # (Bq, H)
        emb = self.embed_tokens(new)  # (Bq, t', E)
        outs = []
        for j in range(new.size(1)):
            h1 = self.gru1(emb[:, j], h)
            zs = [att(h1, enc[m], st["mid"][i], enc[m + "_mask"]) for i, (att, m) in enumerate(zip(self.attentions, self.memories))]
            z = zs[0] if self.hier_attention is None else self.hier_attention(zs, h1)
            h = self.gru2(z, h1)
            outs.append(h)
        if cache is not None:
            cache["step"] = {"h": h}
        s = torch.stack(outs[-1:] if last_only else outs, dim=1)  # (Bq, t', H)
        out = F.dropout(torch.tanh(self.hid2out(s)), self.dropout, self.training)
        return F.linear(out, self.embed_tokens.weight, self.output_bias)


class LuongDecoder(nn.Module):
    """Luong et al. (2015) global attention, "general" score, input feeding, stacked GRU:
        x_t = [emb(y_{t-1}); h~_{t-1}];  h_t = GRU stack(x_t)
        a_t = softmax_s(h_t^T W_a h_s);  c_t = sum_s a_t(s) h_s
        h~_t = tanh(W_c [c_t; h_t]);     p(y_t) = softmax(W_s Drop(h~_t) + b)
    Initial states: tanh(W_i mean_masked(C) + b) (the encoder is bidirectional)."""

    def __init__(self, cfg, embed_tokens: nn.Embedding, memory: tuple[str, int]):
        super().__init__()
        H, L = cfg.rnn_hidden, cfg.rnn_layers
        self.memory_name, ctx_dim = memory
        self.embed_tokens = embed_tokens
        self.init_proj = nn.Linear(ctx_dim, H * L)
        self.cells = nn.ModuleList(nn.GRUCell(cfg.rnn_emb + H if i == 0 else H, H) for i in range(L))
        self.score_proj = nn.Linear(H, ctx_dim, bias=False)  # W_a (applied to the query)
        self.combine = nn.Linear(ctx_dim + H, H, bias=False)  # W_c
        self.output_projection = nn.Linear(H, cfg.tgt_vocab)  # W_s
        self.hidden, self.dropout = H, cfg.rnn_dropout

    def memory(self, enc):
        m = self.memory_name
        h0 = torch.tanh(self.init_proj(masked_mean(enc[m], enc[m + "_mask"])))  # (B, L*H)
        return {"h0": h0}

    def forward(self, tokens, enc, cache=None, last_only=False):
        new, start = new_positions(tokens, cache)
        st = static_memory(cache, lambda: self.memory(enc))
        ctx, mask = enc[self.memory_name], enc[self.memory_name + "_mask"]  # (Bk, n, C), (Bk, n)
        g = tokens.size(0) // ctx.size(0)
        if start > 0:
            hs, feed = list(cache["step"]["h"]), cache["step"]["feed"]
        else:
            hs = list(expand_rows(st["h0"], g).split(self.hidden, dim=-1))
            feed = hs[0].new_zeros(hs[0].shape)
        emb = self.embed_tokens(new)
        outs = []
        for j in range(new.size(1)):
            x = torch.cat([emb[:, j], feed], dim=-1)
            for i, cell in enumerate(self.cells):
                hs[i] = cell(x, hs[i])
                x = F.dropout(hs[i], self.dropout, self.training)
            q = self.score_proj(hs[-1])[:, None, None]  # (Bq, 1, 1, C)
            c = attend(q, ctx[:, None], ctx[:, None], mask, scale=1.0)[:, 0, 0]  # (Bq, C)
            feed = torch.tanh(self.combine(torch.cat([c, hs[-1]], dim=-1)))  # h~_t
            outs.append(feed)
        if cache is not None:
            cache["step"] = {"h": tuple(hs), "feed": feed}
        s = torch.stack(outs[-1:] if last_only else outs, dim=1)
        return self.output_projection(F.dropout(s, self.dropout, self.training))
