"""Synthetic videos for tests and benchmarks: known frames in, real encoded files out.

``write_video`` encodes uint8 RGB frames with the same ffmpeg the extractor uses; with
``lossless=True`` (libx264rgb, qp 0) decoding gives back the exact input pixels, so tests can
check decoded values. The ``broken_*`` helpers produce each kind of damaged file the
extractor must report (truncated, bit-flipped, variable frame rate, audio only).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
from pathlib import Path

import numpy as np

from .ffmpeg import ffmpeg_exe


def _run(cmd: list[str], data: bytes | None = None) -> None:
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.decode(errors='replace')[-800:]}")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float | str = 8, *, lossless: bool = False,
                faststart: bool = True, gop: int | None = None) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames into ``path`` (container from the extension)."""
    t, h, w, _ = frames.shape
    codec = ["-c:v", "libx264rgb", "-qp", "0"] if lossless else ["-c:v", "libx264", "-preset", "veryfast",
                                                                  "-crf", "20", "-pix_fmt", "yuv420p"]
    if gop:
        codec += ["-g", str(gop)]
    extra = ["-movflags", "+faststart"] if faststart and str(path).endswith((".mp4", ".mov")) else []
    _run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
          "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0", *codec, "-threads", "1", *extra, str(path)],
         frames.tobytes())
    return Path(path)


def solid_frames(colors: list[tuple[int, int, int]], h: int, w: int) -> np.ndarray:
    """One frame per colour, each filled with it."""
    return np.stack([np.broadcast_to(np.asarray(c, np.uint8), (h, w, 3)) for c in colors]).copy()


def pattern_frames(n: int, h: int, w: int, color=(220, 40, 40), pattern: str = "striped", seed: int = 0,
                   noise: float = 3.0) -> np.ndarray:
    """Demo-like frames: a colour background with a pattern, a moving square and a little noise."""
    rng = np.random.default_rng(seed)
    base = np.asarray(color, np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    if pattern == "striped":
        mask = (yy // 10) % 2 == 0
    elif pattern == "checkered":
        mask = ((yy // 16) + (xx // 16)) % 2 == 0
    elif pattern == "dotted":
        mask = ((yy % 20 - 10) ** 2 + (xx % 20 - 10) ** 2) < 25
    else:
        mask = np.zeros((h, w), bool)
    shade = base * 0.45 if base.mean() > 100 else np.minimum(base + 110, 255)
    frame0 = np.where(mask[..., None], shade, base)
    side = max(4, min(h, w) // 6)
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        f = frame0 + rng.normal(0, noise, frame0.shape)
        cx, cy = (5 + 3 * t) % (w - side), (7 + 2 * t) % (h - side)
        f[cy:cy + side, cx:cx + side] = 255 - base
        out[t] = np.clip(f, 0, 255).astype(np.uint8)
    return out


def truncate_at_frame(src: str | os.PathLike, dst: str | os.PathLike, frame: int) -> Path:
    """Copy a faststart mp4 cut exactly at the start of sample ``frame`` (a clean packet boundary:
    ffmpeg reads it without any error, only the frame count shows the loss)."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "trace", "-i", str(src)], capture_output=True,
                         text=True, errors="replace").stderr
    offsets = [int(x, 16) for x in re.findall(r"AVIndex stream 0, sample \d+, offset ([0-9a-f]+)", out)]
    if len(offsets) <= frame:
        raise ValueError(f"{src}: {len(offsets)} samples, cannot cut at {frame}")
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[:sorted(offsets)[frame]])
    return Path(dst)


def truncate_bytes(src: str | os.PathLike, dst: str | os.PathLike, fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[:int(len(data) * fraction)])
    return Path(dst)


def flip_bytes(src: str | os.PathLike, dst: str | os.PathLike, count: int = 40, seed: int = 0,
               start_fraction: float = 0.3) -> Path:
    """Invert ``count`` bytes in the back part of the file (the coded frames of a faststart mp4)."""
    data = bytearray(Path(src).read_bytes())
    rng = random.Random(seed)
    for _ in range(count):
        p = rng.randrange(int(len(data) * start_fraction), len(data))
        data[p] ^= 0xFF
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def write_vfr_video(path: str | os.PathLike, frames: int = 48, h: int = 120, w: int = 160) -> Path:
    """A variable-frame-rate mp4: frame intervals of 1/8 s, then 3/8 s (frames dropped, timestamps kept)."""
    _run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
          f"testsrc2=size={w}x{h}:rate=8", "-vf", "select='lt(n\\,16)+not(mod(n\\,3))'", "-fps_mode", "vfr",
          "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-threads", "1", str(path)])
    return Path(path)


def write_audio_only(path: str | os.PathLike, seconds: float = 2.0) -> Path:
    _run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"sine=d={seconds}",
          "-c:a", "aac", str(path)])
    return Path(path)
