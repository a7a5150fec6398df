"""Per-video failures and the failure manifest (one TSV row per video that produced no features).

A video that cannot be used never stops a shard and never disappears silently: it gets a row
with a reason code, a human message, ffmpeg's exit code and the tail of its stderr. The job
fails only when the share of failed videos exceeds ``features.max_failure_fraction``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import write_text
from ..errors import McLSError

# reason code → what it means (docs/features.md lists the same table)
REASONS: dict[str, str] = {
    "missing_file": "the media file does not exist (or the table row has no media_path)",
    "empty_file": "the file has zero bytes",
    "unreadable": "ffmpeg cannot open the file (not a media file, or a broken header)",
    "truncated": "the file ends early: fewer frames than the container declares, or the mp4 index is missing",
    "no_video_stream": "the file has no video stream (audio only, subtitles, …)",
    "frame_size": "frame size unknown or outside the limits (features.min_side / features.max_aspect)",
    "variable_frame_rate": "frame intervals vary; set features.fps to resample to a fixed rate",
    "decode_error": "ffmpeg reported a decoding error (-xerror): corrupted stream",
    "frame_count_mismatch": "ffmpeg decoded fewer frames than the stream holds",
    "too_short": "fewer frames than one clip",
    "bad_features": "an imported .npy file is not a float32 (k, D) array of finite values",
}

MANIFEST_COLUMNS = ("video_id", "reason", "message", "ffmpeg_exit_code", "expected_frames",
                    "decoded_frames", "media_path", "stderr_tail")


class VideoFailure(McLSError):
    """One video could not be turned into features; carries its manifest row."""

    def __init__(self, reason: str, message: str, *, exit_code: int | None = None, stderr_tail: str = "",
                 expected_frames: int | None = None, decoded_frames: int | None = None):
        assert reason in REASONS, f"unknown failure reason {reason!r}"
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.expected_frames = expected_frames
        self.decoded_frames = decoded_frames


@dataclass
class FailureRecord:
    video_id: str
    reason: str
    message: str
    media_path: str = ""
    ffmpeg_exit_code: int | None = None
    expected_frames: int | None = None
    decoded_frames: int | None = None
    stderr_tail: str = ""

    @classmethod
    def from_failure(cls, video_id: str, media_path: str | None, f: VideoFailure) -> "FailureRecord":
        return cls(video_id, f.reason, f.message, media_path or "", f.exit_code, f.expected_frames,
                   f.decoded_frames, f.stderr_tail)

    def to_dict(self, tail_chars: int = 500) -> dict:
        d = asdict(self)
        if len(d["stderr_tail"]) > tail_chars:
            d["stderr_tail"] = "…" + d["stderr_tail"][-tail_chars:]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FailureRecord":
        return cls(**{k: d.get(k) for k in ("video_id", "reason", "message")},
                   **{k: d[k] for k in ("media_path", "ffmpeg_exit_code", "expected_frames", "decoded_frames",
                                        "stderr_tail") if k in d})


@dataclass
class FailureManifest:
    rows: list[FailureRecord] = field(default_factory=list)

    def add(self, record: FailureRecord) -> None:
        self.rows.append(record)

    def __len__(self) -> int:
        return len(self.rows)

    def to_tsv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(MANIFEST_COLUMNS)
        for r in self.rows:
            w.writerow([
                r.video_id, r.reason, _one_line(r.message),
                "" if r.ffmpeg_exit_code is None else r.ffmpeg_exit_code,
                "" if r.expected_frames is None else r.expected_frames,
                "" if r.decoded_frames is None else r.decoded_frames,
                r.media_path, _one_line(r.stderr_tail),
            ])
        return buf.getvalue()

    def write(self, path: str | Path) -> None:
        write_text(path, self.to_tsv())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.reason] = out.get(r.reason, 0) + 1
        return dict(sorted(out.items()))

    def summary(self, limit: int = 20) -> str:
        lines = [f"  {r.video_id}: {r.reason}: {r.message}" for r in self.rows[:limit]]
        if len(self.rows) > limit:
            lines.append(f"  … and {len(self.rows) - limit} more")
        return "\n".join(lines)


def _one_line(text: str) -> str:
    """Keep a manifest row on one line: newlines become ' | ', tabs become spaces."""
    return " | ".join(s.strip() for s in str(text).replace("\t", " ").splitlines() if s.strip())


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a failure manifest as dicts (ints parsed; empty fields → None)."""
    path = Path(path)
    if not path.exists():
        raise McLSError(f"failure manifest {path} not found")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise McLSError(f"{path}: not a failure manifest (columns {reader.fieldnames}, expected {list(MANIFEST_COLUMNS)})")
        rows = []
        for row in reader:
            for key in ("ffmpeg_exit_code", "expected_frames", "decoded_frames"):
                row[key] = int(row[key]) if row[key] not in ("", None) else None
            rows.append(row)
        return rows


def enforce_max_failures(manifest: FailureManifest, n_total: int, max_fraction: float, manifest_path: str | Path,
                         what: str = "videos") -> None:
    """Fail the job when more than ``max_fraction`` of ``n_total`` videos failed.

    The manifest must already be written at ``manifest_path`` (the message points there and
    lists the first failures, so the job log says why even when the file is gone).
    """
    n = len(manifest)
    if n_total and n / n_total > max_fraction:
        counts = ", ".join(f"{k}: {v}" for k, v in manifest.counts().items())
        raise McLSError(
            f"{n} of {n_total} {what} failed ({n / n_total:.1%} > features.max_failure_fraction "
            f"{max_fraction:.1%}; {counts}). The failure manifest {manifest_path} has one row per video "
            f"with the reason, ffmpeg's exit code and stderr. First failures:\n{manifest.summary()}\n"
            "Fix or remove those files, or raise features.max_failure_fraction if losing them is acceptable.")
