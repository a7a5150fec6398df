"""The one model class: `Seq2Seq` = text encoder + video encoder + fusion + decoder, each chosen
from an explicit table by `ModelConfig`, behind the decoding contract of docs/DESIGN.md.

Parameter names (stable; stage 3 and checkpoints key on them):
  text_encoder.embed_tokens.weight, text_encoder.embed_positions.weight,
  text_encoder.layers.{i}.…, text_encoder.layer_norm.…        (swapped in stage 3)
  video_encoder.…   (VDF: video_encoder.embed_positions.weight, the 1030 x 2048 table)
  fusion.…          (VDF: fusion.fgf.{w_q,w_m,w_g,w_f}.…, fusion.layers.0.…, fusion.layer_norm.…)
  decoder.embed_tokens.weight, decoder.embed_positions.weight, decoder.layers.{i}.…,
  decoder.layers.{dec_fusion_layer}.cascade.{layer_norm,w_a,w_de}.…, decoder.layer_norm.…
With `share_src_tgt_embedding` the state dict holds the one En embedding under both
`text_encoder.embed_tokens.weight` and `decoder.embed_tokens.weight`.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, config_from_dict, make_config
from .fusion import ForgetFusionEncoder, MFFGFusion
from .layers import PAD, init_parameters
from .rnn import CGRUDecoder, LuongDecoder, RawVideo, RNNTextEncoder, RNNVideoEncoder
from .transformer import MTDecoder, MTVideoEncoder, TextEncoder, TransformerDecoder, VideoPositions


# ---- the sub-module tables: name -> constructor(cfg, ...) -------------------------------------
def _text_transformer(cfg):
    return TextEncoder(cfg, n_layers=cfg.enc_fusion_index if cfg.fusion == "fgf" else cfg.enc_layers)


TEXT_ENCODERS = {"transformer": _text_transformer, "bigru": RNNTextEncoder, "none": None}
VIDEO_ENCODERS = {"positions": VideoPositions, "mt": MTVideoEncoder, "bigru": RNNVideoEncoder, "raw": RawVideo, "none": None}
FUSIONS = {
    # text layers after FGF: the rest of the text stack (Table XI early fusion) + re-encoding layer(s)
    "fgf": lambda cfg: ForgetFusionEncoder(cfg, n_layers=cfg.enc_layers - cfg.enc_fusion_index + cfg.reencode_layers),
    "mffg": MFFGFusion,
    "none": None,
}


def _memories(cfg) -> list[tuple[str, int]]:
    """(enc key, width) of the memories an RNN decoder attends, the first one initialises it."""
    out = []
    if cfg.text_encoder == "bigru":
        out.append(("text", 2 * cfg.rnn_hidden))
    if cfg.video_encoder == "bigru":
        out.append(("video", 2 * cfg.rnn_hidden))
    elif cfg.video_encoder == "raw":
        out.append(("video", cfg.video_dim))
    return out


DECODERS = {
    "transformer": lambda cfg, emb: TransformerDecoder(cfg, emb),
    "mt": lambda cfg, emb: MTDecoder(cfg, emb),
    "cgru": lambda cfg, emb: CGRUDecoder(cfg, emb, _memories(cfg)),
    "luong": lambda cfg, emb: LuongDecoder(cfg, emb, _memories(cfg)[0]),
}


def map_tensors(obj, fn):
    """Apply fn to every tensor in nested dicts / lists / tuples (other leaves kept)."""
    if torch.is_tensor(obj):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


class Seq2Seq(nn.Module):
    """Every model of the paper as one class; see docs/model.md.

    forward(batch) -> logits (B, l, V)            teacher forcing on batch["tgt_in"]
    encode(batch) -> enc                           memories, computed once per input
    decode_step(tokens (B', t), enc, cache) -> log-probs (B', V) of the next token
    reorder(enc, cache, order) -> (enc, cache)     select / reorder / expand decoder rows
    encode_text(src, layer, pre_final_ln)          text features for distillation (stage 2)
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        self.text_encoder = TEXT_ENCODERS[cfg.text_encoder](cfg) if TEXT_ENCODERS[cfg.text_encoder] else None
        self.video_encoder = VIDEO_ENCODERS[cfg.video_encoder](cfg) if VIDEO_ENCODERS[cfg.video_encoder] else None
        self.fusion = FUSIONS[cfg.fusion](cfg) if FUSIONS[cfg.fusion] else None
        if cfg.share_src_tgt_embedding:
            embed = self.text_encoder.embed_tokens
        else:
            dim = cfg.rnn_emb if cfg.decoder in ("cgru", "luong") else cfg.d_model
            embed = nn.Embedding(cfg.tgt_vocab, dim, padding_idx=PAD)
        self.decoder = DECODERS[cfg.decoder](cfg, embed)
        init_parameters(self)

    # ---- contract -----------------------------------------------------------------------------
    def encode(self, batch: dict) -> dict:
        """Batch (docs/DESIGN.md) -> enc: text (B, n, d) + text_mask, video (B, k, Dv) + video_mask
        (or the MT encoder's video_layers), after fusion; enc["group"] = decoder rows per input."""
        cfg = self.config
        enc: dict = {"group": 1}
        if self.text_encoder is not None:
            assert "src" in batch, f"model {cfg.name!r} reads text: the batch needs 'src' (has {sorted(batch)})"
            src = batch["src"]
            enc["text_mask"] = src.ne(PAD)  # (B, n)
            enc["text"] = self.text_encoder(src)  # (B, n, d)   T_Trm, eq. (3)
        if self.video_encoder is not None:
            video = batch.get("video")
            assert video is not None and video.dim() == 3 and video.size(1) > 0, (
                f"model {cfg.name!r} reads video: the batch needs 'video' (B, k>0, {cfg.video_dim})"
            )
            assert video.size(2) == cfg.video_dim, f"video width {video.size(2)} != model video_dim {cfg.video_dim}"
            mask = batch.get("video_mask")
            if mask is None:
                mask = torch.ones(video.shape[:2], dtype=torch.bool, device=video.device)
            assert bool(mask.any(1).all()), f"every input needs >= 1 video clip; clip counts {mask.sum(1).tolist()}"
            if not cfg.video_mask:  # the published code attends padded clips
                mask = torch.ones_like(mask)
            enc.update(self.video_encoder(video, mask))
        if self.fusion is not None:
            enc.update(self.fusion(enc))  # T_en (and V' for MFFG)
        return enc

    def forward(self, batch: dict):
        return self.decoder(batch["tgt_in"], self.encode(batch))

    def decode_step(self, tokens, enc: dict, cache: dict | None = None):
        """Log-probs (B', V) of the token after `tokens` (B', t). B' = enc["group"] x inputs.
        cache=None recomputes the whole prefix (reference); a dict (start with {}) is filled in
        place with memory keys/values (once) and self-attention keys/values / RNN states."""
        logits = self.decoder(tokens, enc, cache, last_only=True)[:, -1]
        if logits.dtype not in (torch.float32, torch.float64):  # bf16/fp16 autocast
            logits = logits.float()
        return F.log_softmax(logits, dim=-1)

    def reorder(self, enc: dict, cache: dict | None, order):
        """Decoder row i becomes old row order[i]. Memories stay one row per input as long as each
        run of equal inputs in `order` has the same length g (a beam): enc["group"] becomes g."""
        g_old = enc["group"]
        src = order // g_old  # input of each new row
        values, counts = torch.unique_consecutive(src, return_counts=True)
        if bool((counts == counts[0]).all()):
            enc_order, g_new = values, int(counts[0])
        else:  # not beam-shaped: one memory row per decoder row
            enc_order, g_new = src, 1
        n_in = self._enc_rows(enc)
        same = enc_order.numel() == n_in and bool((enc_order == torch.arange(n_in, device=order.device)).all())
        if not same:
            enc = {k: (map_tensors(v, lambda x: x.index_select(0, enc_order)) if k != "group" else v) for k, v in enc.items()}
        enc = {**enc, "group": g_new}
        if cache is not None and cache:
            cache = dict(cache)
            if "step" in cache:
                cache["step"] = map_tensors(cache["step"], lambda x: x.index_select(0, order))
            if "static" in cache and not same:
                cache["static"] = map_tensors(cache["static"], lambda x: x.index_select(0, enc_order))
        return enc, cache

    @staticmethod
    def _enc_rows(enc) -> int:
        for k, v in enc.items():
            if torch.is_tensor(v):
                return v.size(0)
            if isinstance(v, list) and v:
                return v[0].size(0)
        raise AssertionError(f"enc has no tensors: {sorted(enc)}")

    # ---- stage 2 / 3 support ----------------------------------------------------------------
    def encode_text(self, src, layer: int | None = None, pre_final_ln: bool = False):
        """Text encoder features (B, n, d) for distillation: layer 0 = E_tok + P (vocab level),
        k = 1..L the output of layer k (LayerNorm'd unless pre_final_ln); None = L."""
        assert self.text_encoder is not None, f"model {self.config.name!r} has no text encoder"
        return self.text_encoder(src, layer=layer, pre_final_ln=pre_final_ln)

    def swap_text_encoder(self, encoder: nn.Module, parts: str = "all") -> None:
        """Stage 3: put a stage-2 student in place of the text encoder -- `all` (encoder level:
        embeddings, layers, final LayerNorm) or `embeddings` (vocab level: token + position
        tables; this model's layers stay). The decoder keeps its (En) embedding, and `config`
        follows (src_vocab of the student, unshared), so asdict(model.config) rebuilds the result."""
        assert self.text_encoder is not None, f"model {self.config.name!r} has no text encoder"
        assert type(encoder) is type(self.text_encoder), f"{type(encoder).__name__} cannot replace {type(self.text_encoder).__name__}"
        assert encoder.embed_tokens.embedding_dim == self.text_encoder.embed_tokens.embedding_dim, "embedding widths differ"
        if parts == "all":
            assert len(encoder.layers) == len(self.text_encoder.layers), (
                f"student has {len(encoder.layers)} layers, the model's text encoder {len(self.text_encoder.layers)}")
            self.text_encoder = encoder
        elif parts == "embeddings":
            self.text_encoder.embed_tokens = encoder.embed_tokens
            self.text_encoder.embed_positions = encoder.embed_positions
        else:
            raise ValueError(f"parts {parts!r} is not one of all, embeddings")
        self.config = replace(self.config, src_vocab=encoder.embed_tokens.num_embeddings, share_src_tgt_embedding=False)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared tensors counted once


def build_model(name: str, sizes: dict, src_vocab: int, tgt_vocab: int, video_dim: int, **switches) -> Seq2Seq:
    """A preset (`PRESETS`) with the config's `model:` sizes; switches override any ModelConfig
    field (e.g. share_src_tgt_embedding=True for stage 1, enc_fusion_layer=1, video_mask=False)."""
    return Seq2Seq(make_config(name, sizes, src_vocab, tgt_vocab, video_dim, **switches))


def build_text_encoder(config: ModelConfig, src_vocab: int) -> nn.Module:
    """Stage 2: a fresh text encoder shaped like `config`'s (same sizes and layers) for another
    source vocabulary, initialised per SPEC -- the student that stage 3 swaps in."""
    cfg = replace(config, src_vocab=src_vocab, share_src_tgt_embedding=False)
    encoder = TEXT_ENCODERS[cfg.text_encoder](cfg)
    init_parameters(encoder)
    return encoder


def model_from_config(config: dict | ModelConfig) -> Seq2Seq:
    """Rebuild a model from `asdict(model.config)` (as stored in checkpoints)."""
    return Seq2Seq(config if isinstance(config, ModelConfig) else config_from_dict(config))


def config_dict(model: Seq2Seq) -> dict:
    return asdict(model.config)
