"""Lazy reader of encoded split tables (``encoded/<split>.parquet``, see docs/DESIGN.md).

Only the ids and the int32 length columns are read up front (what a bucketing sampler
needs). Token lists are read row group by row group from a memory-mapped file when a row
is asked for, and a small LRU of decoded row groups keeps sequential and bucketed access
cheap, so memory stays bounded whatever the corpus size.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .errors import DataError

FIELDS = ("en", "src", "sum")


class EncodedSplit:
    def __init__(self, path: str | Path, cache_row_groups: int = 8):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"encoded split {self.path} not found (run `mcls encode` first)")
        self._pf = pq.ParquetFile(self.path, memory_map=True)
        names = self._pf.schema_arrow.names
        missing = [c for c in ("video_id", *FIELDS, *(f + "_len" for f in FIELDS)) if c not in names]
        if missing:
            raise DataError(f"{self.path}: not an encoded split table (missing columns {missing})")
        head = self._pf.read(columns=["video_id", "en_len", "src_len", "sum_len"])
        self.video_ids: list[str] = head.column("video_id").to_pylist()
        self._lens = {f: head.column(f + "_len").to_numpy().astype(np.int32) for f in FIELDS}
        md = self._pf.metadata
        starts = [0]
        for g in range(md.num_row_groups):
            starts.append(starts[-1] + md.row_group(g).num_rows)
        self._rg_starts = np.asarray(starts, dtype=np.int64)
        self._cache: OrderedDict[tuple[int, str], object] = OrderedDict()
        self._cache_size = cache_row_groups
        meta = self._pf.schema_arrow.metadata or {}
        self.metadata = {k.decode(): v.decode() for k, v in meta.items()}

    def __len__(self) -> int:
        return len(self.video_ids)

    def lengths(self, field: str) -> np.ndarray:
        self._check_field(field)
        return self._lens[field]

    def has(self, field: str) -> bool:
        """True when every row has a sequence in `field` (src is null in pretrain)."""
        self._check_field(field)
        return bool(len(self) == 0 or self._lens[field].min() > 0)

    def _check_field(self, field: str) -> None:
        if field not in FIELDS:
            raise DataError(f"unknown encoded field {field!r} (fields: {', '.join(FIELDS)})")

    def _row_group(self, g: int, field: str):
        key = (g, field)
        col = self._cache.get(key)
        if col is None:
            arr = self._pf.read_row_group(g, columns=[field]).column(0).combine_chunks()
            # offsets/values as numpy once per row group (values zero-copy when no nulls sliced)
            offsets = arr.offsets.to_numpy()
            values = arr.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
            col = (offsets - offsets[0], values[offsets[0]:])
            self._cache[key] = col
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return col

    def get(self, i: int, field: str) -> np.ndarray:
        """Token ids (int32, EOS-terminated) of row `i` in `field`."""
        self._check_field(field)
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} out of range for {self.path} ({len(self)} rows)")
        if self._lens[field][i] == 0:
            raise DataError(f"{self.path}: row {i} ({self.video_ids[i]}) has no {field!r} sequence")
        g = int(np.searchsorted(self._rg_starts, i, side="right") - 1)
        offsets, values = self._row_group(g, field)
        j = i - int(self._rg_starts[g])
        return values[offsets[j]:offsets[j + 1]]
