"""Model configuration: one dataclass holding sizes and switches, and the presets (paper names).

`ModelConfig(**asdict(cfg))` rebuilds the same model, so checkpoints store `asdict(model.config)`.
Sizes come from the workflow config's `model:` section (SIZE_KEYS); presets choose the parts;
any field can be overridden by keyword (e.g. `enc_fusion_layer=1` for Table XI's early fusion).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ConfigError

# keys of the workflow config's `model:` section (workflow/schemas/config.schema.yaml)
SIZE_KEYS = (
    "d_model", "ffn_dim", "heads", "enc_layers", "dec_layers", "dropout", "video_mask",
    "rnn_emb", "rnn_hidden", "rnn_layers", "rnn_dropout",
)

# The parts each switch may select (the sub-module tables live in seq2seq.py).
CHOICES = {
    "text_encoder": ("transformer", "bigru", "none"),
    "video_encoder": ("positions", "mt", "bigru", "raw", "none"),
    "fusion": ("fgf", "mffg", "none"),
    "decoder": ("transformer", "mt", "cgru", "luong"),
    "decoder_fusion": ("cascade", "hier", "none"),
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model. Defaults = the paper's VDF (SPEC §2)."""

    name: str = "vdf"  # the preset it was built from (informational)
    src_vocab: int = 0  # encoder text vocabulary (En in stage 1, Pt/Zh in stages 2-3)
    tgt_vocab: int = 0  # English summary vocabulary
    video_dim: int = 2048  # Dv: ResNeXt-101 3D features
    # ---- sizes (workflow config `model:`) ----
    d_model: int = 512
    ffn_dim: int = 2048
    heads: int = 8
    enc_layers: int = 4  # text encoder layers (MT: video encoder layers)
    dec_layers: int = 4
    dropout: float = 0.1
    attention_dropout: float | None = None  # None = `dropout` (published argparse default 0.1)
    relu_dropout: float | None = None  # None = `dropout`
    video_mask: bool = True  # False = the published code: padded clips are attended
    rnn_emb: int = 128
    rnn_hidden: int = 256  # per direction in the encoders; decoder state size
    rnn_layers: int = 2
    rnn_dropout: float = 0.3
    # ---- parts ----
    text_encoder: str = "transformer"
    video_encoder: str = "positions"
    fusion: str = "fgf"  # fgf = VDF forget fusion encoder; mffg = MFFG two-stage fusion
    decoder: str = "transformer"
    decoder_fusion: str = "cascade"  # the fusion layer of the transformer decoder
    # ---- switches ----
    enc_fusion_layer: int | None = None  # FGF after text layer k (1..enc_layers); None = enc_layers ("late", paper)
    dec_fusion_layer: int = 0  # decoder layer hosting the fusion (0 = "early", paper; -1 = last)
    reencode_layers: int = 1  # pre-LN layers after FGF (paper: 1)
    share_src_tgt_embedding: bool = False  # stage 1: encoder and decoder share the En embedding
    tie_output: bool = True  # output projection = target embedding (MFFG: False)
    dec_ffn_ln_twice: bool = False  # published decoder layers: x = LN3(x + FFN(LN3 x))
    max_positions: int = 1024  # learned text positions (table 1025 rows)
    max_video_positions: int = 1030  # learned video position table rows

    def __post_init__(self):
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(f"model {key} {value!r} is not allowed (allowed: {', '.join(allowed)})")
        if self.tgt_vocab <= 3 or (self.text_encoder != "none" and self.src_vocab <= 3):
            raise ConfigError(f"vocabulary sizes must exceed the 3 specials: src_vocab={self.src_vocab}, tgt_vocab={self.tgt_vocab}")
        if self.share_src_tgt_embedding and self.src_vocab != self.tgt_vocab:
            raise ConfigError(
                f"share_src_tgt_embedding needs one vocabulary, got src_vocab={self.src_vocab} != tgt_vocab={self.tgt_vocab}"
            )
        if not 1 <= self.enc_fusion_index <= self.enc_layers:
            raise ConfigError(f"enc_fusion_layer {self.enc_fusion_layer} not in 1..enc_layers={self.enc_layers}")
        if not 0 <= self.dec_fusion_index < self.dec_layers:
            raise ConfigError(f"dec_fusion_layer {self.dec_fusion_layer} not in 0..{self.dec_layers - 1} (or -1 = last)")
        if self.d_model % self.heads:
            raise ConfigError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        self._check_parts()

    def _check_parts(self):
        t, v, f, d, df = self.text_encoder, self.video_encoder, self.fusion, self.decoder, self.decoder_fusion

        def need(cond, what):
            if not cond:
                raise ConfigError(f"model parts do not fit: {what} (text_encoder={t}, video_encoder={v}, fusion={f}, decoder={d}, decoder_fusion={df})")

        if d == "transformer":
            need(t == "transformer", "the transformer decoder attends a transformer text encoder")
            need(df == "none" or v == "positions", "decoder fusion needs video_encoder=positions")
        else:
            need(df == "none" and f == "none", "fusion switches belong to the transformer decoder")
        if f != "none":
            need(t == "transformer" and v == "positions", "fusion needs the transformer text encoder and video positions")
        if d == "mt":
            need(t == "none" and v == "mt", "the MT decoder takes only the MT video encoder")
        if v == "mt":
            need(d == "mt", "the MT video encoder feeds the MT decoder")
        if d in ("cgru", "luong"):
            need(t in ("bigru", "none") and v in ("bigru", "raw", "none"), "RNN decoders take RNN encoders / raw video")
            need(t != "none" or v != "none", "an RNN decoder needs at least one memory")
        if t == "bigru" or v in ("bigru", "raw"):
            need(d in ("cgru", "luong"), "RNN encoders feed RNN decoders")
        if d == "luong":
            need((t == "none") != (v == "none"), "the Luong decoder attends exactly one memory")

    # ---- resolved values ----
    @property
    def attn_dropout(self) -> float:
        return self.dropout if self.attention_dropout is None else self.attention_dropout

    @property
    def act_dropout(self) -> float:
        return self.dropout if self.relu_dropout is None else self.relu_dropout

    @property
    def enc_fusion_index(self) -> int:
        """Text encoder layers before FGF."""
        return self.enc_layers if self.enc_fusion_layer is None else self.enc_fusion_layer

    @property
    def dec_fusion_index(self) -> int:
        return self.dec_fusion_layer % self.dec_layers if self.dec_fusion_layer < 0 else self.dec_fusion_layer

    @property
    def uses_text(self) -> bool:
        return self.text_encoder != "none"

    @property
    def uses_video(self) -> bool:
        return self.video_encoder != "none"


_VDF = dict(text_encoder="transformer", video_encoder="positions", fusion="fgf", decoder="transformer", decoder_fusion="cascade")
_TEXT_TF = dict(text_encoder="transformer", video_encoder="none", fusion="none", decoder="transformer", decoder_fusion="none")

# name -> switches. Paper names (Tables III/IV, X, XI) and BASELINES.md sections.
PRESETS: dict[str, dict] = {
    # VDF (SPEC §2) and its ablations (Table X)
    "vdf": dict(_VDF),
    "vdf-no-ffenc": {**_VDF, "fusion": "none"},  # w/o FF-Enc: no FGF, no re-encoding layer
    "vdf-no-cfdec": {**_VDF, "decoder_fusion": "none"},  # w/o CF-Dec: plain decoder layer 0
    "vdf-no-video": dict(_TEXT_TF),  # w/o video: no video, no fusion structures (= NCLS)
    # Table XI: fusion position (paper VDF = encoder late, decoder early)
    "vdf-enc-early": {**_VDF, "enc_fusion_layer": 1},
    "vdf-dec-late": {**_VDF, "dec_fusion_layer": -1},
    "vdf-enc-early-dec-late": {**_VDF, "enc_fusion_layer": 1, "dec_fusion_layer": -1},
    # baselines (BASELINES.md)
    "ncls": dict(_TEXT_TF),  # §5b: the published Xtransformer
    "mffg": {**_VDF, "fusion": "mffg", "decoder_fusion": "hier", "tie_output": False},  # §1
    "ha-tf": {**_VDF, "fusion": "none", "decoder_fusion": "hier"},  # §2 ambiguity 2: MFFG-TF without cross fusion
    "ha": dict(text_encoder="bigru", video_encoder="raw", fusion="none", decoder="cgru", decoder_fusion="none"),  # §2
    "videornn": dict(text_encoder="none", video_encoder="bigru", fusion="none", decoder="cgru", decoder_fusion="none"),  # §3
    "mt": dict(text_encoder="none", video_encoder="mt", fusion="none", decoder="mt", decoder_fusion="none"),  # §4
    "s2s": dict(text_encoder="bigru", video_encoder="none", fusion="none", decoder="luong", decoder_fusion="none"),  # §5a Luong
    "s2s-cgru": dict(text_encoder="bigru", video_encoder="none", fusion="none", decoder="cgru", decoder_fusion="none"),  # §5a nmtpytorch NMT
}

CONFIG_FIELDS = tuple(f.name for f in fields(ModelConfig))


def make_config(name: str, sizes: dict, src_vocab: int, tgt_vocab: int, video_dim: int, **switches) -> ModelConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r} (allowed: {', '.join(PRESETS)})")
    sizes = dict(sizes or {})
    unknown = sorted(set(sizes) - set(SIZE_KEYS))
    if unknown:
        raise ConfigError(f"model sizes: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(SIZE_KEYS)})")
    bad = sorted(set(switches) - set(CONFIG_FIELDS))
    if bad:
        raise ConfigError(f"model switch(es) {', '.join(bad)} unknown (allowed: {', '.join(CONFIG_FIELDS)})")
    values = {**PRESETS[name], **sizes, **switches}
    return ModelConfig(name=name, src_vocab=src_vocab, tgt_vocab=tgt_vocab, video_dim=video_dim, **values)


def config_from_dict(d: dict) -> ModelConfig:
    bad = sorted(set(d) - set(CONFIG_FIELDS))
    if bad:
        raise ConfigError(f"model config: unknown key(s) {', '.join(bad)} (a checkpoint from another code version?)")
    return ModelConfig(**d)
