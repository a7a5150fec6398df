"""Decoding videos into normalized clips with ffmpeg (built with ffmpeg-python).

Per video: :func:`~mcls.video.ffmpeg.probe` → :func:`check_probe` (size, frame rate, truncation,
length) → one ffmpeg process that decodes the first video stream, resamples it when a fixed
``fps`` is set, scales it (bilinear) and centre-crops it *inside ffmpeg*, and pipes ``rgb24``
frames; :class:`VideoDecoder` cuts the pipe into clips as frames arrive, and afterwards
checks ffmpeg's exit status (``-xerror``: any decoding error fails the video) and the number
of decoded frames against the number of packets the container held.

    ffmpeg -hide_banner -nostdin -v error -xerror -i VIDEO \
        -filter_complex "[0:V:0]scale=112:112:force_original_aspect_ratio=increase:flags=bilinear,
                         format=rgb24,crop=112:112[s0]" \
        -map "[s0]" -f rawvideo -pix_fmt rgb24 -fps_mode passthrough pipe:

``-fps_mode passthrough`` passes every decoded frame exactly once (ffmpeg otherwise duplicates
frames of variable-rate input up to the nominal rate). ``force_original_aspect_ratio=increase``
makes the short side exactly 112 and keeps the aspect ratio (rounded); rotation metadata is
applied by ffmpeg before scaling.
"""

from __future__ import annotations

import collections
import math
import subprocess
import threading
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

from .clips import clip_windows, frames_after_window, min_frames
from .failures import VideoFailure
from .ffmpeg import Probe, command, count_tolerance, ffmpeg_major_minor, probe, tail

KINETICS_MEAN_255 = (114.7748, 107.7354, 99.4750)   # RGB, pixel scale 0..255 (Hara et al.)


@dataclass(frozen=True)
class Preprocess:
    """How frames become model input: ffmpeg geometry plus per-channel normalization.

    ``resize``: an int = scale the short side to it keeping the aspect ratio; a (height, width)
    pair = scale to exactly that size (torchvision's Kinetics models were trained so).
    Normalization: ``(pixel * pixel_scale - mean) / std`` per RGB channel.
    """

    resize: int | tuple[int, int] = 112
    crop: int = 112
    clip_len: int = 16
    pixel_scale: float = 1.0
    mean: tuple[float, float, float] = KINETICS_MEAN_255
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "bilinear"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["resize"] = list(self.resize) if isinstance(self.resize, tuple) else self.resize
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @property
    def frame_bytes(self) -> int:
        return self.crop * self.crop * 3


@dataclass(frozen=True)
class DecodeSettings:
    preprocess: Preprocess = Preprocess()
    fps: float | None = None            # None = native frame rate
    clip_rule: str = "default"
    min_side: int = 32                  # smaller frames are a 'frame_size' failure
    max_aspect: float = 4.0             # wider/taller frames are a 'frame_size' failure
    ffmpeg_threads: int = 1             # decoder threads per ffmpeg process (0 = ffmpeg's choice)

    def as_dict(self) -> dict:
        return {"fps": self.fps, "clip_rule": self.clip_rule, "min_side": self.min_side,
                "max_aspect": self.max_aspect, "decoder": "ffmpeg", **self.preprocess.as_dict()}


def normalize(frames: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 (…, 3) RGB → float32 ``(x * pixel_scale - mean) / std`` (a new array)."""
    out = frames.astype(np.float32)
    if pre.pixel_scale != 1.0:
        out *= np.float32(pre.pixel_scale)
    out -= np.asarray(pre.mean, dtype=np.float32)
    if any(s != 1.0 for s in pre.std):
        out /= np.asarray(pre.std, dtype=np.float32)
    return out


def decode_command(path: str, settings: DecodeSettings) -> list[str]:
    """The ffmpeg command line that pipes the preprocessed rgb24 frames of ``path`` to stdout."""
    import ffmpeg  # ffmpeg-python

    pre = settings.preprocess
    in_args = {"threads": settings.ffmpeg_threads} if settings.ffmpeg_threads else {}
    v = ffmpeg.input(path, **in_args)["V:0"]
    if settings.fps:
        v = v.filter("fps", fps=_fps_text(settings.fps))
    if isinstance(pre.resize, int):
        v = v.filter("scale", pre.resize, pre.resize, force_original_aspect_ratio="increase", flags=pre.interpolation)
    else:
        h, w = pre.resize
        v = v.filter("scale", w, h, flags=pre.interpolation)
    v = v.filter("format", "rgb24").filter("crop", pre.crop, pre.crop)
    sync = {"fps_mode": "passthrough"} if ffmpeg_major_minor() >= (5, 1) else {"vsync": "passthrough"}
    out = v.output("pipe:", format="rawvideo", pix_fmt="rgb24", **sync)
    return command(out, "-hide_banner", "-nostdin", "-v", "error", "-xerror")


def _fps_text(fps: float) -> str:
    return str(int(fps)) if float(fps).is_integer() else repr(float(fps))


@dataclass(frozen=True)
class Plan:
    """What decoding one video should give, decided from its probe."""

    expected_frames: int | None     # frames ffmpeg should deliver (None: unknown)
    fps: float                      # frame rate of the delivered frames (for clip times)


def check_probe(p: Probe, settings: DecodeSettings) -> Plan:
    """Reject videos that cannot give correct features; raises :class:`VideoFailure`."""
    w, h = p.width, p.height
    if not w or not h:
        raise VideoFailure("frame_size", f"{p.path}: frame size unknown ({p.codec} stream)", stderr_tail=p.stderr_tail)
    if min(w, h) < settings.min_side:
        raise VideoFailure("frame_size", f"{p.path}: frames are {w}x{h}, smaller than features.min_side="
                           f"{settings.min_side} pixels on the short side")
    if max(w, h) / min(w, h) > settings.max_aspect:
        raise VideoFailure("frame_size", f"{p.path}: frames are {w}x{h}, aspect ratio {max(w, h) / min(w, h):.2f} "
                           f"> features.max_aspect={settings.max_aspect}; the centre crop would keep little of it")
    if settings.fps is None and p.rate.vfr:
        raise VideoFailure(
            "variable_frame_rate",
            f"{p.path}: variable frame rate ({p.rate.irregular} of {p.rate.intervals} frame intervals differ from "
            f"the median by >10%); clips of 16 frames would cover unequal times. Set features.fps (e.g. 25) "
            "to resample every video to a fixed rate", expected_frames=p.container_frames)
    if p.container_frames is not None and p.container_frames_exact:
        tol = count_tolerance(p.container_frames, True, p.fps)
        if p.packets < p.container_frames - tol:
            raise VideoFailure("truncated", f"{p.path}: the mp4 sample table lists {p.container_frames} frames but only "
                               f"{p.packets} are in the file: truncated; re-download it",
                               expected_frames=p.container_frames, decoded_frames=p.packets, stderr_tail=p.stderr_tail)
    elif p.duration_s and p.rate.span_s is not None:
        tol_s = max(0.5, 0.02 * p.duration_s, 2.0 / (p.fps or 1.0))
        if p.rate.span_s < p.duration_s - tol_s:
            raise VideoFailure("truncated", f"{p.path}: the container lasts {p.duration_s:.2f} s but its video packets "
                               f"cover only {p.rate.span_s:.2f} s: truncated; re-download it",
                               expected_frames=p.container_frames, decoded_frames=p.packets, stderr_tail=p.stderr_tail)
    if settings.fps:
        expected = round(p.rate.span_s * settings.fps) if p.rate.span_s else None
        fps = float(settings.fps)
    else:
        expected = p.packets
        fps = p.fps or 0.0
        need = min_frames(settings.preprocess.clip_len, settings.clip_rule)
        if p.packets < need:
            raise VideoFailure("too_short", f"{p.path}: {p.packets} frames, fewer than one clip (clip_rule "
                               f"{settings.clip_rule} needs >= {need})", expected_frames=p.packets)
    if not fps or not math.isfinite(fps):
        raise VideoFailure("variable_frame_rate", f"{p.path}: frame rate unknown (no usable timestamps); "
                           "set features.fps to resample every video to a fixed rate")
    return Plan(expected, fps)


class VideoDecoder:
    """Iterate the clips of one video: ``for index, start, end, frames in dec.clips(): …``.

    ``frames`` is uint8 (clip_len, crop, crop, 3). When the iteration ends, ``frames_decoded``
    is set and failures (ffmpeg errors, missing frames, too short) are raised as
    :class:`VideoFailure`. ``close()`` kills ffmpeg early (safe to call twice).
    """

    def __init__(self, path: str, settings: DecodeSettings, plan: Plan):
        self.path = path
        self.settings = settings
        self.plan = plan
        self.frames_decoded = 0
        self._proc: subprocess.Popen | None = None
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=64)
        self._drain: threading.Thread | None = None

    def _start(self) -> subprocess.Popen:
        self._proc = subprocess.Popen(decode_command(self.path, self.settings), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1 << 20)
        self._drain = threading.Thread(target=self._drain_stderr, args=(self._proc.stderr,), daemon=True)
        self._drain.start()
        return self._proc

    def _drain_stderr(self, pipe) -> None:
        for line in iter(pipe.readline, b""):
            self._stderr.append(line)
        pipe.close()

    def stderr_tail(self) -> str:
        return tail(b"".join(self._stderr).decode("utf-8", "replace"))

    def _read(self, stdout, buf: bytearray) -> int:
        view, got = memoryview(buf), 0
        while got < len(buf):
            n = stdout.readinto(view[got:])
            if not n:
                break
            got += n
        return got

    def clips(self) -> Iterator[tuple[int, int, int, np.ndarray]]:
        pre = self.settings.preprocess
        fb, L = pre.frame_bytes, pre.clip_len
        look = frames_after_window(self.settings.clip_rule)   # frames that must follow a kept window
        proc = self._start()
        try:
            total, index, carry = 0, 0, b""
            while True:
                buf = bytearray((L + look) * fb - len(carry))
                got = self._read(proc.stdout, buf)
                total += got
                data = carry + buf[:got] if carry else (buf if got == len(buf) else buf[:got])
                if len(data) < (L + look) * fb:
                    break
                yield index, index * L, (index + 1) * L, np.frombuffer(data[:L * fb], dtype=np.uint8).reshape(
                    L, pre.crop, pre.crop, 3)
                carry = bytes(data[L * fb:])
                index += 1
            self.frames_decoded, partial = divmod(total, fb)     # the loop ends at EOF: ffmpeg is done writing
            rc = proc.wait()
            self._drain.join(timeout=10)
            self._finish(rc, partial, index)
        finally:
            self.close()

    def _finish(self, rc: int, partial: int, n_clips: int) -> None:
        n, exp = self.frames_decoded, self.plan.expected_frames
        if rc != 0:
            raise VideoFailure("decode_error", f"{self.path}: ffmpeg stopped with exit code {rc} while decoding "
                               f"(corrupted stream) after {n} frames", exit_code=rc,
                               stderr_tail=self.stderr_tail(), expected_frames=exp, decoded_frames=n)
        if partial:
            raise VideoFailure("decode_error", f"{self.path}: ffmpeg output ended inside a frame", exit_code=rc,
                               stderr_tail=self.stderr_tail(), expected_frames=exp, decoded_frames=n)
        if exp is not None and n < exp - count_tolerance(exp, True, self.plan.fps):
            raise VideoFailure("frame_count_mismatch", f"{self.path}: decoded {n} frames, the stream holds {exp}",
                               exit_code=rc, stderr_tail=self.stderr_tail(), expected_frames=exp, decoded_frames=n)
        windows = clip_windows(n, self.settings.preprocess.clip_len, self.settings.clip_rule)
        if not windows:
            need = min_frames(self.settings.preprocess.clip_len, self.settings.clip_rule)
            raise VideoFailure("too_short", f"{self.path}: {n} frames, fewer than one clip (clip_rule "
                               f"{self.settings.clip_rule} needs >= {need})", expected_frames=exp, decoded_frames=n)
        assert len(windows) == n_clips, f"{self.path}: cut {n_clips} clips from {n} frames, windows say {len(windows)}"

    def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None:
            for pipe in (proc.stdout,):
                if pipe and not pipe.closed:
                    pipe.close()


def decode_clips(path: str, settings: DecodeSettings) -> tuple[Plan, list[tuple[int, int, int, np.ndarray]]]:
    """Probe, check and decode a whole video at once (small videos, tests); raises VideoFailure."""
    plan = check_probe(probe(path), settings)
    dec = VideoDecoder(path, settings, plan)
    return plan, [(i, s, e, f.copy()) for i, s, e, f in dec.clips()]
