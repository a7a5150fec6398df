"""Multimodal fusion blocks: VDF's forget fusion encoder (eq. 4) and cascaded fusion (eqs. 5-7),
MFFG's two-stage forget-gate fusion, and the hierarchical attention of HA / MFFG."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import EncoderLayer, attend

FUSION_SCALE = 1.0 / 8.0  # the published FGF / cascade divide scores by 8 (not sqrt(2048))


class ForgetGateFusion(nn.Module):
    """FGF (eq. 4, Liu et al. 2020): fuse a memory M into a query stream X, single head, the
    memory keeps its own width (no projection of the 2048-d video).

        alpha = softmax((X W_q) M^T / 8)            W_q: dq -> dm, no bias
        M~    = alpha M                              (B, n, dm)
        Mem   = M~ W_m + b_m                         dm -> dm
        G     = sigmoid([X; M~] W_g)                 dq+dm -> dm, no bias   (the forget gate)
        out   = X + [X; Mem * G] W_f + b_f           dq+dm -> dq            (ReLU'd for MFFG)

    VDF: X = text (512), M = video (2048). MFFG stage 2 swaps the roles (X = video, M = text).
    """

    reassociate = True  # False: always the textbook order (bench/train.py's baseline)

    def __init__(self, query_dim: int, memory_dim: int, relu: bool = False):
        super().__init__()
        self.w_q = nn.Linear(query_dim, memory_dim, bias=False)
        self.w_m = nn.Linear(memory_dim, memory_dim)
        self.w_g = nn.Linear(query_dim + memory_dim, memory_dim, bias=False)
        self.w_f = nn.Linear(query_dim + memory_dim, query_dim)
        self.relu = relu

    def forward(self, x, memory, memory_mask):  # x (B, n, dq), memory (B, k, dm), mask (B, k)
        dq, dm = x.size(-1), memory.size(-1)
        if self.reassociate and memory.size(1) < x.size(1):
            # Reassociated, exact algebra: project the k memory rows once instead of the n
            # attended rows. (x W_q) M^T = x (M W_q)^T; M~ W_m + b = alpha (M W_m) + b (rows of
            # alpha sum to 1); [x; M~] W_g = x W_gx + alpha (M W_gm). For How2 (n ~ 400 text
            # tokens, k ~ 160 clips, dm = 2048) this halves the FLOPs; for short videos far more.
            keys = memory @ self.w_q.weight  # (B, k, dq)
            wg_x, wg_m = self.w_g.weight.split([dq, dm], dim=1)
            values = torch.cat([F.linear(memory, self.w_m.weight), F.linear(memory, wg_m)], dim=-1)  # (B, k, 2dm)
            att = attend(x[:, None], keys[:, None], values[:, None], memory_mask, scale=FUSION_SCALE)[:, 0]
            mem_proj, gate_m = att.split(dm, dim=-1)  # alpha (M W_m), alpha (M W_gm): (B, n, dm) each
            mem_proj = mem_proj + self.w_m.bias  # Mem = M~ W_m + b_m
            gate = torch.sigmoid(F.linear(x, wg_x) + gate_m)  # G
        else:
            q = self.w_q(x)[:, None]  # (B, 1, n, dm): one head
            m = memory[:, None]  # (B, 1, k, dm)
            m_att = attend(q, m, m, memory_mask, scale=FUSION_SCALE)[:, 0]  # (B, n, dm)   M~ = alpha M
            gate = torch.sigmoid(self.w_g(torch.cat([x, m_att], dim=-1)))  # (B, n, dm)   G
            mem_proj = self.w_m(m_att)  # Mem
        fused = mem_proj * gate  # (B, n, dm)   Mem ⊙ G
        out = x + self.w_f(torch.cat([x, fused], dim=-1))  # (B, n, dq)   eq. (4)
        return F.relu(out) if self.relu else out


class ForgetFusionEncoder(nn.Module):
    """VDF's forget fusion encoder: T_FGF = FGF(T_Trm, V) (eq. 4), then the re-encoding
    pre-LN layer(s) and a LayerNorm give T_en. Lives in the encoder (computed once per input),
    is trained in stage 1 and neither distilled nor swapped. With Table XI's early fusion the
    rest of the text stack follows FGF here (`n_layers` = remaining text layers + re-encoding)."""

    def __init__(self, cfg, n_layers: int):
        super().__init__()
        self.fgf = ForgetGateFusion(cfg.d_model, cfg.video_dim)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.d_model, cfg.heads, cfg.ffn_dim, cfg.dropout, cfg.attn_dropout, cfg.act_dropout)
            for _ in range(n_layers)
        )
        self.layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, enc: dict) -> dict:
        x = self.fgf(enc["text"], enc["video"], enc["video_mask"])  # (B, n, d)  T_FGF = FGF(T_Trm, V), eq. (4)
        for layer in self.layers:
            x = layer(x, enc["text_mask"])
        return {"text": self.layer_norm(x)}  # T_en


class MFFGFusion(nn.Module):
    """MFFG's cross fusion block (MFN, Liu et al. 2020), computed once per input:
    stage 1 text <- video  A' = ReLU(FGF(A, V)); stage 2 video <- fused text V' = ReLU(FGF(V, A'));
    outputs T_f = LN(A') and V'. (The published code reuses the decoder's final LayerNorm for
    T_f; here the block has its own.)"""

    def __init__(self, cfg):
        super().__init__()
        self.text_from_video = ForgetGateFusion(cfg.d_model, cfg.video_dim, relu=True)
        self.video_from_text = ForgetGateFusion(cfg.video_dim, cfg.d_model, relu=True)
        self.layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, enc: dict) -> dict:
        a = self.text_from_video(enc["text"], enc["video"], enc["video_mask"])  # (B, n, d)   A'
        v = self.video_from_text(enc["video"], a, enc["text_mask"])  # (B, k, Dv)  V'
        return {"text": self.layer_norm(a), "video": v}


class CascadedVideoAttention(nn.Module):
    """VDF's cascaded text-to-video attention (eqs. 6-7), inside decoder layer `dec_fusion_layer`
    after the cross-lingual encoder attention (eq. 5) has been added to the stream:

        h   = LN(C^X + C^Y)
        C^V = softmax((h W_a) V^T / 8) V             W_a: d -> Dv, no bias        eq. (6)
        C^M = (C^X + C^Y) + Drop([h; C^V] W_de + b_de)   W_de: d+Dv -> d        eq. (7)
    """

    reassociate = True  # False: always the textbook order (bench/train.py's baseline)

    def __init__(self, dim: int, video_dim: int, dropout: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.w_a = nn.Linear(dim, video_dim, bias=False)
        self.w_de = nn.Linear(dim + video_dim, dim)
        self.dropout = dropout

    def memory(self, video):  # (Bk, k, Dv) -> keys, values (Bk, k, d): once per input
        """Reassociated video memory (exact algebra): (h W_a) V^T = h (V W_a)^T and
        C^V W_de_v = alpha (V W_de_v), so every decoding step works in d instead of Dv."""
        d = self.w_a.in_features
        return video @ self.w_a.weight, F.linear(video, self.w_de.weight[:, d:])

    def forward(self, x, video, video_mask, memory=None):  # x (Bq, t, d); video (Bk, k, Dv); Bq = g * Bk
        h = self.layer_norm(x)  # (Bq, t, d)
        bq, t, d = h.shape
        k, dv = video.shape[1], video.shape[2]
        # without a precomputed memory pick the cheaper association for these shapes
        if not self.reassociate:
            memory = None
        elif memory is None and 2 * video.size(0) * k * dv * d + 2 * bq * t * k * d < 2 * bq * t * dv * (d + k):
            memory = self.memory(video)
        if memory is not None:
            keys, values = memory
            ctx = attend(h[:, None], keys[:, None], values[:, None], video_mask, scale=FUSION_SCALE)[:, 0]  # alpha (V W_de_v)
            out = F.linear(h, self.w_de.weight[:, :d], self.w_de.bias) + ctx  # [h; C^V] W_de + b_de
        else:
            q = self.w_a(h)[:, None]  # (Bq, 1, t, Dv)
            v = video[:, None]  # (Bk, 1, k, Dv)
            c_v = attend(q, v, v, video_mask, scale=FUSION_SCALE)[:, 0]  # (Bq, t, Dv)   eq. (6)
            out = self.w_de(torch.cat([h, c_v], dim=-1))
        return x + F.dropout(out, self.dropout, self.training)  # eq. (7)


class HierarchicalAttention(nn.Module):
    """Second-level attention over per-modality contexts (Libovický & Helcl 2017):
    e_m = w^T tanh(C_m z_m + R q [+ b]); beta = softmax_m(e); out = sum_m beta_m z_m.

    `shared_ctx_proj=True, query_bias=False` is MFFG-TF's variant (one C for all modalities);
    `False, True` is nmtpytorch's (a C_m per modality, R with bias)."""

    def __init__(self, ctx_dim: int, query_dim: int, mid_dim: int, n_ctx: int, shared_ctx_proj: bool, query_bias: bool):
        super().__init__()
        n_proj = 1 if shared_ctx_proj else n_ctx
        self.ctx_proj = nn.ModuleList(nn.Linear(ctx_dim, mid_dim, bias=False) for _ in range(n_proj))
        self.query_proj = nn.Linear(query_dim, mid_dim, bias=query_bias)
        self.score = nn.Linear(mid_dim, 1, bias=False)

    def forward(self, contexts: list, query):  # contexts: M x (..., C); query (..., Q)
        q = self.query_proj(query)
        proj = [self.ctx_proj[min(i, len(self.ctx_proj) - 1)](c) for i, c in enumerate(contexts)]
        e = torch.cat([self.score(torch.tanh(p + q)) for p in proj], dim=-1)  # (..., M)
        beta = torch.softmax(e, dim=-1)
        return sum(beta[..., i : i + 1] * c for i, c in enumerate(contexts))  # (..., C)
