"""Clip windows: which decoded frames form each 16-frame clip (a pure function, tested alone).

Frames are numbered from 0 in decoding order; windows are half-open ``[start, end)``, never
overlap, and a partial tail is dropped.

* ``default``: windows from frame 0 → floor(n / L) clips: [0, L), [L, 2L), …
* ``reference``: the reference extractor's rule (Hara et al.'s video-classification-3d-cnn,
  which produced the How2 features): it numbers the extracted JPEG frames from 1
  (``image_000001.jpg`` is the first frame) and starts windows at ``range(1, n - L + 1, L)``,
  i.e. from frame 1 in its numbering = our frame 0, but gives floor((n − 1) / L) clips: a
  window is kept only when at least one frame follows it, so the last full window is dropped
  when n is a multiple of L, and videos of ≤ L frames (where the reference crashed) get none —
  the extractor reports those as too short.
"""

from __future__ import annotations

CLIP_RULES = ("default", "reference")


def frames_after_window(rule: str) -> int:
    """Frames that must follow a window for the window to count (0 default, 1 reference)."""
    if rule == "default":
        return 0
    if rule == "reference":
        return 1
    raise ValueError(f"unknown clip rule {rule!r} (allowed: {', '.join(CLIP_RULES)})")


def clip_windows(n_frames: int, clip_len: int = 16, rule: str = "default") -> list[tuple[int, int]]:
    """Half-open frame windows ``[(start, end), …]`` of the clips of an ``n_frames`` video."""
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if clip_len < 1:
        raise ValueError(f"clip_len must be >= 1, got {clip_len}")
    count = max(0, (n_frames - frames_after_window(rule)) // clip_len)
    return [(i * clip_len, (i + 1) * clip_len) for i in range(count)]


def min_frames(clip_len: int = 16, rule: str = "default") -> int:
    """Fewest frames that give one clip under ``rule``."""
    return clip_len + frames_after_window(rule)
