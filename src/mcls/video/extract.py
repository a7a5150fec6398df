"""Batched feature extraction of one shard: decoder threads feed the model, rows go to the store.

    decoder thread(s)                         main thread
    probe → check → ffmpeg → clips ──queue──▶ batch of B clips (across video boundaries)
                                              → model (inference_mode, channels_last_3d,
                                                bf16 autocast on CUDA) → features
                                              → one row group per finished video, in order

ffmpeg runs as its own process, and the Python side of decoding (reading the pipe, cutting
clips, normalizing) runs in ``decode_workers`` threads with a bounded queue each, so the model
never waits for a decoder while the queue holds clips. Worker w handles videos w, w+W, …; the
main thread consumes them in the shard's order, so the output file does not depend on timing.

A video that fails (see :mod:`mcls.video.failures`) gets a manifest row; features already
computed for its first clips are dropped. The shard file is written to a temporary name and
renamed only when the job succeeds — also only when failures stay within
``max_failure_fraction``; the manifest is written in every case.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import code_version
from ..atomic import atomic_path
from .backbones import FeatureModel
from .decode import DecodeSettings, VideoDecoder, check_probe, normalize
from .failures import FailureManifest, FailureRecord, VideoFailure, enforce_max_failures
from .ffmpeg import ffmpeg_version, probe
from .inputs import VideoRef
from .progress import progress_bar
from .store import ShardWriter

log = logging.getLogger(__name__)

_STOP_POLL_S = 0.2


@dataclass
class _Video:
    index: int
    ref: VideoRef
    fps: float = 0.0
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    features: list[np.ndarray | None] = field(default_factory=list)
    outstanding: int = 0          # clips sent to a batch whose features have not come back
    finished: bool = False        # the decoder delivered all clips
    failed: bool = False


class _Worker(threading.Thread):
    """Probes and decodes the videos ``index ≡ w (mod W)`` in order into its queue."""

    def __init__(self, jobs: list[tuple[int, VideoRef]], settings: DecodeSettings, q: queue.Queue,
                 stop: threading.Event):
        super().__init__(daemon=True)
        self.jobs, self.settings, self.q, self.stop_event = jobs, settings, q, stop

    def _put(self, item) -> bool:
        while not self.stop_event.is_set():
            try:
                self.q.put(item, timeout=_STOP_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        pre = self.settings.preprocess
        for idx, ref in self.jobs:
            if self.stop_event.is_set():
                return
            try:
                if not ref.path:
                    raise VideoFailure("missing_file", f"video {ref.video_id}: the split table has no media_path")
                plan = check_probe(probe(ref.path), self.settings)
                if not self._put(("start", idx, plan.fps)):
                    return
                dec = VideoDecoder(ref.path, self.settings, plan)
                try:
                    for _ci, start, end, frames in dec.clips():
                        if not self._put(("clip", idx, (start, end, normalize(frames, pre)))):
                            return
                finally:
                    dec.close()
                if not self._put(("end", idx, dec.frames_decoded)):
                    return
            except VideoFailure as failure:
                if not self._put(("fail", idx, failure)):
                    return
            except BaseException as exc:  # a bug: hand it to the main thread, which re-raises
                self._put(("crash", idx, exc))
                return


@dataclass
class ExtractionReport:
    videos: int = 0
    extracted: int = 0
    failed: int = 0
    clips: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    wait_seconds: float = 0.0          # main thread waiting for decoders
    failures: dict = field(default_factory=dict)

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds else float("nan")

    @property
    def model_clips_per_s(self) -> float:
        return self.clips / self.model_seconds if self.model_seconds else float("nan")

    def as_dict(self) -> dict:
        return {"videos": self.videos, "extracted": self.extracted, "failed": self.failed, "clips": self.clips,
                "seconds": round(self.seconds, 3), "model_seconds": round(self.model_seconds, 3),
                "wait_seconds": round(self.wait_seconds, 3), "clips_per_s": round(self.clips_per_s, 3),
                "model_clips_per_s": round(self.model_clips_per_s, 3), "failures": self.failures}


def store_metadata(model: FeatureModel, settings: DecodeSettings, *, batch_size: int, device: str,
                   shard: int = 0, num_shards: int = 1) -> dict:
    """The metadata recorded in every shard (must agree between the shards of one store)."""
    w = model.weights
    return {
        "source": "extract",
        "backbone": model.spec.name,
        "weights": w.get("weights"),
        "weights_info": w,
        "preprocessing": settings.as_dict(),
        "clip_len": settings.preprocess.clip_len,
        "clip_rule": settings.clip_rule,
        "batch_size": batch_size,
        "device": device,
        "bf16": bool(model.bf16 and device.startswith("cuda")),
        "ffmpeg": ffmpeg_version(),
        "code_version": code_version(),
        "shard": shard,
        "num_shards": num_shards,
    }


class ShardExtractor:
    """Extract the features of a list of videos into one shard file (see the module docstring)."""

    def __init__(self, model: FeatureModel, settings: DecodeSettings, *, batch_size: int = 4,
                 decode_workers: int = 1, queue_clips: int | None = None, progress: bool = True):
        if batch_size < 1 or decode_workers < 1:
            raise ValueError("batch_size and decode_workers must be >= 1")
        self.model, self.settings = model, settings
        self.batch_size, self.decode_workers = batch_size, decode_workers
        self.queue_clips = queue_clips or max(2 * batch_size, 8)
        self.progress = progress

    def run(self, refs: list[VideoRef], out: str | Path, failures_path: str | Path, *, metadata: dict,
            max_failure_fraction: float = 0.02) -> ExtractionReport:
        out, failures_path = Path(out), Path(failures_path)
        manifest = FailureManifest()
        report = ExtractionReport(videos=len(refs))
        t0 = time.perf_counter()
        with atomic_path(out, suffix=".parquet") as tmp:
            writer = ShardWriter(tmp, self.model.dim, metadata)
            try:
                self._extract(refs, writer, manifest, report)
                writer.close([r.to_dict() for r in manifest.rows])
            except BaseException:
                writer.abort()
                raise
            report.seconds = time.perf_counter() - t0
            report.failed, report.extracted, report.failures = len(manifest), len(refs) - len(manifest), manifest.counts()
            manifest.write(failures_path)
            enforce_max_failures(manifest, len(refs), max_failure_fraction, failures_path)
        return report

    # -- the pipeline -------------------------------------------------------------------------
    def _extract(self, refs: list[VideoRef], writer: ShardWriter, manifest: FailureManifest,
                 report: ExtractionReport) -> None:
        W = min(self.decode_workers, max(1, len(refs)))
        stop = threading.Event()
        queues = [queue.Queue(maxsize=self.queue_clips) for _ in range(W)]
        jobs = [[(i, r) for i, r in enumerate(refs) if i % W == w] for w in range(W)]
        workers = [_Worker(jobs[w], self.settings, queues[w], stop) for w in range(W)]
        for t in workers:
            t.start()
        batch: list[tuple[_Video, int, np.ndarray]] = []
        done: collections.deque[_Video] = collections.deque()     # finished videos awaiting features
        bar = progress_bar(None, "extract", "video", enabled=self.progress, total=len(refs))

        def run_batch() -> None:
            if not batch:
                return
            x = np.stack([clip for _, _, clip in batch])
            t = time.perf_counter()
            feats = self.model(x)
            report.model_seconds += time.perf_counter() - t
            report.clips += len(batch)
            for (video, slot, _), f in zip(batch, feats):
                video.features[slot] = f
                video.outstanding -= 1
            batch.clear()

        def flush() -> None:
            while done and done[0].outstanding == 0:
                v = done.popleft()
                if v.failed:
                    continue
                writer.add(v.ref.video_id, np.stack(v.features).astype(np.float32, copy=False), v.starts, v.ends,
                           [s / v.fps for s in v.starts], [e / v.fps for e in v.ends])

        try:
            for idx, ref in enumerate(refs):
                q = queues[idx % W]
                video = _Video(idx, ref)
                while True:
                    t = time.perf_counter()
                    kind, i, payload = q.get()
                    report.wait_seconds += time.perf_counter() - t
                    assert i == idx, f"decoder delivered video {i} while {idx} was expected"
                    if kind == "start":
                        video.fps = payload
                    elif kind == "clip":
                        start, end, clip = payload
                        video.starts.append(start)
                        video.ends.append(end)
                        video.features.append(None)
                        video.outstanding += 1
                        batch.append((video, len(video.features) - 1, clip))
                        if len(batch) >= self.batch_size:
                            run_batch()
                            flush()
                    elif kind == "end":
                        video.finished = True
                        done.append(video)
                        break
                    elif kind == "fail":
                        video.failed = True
                        done.append(video)          # its clips in the open batch are dropped on arrival
                        manifest.add(FailureRecord.from_failure(ref.video_id, ref.path, payload))
                        log.warning("video %s failed: %s: %s", ref.video_id, payload.reason, payload.message)
                        break
                    else:  # crash
                        raise RuntimeError(f"decoder thread crashed on video {ref.video_id} ({ref.path})") from payload
                flush()
                bar.update(1)
                bar.set_postfix(clips=report.clips, failed=len(manifest), refresh=False)
            run_batch()
            flush()
            assert not done, "videos left without features"
        finally:
            stop.set()
            bar.close()
            for t in workers:
                t.join(timeout=30)
