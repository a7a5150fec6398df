"""Tokenization (SPEC §1.2).

How2 text is already lowercased and tokenized: English and Portuguese split on whitespace.
Chinese is written without spaces: one token per character, except that runs of ASCII
letters/digits (names, numbers, URLs such as ``johngraden.com`` pieces) stay whole.
"""

from __future__ import annotations

import re
from typing import Callable

# A run of ASCII letters/digits, or any single non-space character.
_ZH_TOKEN = re.compile(r"[A-Za-z0-9]+|\S")

SENTENCE_END = frozenset({".", "?", "!", "。", "？", "！"})


def tokenize_ws(text: str) -> list[str]:
    return text.split()


def tokenize_zh(text: str) -> list[str]:
    return _ZH_TOKEN.findall(text)


def tokenizer_for(lang: str) -> Callable[[str], list[str]]:
    """The tokenizer of a language code (``en``, ``pt``, ``zh``)."""
    if lang == "zh":
        return tokenize_zh
    if lang in ("en", "pt"):
        return tokenize_ws
    raise ValueError(f"unknown language {lang!r} (known: en, pt, zh)")


def detokenize(tokens: list[str], lang: str) -> str:
    """Inverse of the tokenizer for display: Chinese characters are joined without spaces."""
    if lang != "zh":
        return " ".join(tokens)
    out: list[str] = []
    for tok in tokens:
        if out and tok.isascii() and tok.isalnum() and out[-1].isascii() and out[-1][-1:].isalnum():
            out.append(" ")
        out.append(tok)
    return "".join(out)


def count_sentences(tokens: list[str]) -> int:
    """Sentences in a tokenized text: sentence-final punctuation tokens, plus an unterminated tail."""
    n = 0
    tail = False
    for tok in tokens:
        if tok in SENTENCE_END:
            if tail:
                n += 1
            tail = False
        else:
            tail = True
    return n + (1 if tail else 0)
