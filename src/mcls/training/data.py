"""Training data: encoded rows joined with video features, padded batches, a bucketing sampler.

- `SplitData` joins the rows of an `EncodedSplit` (token ids) with a feature source (anything
  with `.dim`, `in` and `.get(video_id, max_rows)`, e.g. `mcls.video.store.FeatureStore`).
  `fields` maps batch keys to encoded fields: `{"src": "en", "tgt": "sum"}` for stage 1; a
  distillation task asks for e.g. `{"src": "src", "teacher_src": "en"}`.
- `collate` pads a list of items into the batch format of docs/DESIGN.md (`src`, `tgt_in`,
  `tgt_out`, `video`, `video_mask`, `ids`) and counts real and padded tokens.
- `BucketSampler` builds each epoch's batches from (seed, epoch) alone: a seeded permutation,
  a stable sort by length (so equal lengths come in a fresh random order every epoch), greedy
  batches under `batch_size` and/or `max_tokens`, then a seeded shuffle of the batch order.
  An epoch's batch list is a pure function of (seed, epoch), so a resumed run skips the
  batches it already trained on by position alone, and every DDP rank sees the same global
  batches and takes its shard (`shard`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import numpy as np
import torch

from ..errors import DataError

log = logging.getLogger(__name__)

PAD = 0
EOS = 1


class FeatureSource(Protocol):
    dim: int

    def __contains__(self, video_id: str) -> bool: ...

    def get(self, video_id: str, max_rows: int = 1024) -> np.ndarray: ...


class SplitData(torch.utils.data.Dataset):
    """Rows of an encoded split (optionally a subset) with their video features.

    `fields`: batch key -> encoded field; the key "tgt" becomes `tgt_in`/`tgt_out` in the batch.
    `vocab_sizes`: batch key -> vocabulary size; ids at or above it are a DataError naming the row.
    `features`: None for text-only models (batches then have no `video`). Videos absent from the
    source are skipped with a warning (`missing="skip"`, counted in `self.skipped`) or raise.
    """

    def __init__(self, encoded, fields: dict[str, str], features: FeatureSource | None = None,
                 max_video_rows: int = 1024, vocab_sizes: dict[str, int] | None = None,
                 missing: str = "skip", name: str = "split"):
        self.encoded = encoded
        self.fields = dict(fields)
        self.features = features
        self.max_video_rows = int(max_video_rows)
        self.vocab_sizes = dict(vocab_sizes or {})
        self.name = name
        n = len(encoded)
        keep = np.ones(n, dtype=bool)
        for key, f in self.fields.items():
            lens = encoded.lengths(f)
            empty = lens <= 0
            if empty.any():
                first = encoded.video_ids[int(np.flatnonzero(empty)[0])]
                raise DataError(f"{name}: {int(empty.sum())} rows have no {f!r} sequence (first: {first}); "
                                f"this split cannot feed batch key {key!r}")
        self.skipped: list[str] = []
        if features is not None:
            ids = encoded.video_ids
            missing_ids = [i for i, v in enumerate(ids) if v not in features]
            if missing_ids:
                names = [ids[i] for i in missing_ids]
                if missing == "error" or len(missing_ids) == n:
                    raise DataError(f"{name}: {len(names)} of {n} videos have no features in the feature "
                                    f"store (first: {', '.join(names[:5])})")
                log.warning("%s: skipping %d of %d videos without features (first: %s)",
                            name, len(names), n, ", ".join(names[:5]))
                keep[missing_ids] = False
                self.skipped = names
        self.rows = np.flatnonzero(keep).astype(np.int64)  # dataset index -> encoded row
        self._lengths = {key: encoded.lengths(f)[self.rows].astype(np.int64) for key, f in self.fields.items()}

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self, key: str) -> np.ndarray:
        """Sequence lengths (with EOS) of batch key `key` for every dataset index."""
        return self._lengths[key]

    @property
    def video_ids(self) -> list[str]:
        ids = self.encoded.video_ids
        return [ids[int(r)] for r in self.rows]

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        vid = self.encoded.video_ids[row]
        item: dict[str, Any] = {"id": vid}
        for key, f in self.fields.items():
            ids = np.asarray(self.encoded.get(row, f), dtype=np.int64)
            limit = self.vocab_sizes.get(key)
            if limit is not None and ids.size and (ids.max() >= limit or ids.min() < 0):
                raise DataError(f"{self.name}: video {vid}: {f!r} has token id {int(ids.max())} outside "
                                f"the vocabulary of size {limit} (encoded with a different vocabulary?)")
            item[key] = ids
        if self.features is not None:
            v = np.asarray(self.features.get(vid, max_rows=self.max_video_rows), dtype=np.float32)
            if v.ndim != 2 or v.shape[1] != self.features.dim:
                raise DataError(f"{self.name}: video {vid}: features of shape {v.shape}, expected (k, {self.features.dim})")
            if v.shape[0] == 0:
                raise DataError(f"{self.name}: video {vid} has no feature rows")
            item["video"] = v[: self.max_video_rows]
        return item


def _pad(seqs: list[np.ndarray]) -> torch.Tensor:
    out = np.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return torch.from_numpy(out)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad items into the DESIGN batch format; `stats` counts real/padded tokens and clips.

    Target `y = [y1 … y_l=EOS]` gives `tgt_in = [EOS, y1 … y_{l-1}]`, `tgt_out = y` (pad 0).
    """
    if not items:
        raise ValueError("collate needs at least one item")
    batch: dict[str, Any] = {"ids": [it["id"] for it in items]}
    stats = {"text_real": 0, "text_padded": 0, "video_real": 0, "video_padded": 0, "samples": len(items)}
    for key in items[0]:
        if key in ("id", "video"):
            continue
        seqs = [it[key] for it in items]
        lens = [len(s) for s in seqs]
        stats["text_real"] += sum(lens)
        stats["text_padded"] += max(lens) * len(lens)
        if key == "tgt":
            batch["tgt_out"] = _pad(seqs)
            batch["tgt_in"] = _pad([np.concatenate([[EOS], s[:-1]]) for s in seqs])
        else:
            batch[key] = _pad(seqs)
    if "video" in items[0]:
        ks = [it["video"].shape[0] for it in items]
        k, dim = max(ks), items[0]["video"].shape[1]
        video = np.zeros((len(items), k, dim), dtype=np.float32)
        mask = np.zeros((len(items), k), dtype=bool)
        for i, it in enumerate(items):
            video[i, : ks[i]] = it["video"]
            mask[i, : ks[i]] = True
        batch["video"] = torch.from_numpy(video)
        batch["video_mask"] = torch.from_numpy(mask)
        stats["video_real"] = sum(ks)
        stats["video_padded"] = k * len(ks)
    batch["stats"] = stats
    return batch


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {k: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def padding_waste(real: int, padded: int) -> float:
    """Share of padded cells that are padding (0 = none)."""
    return 0.0 if padded <= 0 else 1.0 - real / padded


@dataclass
class BucketSampler:
    """Length-bucketed global batches, reshuffled each epoch from (seed, epoch).

    `lengths`: one int array per batch key (all of length N). A batch's cost is
    `len(batch) * sum_k max(lengths_k[batch])` padded tokens; a batch closes when adding
    the next example would exceed `max_tokens` or `batch_size` (either may be None). An
    example over `max_tokens` on its own forms a batch of one (counted by `oversized(epoch)`).
    `batch_size` and `max_tokens` are global: with DDP the batch is split across ranks.
    """

    lengths: list[np.ndarray]
    seed: int
    batch_size: int | None = None
    max_tokens: int | None = None
    _cache: dict[int, tuple[list[np.ndarray], int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size is None and self.max_tokens is None:
            raise ValueError("BucketSampler needs batch_size or max_tokens")
        self.lengths = [np.asarray(x, dtype=np.int64) for x in self.lengths]
        if not self.lengths or len({len(x) for x in self.lengths}) != 1:
            raise ValueError("BucketSampler needs one or more length arrays of equal size")
        self.n = len(self.lengths[0])

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, 0x5A3, int(epoch)])

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The global batches of `epoch` (arrays of dataset indices), in training order."""
        if epoch in self._cache:
            return self._cache[epoch][0]
        rng = self._rng(epoch)
        perm = rng.permutation(self.n)
        total = sum(x[perm] for x in self.lengths)
        order = perm[np.argsort(total, kind="stable")]
        rows = np.stack([x[order] for x in self.lengths], axis=1).tolist()  # (N, F) python ints
        out: list[np.ndarray] = []
        start, oversized = 0, 0
        cur_max = [0] * len(self.lengths)
        for pos, lens in enumerate(rows):
            count = pos - start
            new_max = [max(a, b) for a, b in zip(cur_max, lens)]
            full = self.batch_size is not None and count + 1 > self.batch_size
            over = self.max_tokens is not None and (count + 1) * sum(new_max) > self.max_tokens
            if count > 0 and (full or over):
                out.append(order[start:pos])
                start, new_max = pos, list(lens)
            if pos == start and self.max_tokens is not None and sum(lens) > self.max_tokens:
                oversized += 1
            cur_max = new_max
        if start < self.n:
            out.append(order[start:])
        batch_order = rng.permutation(len(out))
        result = [out[i] for i in batch_order]
        if len(self._cache) > 4:
            self._cache.pop(next(iter(self._cache)))
        self._cache[epoch] = (result, oversized)
        return result

    def oversized(self, epoch: int) -> int:
        """Examples of `epoch` that exceed `max_tokens` alone (each trained as a batch of one)."""
        self.batches(epoch)
        return self._cache[epoch][1]

    def num_batches(self, epoch: int) -> int:
        return len(self.batches(epoch))

    def padding_waste(self, epoch: int) -> float:
        """Text padding waste of the epoch's batches, computed from the lengths alone."""
        real = padded = 0
        for b in self.batches(epoch):
            for x in self.lengths:
                xs = x[b]
                real += int(xs.sum())
                padded += int(xs.max()) * len(b)
        return padding_waste(real, padded)


def shard(global_batch: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, float]:
    """This rank's part of a global batch and its loss weight.

    Rank r takes items r, r+W, r+2W, …. A rank left with nothing (a global batch smaller than
    the world) recomputes item 0 with weight 0, so every rank still runs a backward pass and the
    gradient all-reduce stays in step; the global gradient is unchanged.
    """
    part = global_batch[rank::world]
    if len(part) == 0:
        return global_batch[:1], 0.0
    return part, 1.0


def iterate_batches(dataset: SplitData, batches: Iterable[np.ndarray], workers: int = 0,
                    pin_memory: bool = False):
    """Collated batches for an explicit list of index arrays (in order), optionally with workers."""
    batches = [b.tolist() for b in batches]
    if workers <= 0:
        for b in batches:
            yield collate([dataset[i] for i in b])
        return
    # Its own generator: a DataLoader draws a base seed for its workers, which must not come from
    # the global stream (dropout would then depend on the worker count). Loading uses no randomness.
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                         num_workers=workers, pin_memory=pin_memory,
                                         prefetch_factor=2, persistent_workers=False,
                                         generator=torch.Generator().manual_seed(0))
    yield from loader
