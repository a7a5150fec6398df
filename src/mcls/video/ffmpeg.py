"""Locating ffmpeg and probing videos with it (no ffprobe needed).

One ffmpeg run per video gives everything the extractor checks before decoding:

    ffmpeg -hide_banner -nostdin -v info -i VIDEO -map 0:V:0 -c copy -f framecrc -

* stderr holds the input header (container, duration, the first non-cover-art video stream:
  codec, size, frame rate, rotation) — parsed by :func:`parse_header`;
* stdout lists every packet of that stream (time base, dts, pts, duration, size) without
  decoding anything — parsed by :func:`parse_framecrc`; the sorted presentation timestamps give
  the packet count, the native frame rate and whether the rate is variable.

The container's own frame count comes from the mp4 sample table (``stsz``, the same number
ffprobe calls ``nb_frames``; :func:`mp4_video_sample_count`), or else from duration × fps. An
ffprobe on PATH is not needed and not used: the single ffmpeg pass above already has the
header and the per-packet timestamps that ffprobe would need a second pass for.

The ffmpeg binary: ``ffmpeg`` on PATH when present, else the one shipped by imageio-ffmpeg.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..errors import McLSError
from .failures import VideoFailure

PROBE_TIMEOUT_S = 600
STDERR_TAIL_CHARS = 2000


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: PATH first, then imageio-ffmpeg's bundled binary."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable binary
        raise McLSError(
            f"no ffmpeg found: install it (e.g. apt-get install ffmpeg) or `pip install imageio-ffmpeg` ({exc})"
        ) from exc
    if not exe or not os.path.exists(exe):
        raise McLSError("no ffmpeg found: install it (e.g. apt-get install ffmpeg) or `pip install imageio-ffmpeg`")
    return exe


@functools.cache
def ffmpeg_version() -> str:
    """The version token of ``ffmpeg -version`` (e.g. 'n9.0.2-17-g2a571b6068-20260930' or '5.1.9-0+deb12u1')."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True, timeout=60)
    m = re.search(r"ffmpeg version (\S+)", out.stdout)
    return m.group(1) if m else "unknown"


def ffmpeg_major_minor() -> tuple[int, int]:
    m = re.search(r"(\d+)\.(\d+)", ffmpeg_version())
    return (int(m.group(1)), int(m.group(2))) if m else (99, 0)   # git builds: assume recent


def tail(text: str, limit: int = STDERR_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


# --------------------------------------------------------------------------------------------
# Parsing ffmpeg's text output (pure functions, tested on captured samples)

_INPUT_RE = re.compile(r"^Input #0, (.+?), from '", re.M)
_DURATION_RE = re.compile(r"Duration: (?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)")
_STREAM_RE = re.compile(r"^\s*Stream #0:(\d+)\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_SIZE_RE = re.compile(r"(?:^|, )(\d+)x(\d+)(?=[ ,]|$)")
_RATE_RE = r"(\d+(?:\.\d+)?)(k?) {}"
_ROTATION_RE = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")


def _rate(text: str, unit: str) -> float | None:
    m = re.search(_RATE_RE.format(unit), text)
    if not m:
        return None
    return float(m.group(1)) * (1000.0 if m.group(2) else 1.0)


def parse_header(stderr: str) -> dict:
    """Facts from the ``Input #0`` section of ffmpeg's stderr.

    Returns ``{"opened": bool, "container", "duration_s", "streams": [kinds…], "video": {…} | None}``
    where ``video`` describes the first video stream that is not an attached picture:
    ``index, codec, width, height, fps, tbr, rotation``.
    """
    m = _INPUT_RE.search(stderr)
    if not m:
        return {"opened": False, "container": None, "duration_s": None, "streams": [], "video": None}
    section = stderr[m.start():]
    cut = re.search(r"^(Stream mapping:|Output #0)", section, re.M)
    if cut:
        section = section[:cut.start()]
    duration = None
    d = _DURATION_RE.search(section)
    if d and d.group(1) is not None:
        duration = int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3))
    streams, video = [], None
    lines = section.splitlines()
    for i, line in enumerate(lines):
        s = _STREAM_RE.match(line)
        if not s:
            continue
        kind, desc = s.group(2), s.group(3)
        streams.append(kind.lower())
        if kind != "Video" or video is not None or "(attached pic)" in desc:
            continue
        size = _SIZE_RE.search(desc)
        rotation = 0.0
        for follow in lines[i + 1:]:
            if _STREAM_RE.match(follow):
                break
            r = _ROTATION_RE.search(follow)
            if r:
                rotation = float(r.group(1))
        video = {
            "index": int(s.group(1)),
            "codec": desc.split()[0].rstrip(","),
            "width": int(size.group(1)) if size else None,
            "height": int(size.group(2)) if size else None,
            "fps": _rate(desc, "fps"),
            "tbr": _rate(desc, "tbr"),
            "rotation": rotation,
        }
    return {"opened": True, "container": m.group(1), "duration_s": duration, "streams": streams, "video": video}


NOPTS = -(2**63)


def parse_framecrc(stdout: str) -> tuple[Fraction | None, np.ndarray, np.ndarray]:
    """(time base, pts, durations) of stream 0 from ffmpeg's ``framecrc`` output.

    Packet lines are ``stream, dts, pts, duration, size, crc[, F=flags]``; missing pts
    (``-9223372036854775808``) are dropped.
    """
    tb = None
    pts, durs = [], []
    for line in stdout.splitlines():
        if line.startswith("#"):
            m = re.match(r"#tb 0: (\d+)/(\d+)", line)
            if m:
                tb = Fraction(int(m.group(1)), int(m.group(2)))
            continue
        parts = line.split(",")
        if len(parts) < 5 or parts[0].strip() != "0":
            continue
        p = int(parts[2])
        if p == NOPTS:
            continue
        pts.append(p)
        durs.append(int(parts[3]))
    return tb, np.asarray(pts, dtype=np.int64), np.asarray(durs, dtype=np.int64)


@dataclass(frozen=True)
class RateStats:
    fps: float | None          # 1 / median frame interval
    span_s: float | None       # first pts → last pts + last duration
    intervals: int
    irregular: int             # intervals more than 10 % (and > 1 tick) away from the median
    vfr: bool


def frame_rate_stats(pts: np.ndarray, durations: np.ndarray, tb: Fraction | None) -> RateStats:
    """Native frame rate and variable-frame-rate test from packet timestamps.

    The stream counts as variable-frame-rate when more than max(2, 1 %) of its frame intervals
    differ from the median interval by more than max(1 tick, 10 %): a rare dropped or doubled
    frame is tolerated, a stream whose rate changes is not.
    """
    if tb is None or len(pts) < 2:
        return RateStats(None, None, 0, 0, False)
    p = np.sort(pts)
    d = np.diff(p)
    med = float(np.median(d))
    last = int(durations[np.argmax(pts)]) if len(durations) else 0
    span = float((p[-1] - p[0] + max(last, 0)) * tb)
    if med <= 0:
        return RateStats(None, span, len(d), len(d), True)
    irregular = int(np.sum(np.abs(d - med) > max(1.0, 0.1 * med)))
    vfr = irregular > max(2, math.ceil(0.01 * len(d)))
    return RateStats(1.0 / float(med * tb), span, len(d), irregular, vfr)


def mp4_video_sample_count(path: str | os.PathLike) -> int | None:
    """Sample count of the first video track of an mp4/mov file (its ``stsz``/``stz2`` box).

    This is the container's frame count (ffprobe's ``nb_frames``). Returns None for files
    that are not ISO-BMFF, have no ``moov``, or are fragmented (samples live in ``moof``).
    """

    def boxes(fh, start: int, end: int):
        pos = start
        while pos + 8 <= end:
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                return
            size, kind = struct.unpack(">I4s", head)
            header = 8
            if size == 1:
                big = fh.read(8)
                if len(big) < 8:
                    return
                size = struct.unpack(">Q", big)[0]
                header = 16
            elif size == 0:
                size = end - pos
            if size < header:
                return
            yield kind, pos + header, min(pos + size, end)
            pos += size

    try:
        with open(path, "rb") as fh:
            file_end = fh.seek(0, os.SEEK_END)
            top = {k: (a, b) for k, a, b in boxes(fh, 0, file_end)}
            if b"moov" not in top:
                return None
            for kind, a, b in boxes(fh, *top[b"moov"]):
                if kind == b"mvex":
                    return None                       # fragmented mp4: stsz is empty
            for kind, a, b in boxes(fh, *top[b"moov"]):
                if kind != b"trak":
                    continue
                mdia = next(((x, y) for k, x, y in boxes(fh, a, b) if k == b"mdia"), None)
                if mdia is None:
                    continue
                handler, minf = None, None
                for k, x, y in boxes(fh, *mdia):
                    if k == b"hdlr":
                        fh.seek(x + 8)
                        handler = fh.read(4)
                    elif k == b"minf":
                        minf = (x, y)
                if handler != b"vide" or minf is None:
                    continue
                stbl = next(((x, y) for k, x, y in boxes(fh, *minf) if k == b"stbl"), None)
                if stbl is None:
                    return None
                for k, x, _y in boxes(fh, *stbl):
                    if k == b"stsz":
                        fh.seek(x + 8)
                        return struct.unpack(">I", fh.read(4))[0]
                    if k == b"stz2":
                        fh.seek(x + 8)
                        return struct.unpack(">I", fh.read(4))[0]
                return None
    except (OSError, struct.error):
        return None
    return None


# --------------------------------------------------------------------------------------------
# Probe


@dataclass
class Probe:
    path: str
    container: str
    duration_s: float | None
    codec: str
    width: int | None
    height: int | None
    header_fps: float | None
    rotation: float
    packets: int                     # video packets ffmpeg could read
    rate: RateStats
    container_frames: int | None     # what the container declares
    container_frames_exact: bool     # True: mp4 sample table; False: duration × fps estimate
    stderr_tail: str = field(default="", repr=False)

    @property
    def fps(self) -> float | None:
        """Native frame rate: from packet timestamps, else the header's."""
        return self.rate.fps or self.header_fps


def command(stream, *global_args: str) -> list[str]:
    """ffmpeg-python's command line for ``stream`` with the global options first (ffmpeg-python
    appends them after the output, where some ffmpeg versions warn about trailing options)."""
    import ffmpeg  # ffmpeg-python

    args = ffmpeg.compile(stream, cmd=ffmpeg_exe())
    return [args[0], *global_args, *args[1:]]


def _probe_command(path: str) -> list[str]:
    import ffmpeg  # ffmpeg-python

    stream = ffmpeg.input(path)["V:0"].output("pipe:", c="copy", format="framecrc")
    return command(stream, "-hide_banner", "-nostdin", "-v", "info")


def probe(path: str | os.PathLike) -> Probe:
    """Facts about one video file; raises :class:`VideoFailure` when there are none to get."""
    path = str(path)
    if not os.path.exists(path):
        raise VideoFailure("missing_file", f"{path}: file not found")
    if os.path.isdir(path):
        raise VideoFailure("unreadable", f"{path}: is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoFailure("empty_file", f"{path}: file is empty (0 bytes); re-download or remove it")
    try:
        out = subprocess.run(_probe_command(path), capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VideoFailure("unreadable", f"{path}: ffmpeg did not finish reading the file in {PROBE_TIMEOUT_S} s") from None
    err = out.stderr.decode("utf-8", "replace")
    header = parse_header(err)
    if not header["opened"]:
        with open(path, "rb") as fh:
            start = fh.read(12)
        if "moov atom not found" in err and start[4:8] == b"ftyp":
            raise VideoFailure("truncated", f"{path}: mp4 file without its index (moov atom): the file is truncated; "
                               "re-download it", exit_code=out.returncode, stderr_tail=tail(err))
        raise VideoFailure("unreadable", f"{path}: ffmpeg cannot open it as a media file",
                           exit_code=out.returncode, stderr_tail=tail(err))
    video = header["video"]
    if video is None:
        kinds = ", ".join(header["streams"]) or "none"
        raise VideoFailure("no_video_stream", f"{path}: no video stream (streams: {kinds})",
                           exit_code=out.returncode, stderr_tail=tail(err))
    tb, pts, durs = parse_framecrc(out.stdout.decode("utf-8", "replace"))
    if out.returncode != 0:
        raise VideoFailure("unreadable", f"{path}: ffmpeg failed reading the video packets (exit {out.returncode})",
                           exit_code=out.returncode, stderr_tail=tail(err))
    rate = frame_rate_stats(pts, durs, tb)
    exact = None
    if "mp4" in header["container"] or "mov" in header["container"]:
        exact = mp4_video_sample_count(path)
    if exact:
        container_frames, is_exact = exact, True
    elif header["duration_s"] and (video["fps"] or rate.fps):
        container_frames, is_exact = round(header["duration_s"] * (video["fps"] or rate.fps)), False
    else:
        container_frames, is_exact = None, False
    return Probe(
        path=path, container=header["container"], duration_s=header["duration_s"], codec=video["codec"],
        width=video["width"], height=video["height"], header_fps=video["fps"], rotation=video["rotation"],
        packets=len(pts), rate=rate, container_frames=container_frames, container_frames_exact=is_exact,
        stderr_tail=tail(err),
    )


def count_tolerance(expected: int, exact: bool, fps: float | None) -> int:
    """Frames a stream may lack before it counts as truncated.

    Exact container counts allow max(2, 0.5 %) (edit lists may hide a frame or two); counts
    estimated from the container duration (which includes the audio track) allow the larger
    of that, 2 % and half a second of frames.
    """
    tol = max(2, math.ceil(0.005 * expected))
    if not exact:
        tol = max(tol, math.ceil(0.02 * expected), math.ceil(0.5 * (fps or 0)))
    return tol
