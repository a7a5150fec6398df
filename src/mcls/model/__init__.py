"""VDF and every baseline of the paper as one `Seq2Seq` class with switches (docs/model.md).

    from mcls.model import build_model
    model = build_model("vdf", config["model"], src_vocab, tgt_vocab, video_dim=2048)
    model = build_model("vdf", sizes, V, V, 2048, share_src_tgt_embedding=True)   # stage 1
    model = model_from_config(checkpoint["model_config"])                           # rebuild
"""

from .config import CHOICES, PRESETS, SIZE_KEYS, ModelConfig, config_from_dict, make_config
from .layers import EOS, PAD, UNK
from .seq2seq import Seq2Seq, build_model, build_text_encoder, config_dict, model_from_config

__all__ = [
    "CHOICES", "PRESETS", "SIZE_KEYS", "ModelConfig", "config_from_dict", "make_config",
    "EOS", "PAD", "UNK", "Seq2Seq", "build_model", "build_text_encoder", "config_dict", "model_from_config",
]
