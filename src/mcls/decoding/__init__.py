"""Decoding over the model contract: batched beam search (fairseq rules) and greedy.

    from mcls.decoding import beam_search, greedy, decode, make_batch, Example
    hyps = beam_search(model, batch, beam=6, max_len=200, lenpen=1.0)   # per input: n-best list
"""

from .data import Example, ids_to_text, make_batch, read_vocab
from .search import Hypothesis, beam_search, decode, greedy, search_step

__all__ = ["Example", "Hypothesis", "beam_search", "decode", "greedy", "ids_to_text", "make_batch", "read_vocab", "search_step"]
