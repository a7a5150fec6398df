"""VDF and every baseline of the paper as one `Seq2Seq` class with switches (docs/model.md).

    from mcls.model import build_model
    model = build_model("vdf", config["model"], src_vocab, tgt_vocab, video_dim=2048)
    model = build_model("vdf", sizes, V, V, 2048, share_src_tgt_embedding=True)   # stage 1
    model = model_from_config(checkpoint["model_config"])                           # rebuild

The torch-dependent names are imported on first use, so `mcls.model.config` (presets, sizes)
stays cheap to import — the Snakefile reads the presets at every parse.
"""

from importlib import import_module

from .config import CHOICES, PRESETS, SIZE_KEYS, ModelConfig, config_from_dict, make_config

_LAZY = {
    "EOS": "layers", "PAD": "layers", "UNK": "layers",
    "Seq2Seq": "seq2seq", "build_model": "seq2seq", "build_text_encoder": "seq2seq",
    "config_dict": "seq2seq", "model_from_config": "seq2seq",
}

__all__ = ["CHOICES", "PRESETS", "SIZE_KEYS", "ModelConfig", "config_from_dict", "make_config", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
