"""Progress bars for the feature jobs: live on a terminal, a line every 30 s in log files."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], desc: str, unit: str, enabled: bool = True, total: int | None = None):
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(items, desc=desc, unit=unit, total=total, disable=not enabled, file=sys.stderr,
                mininterval=0.5 if tty else 30.0, dynamic_ncols=tty, ascii=not tty)
