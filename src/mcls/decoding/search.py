"""Batched beam search and greedy decoding over the model decoding contract (docs/DESIGN.md):

    enc = model.encode(batch)
    enc, cache = model.reorder(enc, cache, order)      # beams share their input's memories
    lprobs = model.decode_step(tokens, enc, cache)     # (rows, V) log-probs of the next token

The search never asks which modalities a model has. fairseq's rules (SequenceGenerator):
  * each step keeps the 2 x beam best continuations per input (`search_step`); an EOS among the
    first `beam` of them ends a hypothesis (finalised with score sum(log p) / length^lenpen,
    length counting the EOS), the first `beam` non-EOS ones continue;
  * an input is finished once it holds `beam` finalised hypotheses (`stop_early`, fairseq's and
    the published generator's default) -- or, with stop_early=False (old fairseq's option), once
    no live hypothesis can beat the worst finalised one (a better one replaces the worst);
  * EOS is not allowed before `min_len` tokens (default 1: no empty summaries, as fairseq and the
    published generator); at step `max_len` EOS is the only choice, so hypotheses have at most
    max_len tokens before the EOS;
  * finished inputs leave the batch (their memories and caches are dropped by `reorder`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..model.layers import EOS, PAD

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    tokens: list[int]  # generated token ids, without BOS and the final EOS
    score: float  # log_prob / (len(tokens) + 1) ** lenpen
    log_prob: float  # sum of the log-probs of every generated token, EOS included
    positional_scores: list[float] = field(default_factory=list)  # per token, EOS last


def search_step(lprobs, scores, step: int):
    """One beam step, pure. lprobs (N, beam, V): log-probs of the next token of every live
    hypothesis; scores (N, beam): their cumulative log-probs. At step 0 all beams hold the same
    prefix, so only beam 0 is expanded. Returns the 2 x beam best continuations per input as
    (cumulative scores, tokens, parent beams), each (N, 2 x beam), best first."""
    n, beam, v = lprobs.shape
    total = lprobs + scores.unsqueeze(-1)  # (N, beam, V)
    if step == 0:
        total = total.clone()
        total[:, 1:] = NEG_INF
    k = min(2 * beam, beam * v)
    cand_scores, idx = torch.topk(total.reshape(n, beam * v), k, dim=1)
    return cand_scores, idx % v, torch.div(idx, v, rounding_mode="floor")


def _num_inputs(batch: dict) -> tuple[int, torch.device]:
    for key in ("src", "video"):
        x = batch.get(key)
        if torch.is_tensor(x):
            return x.size(0), x.device
    raise ValueError(f"batch has neither 'src' nor 'video' (keys: {sorted(batch)})")


def _constrain(lprobs, step: int, min_len: int, max_len: int, eos: int, pad: int):
    lprobs[..., pad] = NEG_INF
    if step < min_len:
        lprobs[..., eos] = NEG_INF
    if step >= max_len:  # only EOS left
        eos_lp = lprobs[..., eos].clone()
        lprobs.fill_(NEG_INF)
        lprobs[..., eos] = eos_lp
    return lprobs


@torch.no_grad()
def beam_search(model, batch: dict, *, beam: int = 6, max_len: int = 200, lenpen: float = 1.0, min_len: int = 1,
                nbest: int = 1, stop_early: bool = True, use_cache: bool = True, bos: int = EOS, eos: int = EOS,
                pad: int = PAD) -> list[list[Hypothesis]]:
    """Beam search for every input of `batch` at once. Returns, per input, its `nbest` finalised
    hypotheses, best first. `use_cache=False` decodes with decode_step(cache=None) (reference)."""
    assert beam >= 1 and max_len >= 1, f"beam {beam} and max_len {max_len} must be >= 1"
    n, device = _num_inputs(batch)
    enc = model.encode(batch)
    cache = {} if use_cache else None
    enc, cache = model.reorder(enc, cache, torch.arange(n, device=device).repeat_interleave(beam))
    tokens = torch.full((n * beam, 1), bos, dtype=torch.long, device=device)  # (rows, t)
    scores = None  # (n_alive, beam) cumulative log-probs
    pos_scores = None  # (rows, t - 1)
    alive = list(range(n))  # original index of each live input
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    arange2 = torch.arange(2 * beam, device=device)

    for step in range(max_len + 1):
        m = len(alive)
        lprobs = model.decode_step(tokens, enc, cache)
        lprobs = _constrain(lprobs.view(m, beam, -1), step, min_len, max_len, eos, pad)
        if scores is None:
            scores = lprobs.new_zeros(m, beam)
            pos_scores = lprobs.new_zeros(m * beam, 0)
        cand_scores, cand_tokens, cand_beams = search_step(lprobs, scores, step)
        cand_lp = cand_scores - scores.gather(1, cand_beams)  # log p of the candidate token
        is_eos = cand_tokens.eq(eos)

        # finalise EOS candidates ranked within the first `beam` (fairseq's 2 x beam rule)
        final = (is_eos & torch.isfinite(cand_scores))[:, :beam]
        if bool(final.any()):
            norm = float(step + 1) ** lenpen
            for i, j in final.nonzero().tolist():
                hyps = finished[alive[i]]
                lp = float(cand_scores[i, j])
                worst = min(range(len(hyps)), key=lambda x: hyps[x].score) if len(hyps) >= beam else None
                if worst is not None and (stop_early or lp / norm <= hyps[worst].score):
                    continue
                row = i * beam + int(cand_beams[i, j])
                hyp = Hypothesis(tokens[row, 1:].tolist(), lp / norm, lp, pos_scores[row].tolist() + [float(cand_lp[i, j])])
                if worst is None:
                    hyps.append(hyp)
                else:  # stop_early=False: a better hypothesis replaces the worst
                    hyps[worst] = hyp
        # continue with the first `beam` candidates that are not EOS
        key = is_eos.long() * (2 * beam) + arange2[: cand_scores.size(1)]
        active = torch.topk(key, beam, dim=1, largest=False).indices  # (m, beam), rank order
        new_scores = cand_scores.gather(1, active)
        best_live = new_scores.max(dim=1).values.tolist()  # -inf: nothing left to finalise

        def reachable(bl):  # best normalised score a live hypothesis (cum. score bl <= 0) can reach
            return max(bl / float(step + 2) ** lenpen, bl / float(max_len + 1) ** lenpen)

        done = [
            step >= max_len or bl == NEG_INF
            or (len(finished[a]) >= beam and (stop_early or min(h.score for h in finished[a]) >= reachable(bl)))
            for a, bl in zip(alive, best_live)
        ]
        if all(done):
            break
        new_tokens = cand_tokens.gather(1, active)
        new_tokens = torch.where(torch.isfinite(new_scores), new_tokens, torch.full_like(new_tokens, eos))  # dead rows
        new_beams = cand_beams.gather(1, active)
        new_lp = cand_lp.gather(1, active)

        keep = torch.tensor([not d for d in done], device=device).nonzero().squeeze(1)  # live inputs
        rows = (keep.unsqueeze(1) * beam + new_beams[keep]).reshape(-1)  # parent row of each new row
        tokens = torch.cat([tokens[rows], new_tokens[keep].reshape(-1, 1)], dim=1)
        pos_scores = torch.cat([pos_scores[rows], new_lp[keep].reshape(-1, 1)], dim=1)
        scores = new_scores[keep]
        alive = [alive[i] for i in keep.tolist()]
        enc, cache = model.reorder(enc, cache, rows)

    return [sorted(h, key=lambda x: -x.score)[:nbest] for h in finished]


@torch.no_grad()
def greedy(model, batch: dict, *, max_len: int = 200, lenpen: float = 1.0, min_len: int = 1, use_cache: bool = True,
           bos: int = EOS, eos: int = EOS, pad: int = PAD) -> list[list[Hypothesis]]:
    """Arg-max decoding (what the published generator effectively does): one hypothesis per
    input, stopped at EOS or after max_len tokens."""
    n, device = _num_inputs(batch)
    enc = model.encode(batch)
    cache = {} if use_cache else None
    tokens = torch.full((n, 1), bos, dtype=torch.long, device=device)
    alive = list(range(n))
    total = torch.zeros(n, dtype=torch.float64, device=device)
    pos: list[list[float]] = [[] for _ in range(n)]
    out: list[list[Hypothesis]] = [[] for _ in range(n)]
    for step in range(max_len + 1):
        lprobs = _constrain(model.decode_step(tokens, enc, cache), step, min_len, max_len, eos, pad)
        lp, tok = lprobs.max(dim=-1)  # (rows,)
        total = total + lp.double()
        for i, (a, p) in enumerate(zip(alive, lp.tolist())):
            pos[a].append(p)
        ended = tok.eq(eos)
        for i in ended.nonzero().squeeze(1).tolist():
            a, s = alive[i], float(total[i])
            out[a] = [Hypothesis(tokens[i, 1:].tolist(), s / float(step + 1) ** lenpen, s, pos[a])]
        keep = (~ended).nonzero().squeeze(1)
        if keep.numel() == 0:
            break
        tokens = torch.cat([tokens[keep], tok[keep].unsqueeze(1)], dim=1)
        total = total[keep]
        alive = [alive[i] for i in keep.tolist()]
        if keep.numel() < ended.numel():
            enc, cache = model.reorder(enc, cache, keep)
    return out


def decode(model, batch: dict, *, mode: str = "beam", beam: int = 6, max_len: int = 200, lenpen: float = 1.0,
           min_len: int = 1, stop_early: bool = True, use_cache: bool = True) -> list[Hypothesis]:
    """The best hypothesis per input: mode `beam` (SPEC §5 default) or `greedy` (published)."""
    if mode == "beam":
        res = beam_search(model, batch, beam=beam, max_len=max_len, lenpen=lenpen, min_len=min_len,
                          stop_early=stop_early, use_cache=use_cache)
    elif mode == "greedy":  # (stop_early does not apply)
        res = greedy(model, batch, max_len=max_len, lenpen=lenpen, min_len=min_len, use_cache=use_cache)
    else:
        raise ValueError(f"decoding mode {mode!r} is not one of beam, greedy")
    return [r[0] for r in res]
