"""Every per-video failure class gets its manifest row; the other videos' features stay intact."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from mcls.errors import McLSError
from mcls.video import synth
from mcls.video.backbones import BackboneSpec, FeatureModel, ScaledFeatures
from mcls.video.decode import DecodeSettings, Plan, Preprocess, VideoDecoder, decode_clips, normalize
from mcls.video.extract import ShardExtractor
from mcls.video.failures import VideoFailure, read_manifest
from mcls.video.inputs import VideoRef
from mcls.video.store import FeatureStore, read_shard_failures


class Tiny(nn.Module):
    """(B, 3, T, H, W) → (B, 6): per-channel mean and std through a fixed ReLU layer."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(6) * 0.01)
            self.lin.bias.fill_(2.0)

    def forward(self, x):
        return torch.relu(self.lin(torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], 1)))


def tiny_model() -> FeatureModel:
    spec = BackboneSpec("tiny", 6, Preprocess(), build=Tiny, source="test")
    return FeatureModel(spec, ScaledFeatures(Tiny()), {"weights": "test"}).to("cpu")


META = {"source": "extract", "backbone": "tiny", "weights": "test"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, VideoRef]:
    d = tmp_path_factory.mktemp("videos")
    refs = {}

    def add(vid, path):
        refs[vid] = VideoRef(vid, str(path) if path is not None else None)

    add("good1", synth.write_video(d / "good1.mp4", synth.pattern_frames(40, 120, 160, (220, 40, 40)), 8))
    add("good2", synth.write_video(d / "good2.mp4", synth.pattern_frames(20, 160, 120, (40, 70, 220), "checkered"), 25))
    add("good3", synth.write_video(d / "good3.mkv", synth.pattern_frames(32, 121, 161, (40, 180, 60), "dotted"), 8,
                                   lossless=True))
    add("missing", d / "does-not-exist.mp4")
    add("no_media", None)
    (d / "empty.mp4").write_bytes(b"")
    add("empty", d / "empty.mp4")
    (d / "text.mp4").write_text("this is not a video\n")
    add("text", d / "text.mp4")
    long = synth.write_video(d / "long.mp4", synth.pattern_frames(48, 120, 160, (230, 210, 40)), 8)
    plain = synth.write_video(d / "plain.mp4", synth.pattern_frames(48, 120, 160, (230, 210, 40)), 8, faststart=False)
    add("cut_index", synth.truncate_bytes(plain, d / "cut_index.mp4", 0.5))
    add("cut_clean", synth.truncate_at_frame(long, d / "cut_clean.mp4", 20))
    add("flipped", synth.flip_bytes(long, d / "flipped.mp4"))
    add("audio", synth.write_audio_only(d / "audio.m4a"))
    add("short", synth.write_video(d / "short.mp4", synth.pattern_frames(10, 120, 160), 8))
    add("tiny", synth.write_video(d / "tiny.mp4", synth.pattern_frames(20, 24, 24), 8))
    add("wide", synth.write_video(d / "wide.mp4", synth.pattern_frames(20, 40, 400), 8))
    add("vfr", synth.write_vfr_video(d / "vfr.mp4"))
    return refs


EXPECTED = {
    "missing": "missing_file", "no_media": "missing_file", "empty": "empty_file", "text": "unreadable",
    "cut_index": "truncated", "cut_clean": "truncated", "flipped": "decode_error", "audio": "no_video_stream",
    "short": "too_short", "tiny": "frame_size", "wide": "frame_size", "vfr": "variable_frame_rate",
}
GOOD = {"good1": 2, "good2": 1, "good3": 2}


def test_each_failure_class_gets_its_row_and_good_videos_keep_their_features(corpus, tmp_path):
    refs = sorted(corpus.values(), key=lambda r: r.video_id)
    out, manifest = tmp_path / "shard.parquet", tmp_path / "failures.tsv"
    report = ShardExtractor(tiny_model(), DecodeSettings(), batch_size=3, progress=False).run(
        refs, out, manifest, metadata=META, max_failure_fraction=1.0)
    rows = {r["video_id"]: r for r in read_manifest(manifest)}
    assert {k: r["reason"] for k, r in rows.items()} == EXPECTED
    assert report.failed == len(EXPECTED) and report.extracted == len(GOOD) and report.clips >= 5
    # rows name the file and carry ffmpeg's evidence where ffmpeg ran
    assert rows["flipped"]["ffmpeg_exit_code"] not in (None, 0) and "error" in rows["flipped"]["stderr_tail"]
    assert rows["text"]["ffmpeg_exit_code"] not in (None, 0) and rows["text"]["media_path"].endswith("text.mp4")
    assert (rows["cut_clean"]["expected_frames"], rows["cut_clean"]["decoded_frames"]) == (48, 20)
    assert "moov" in rows["cut_index"]["message"]
    assert "features.fps" in rows["vfr"]["message"]
    assert rows["short"]["expected_frames"] == 10
    # the shard holds exactly the good videos, equal to a run over the good videos alone
    store = FeatureStore(out)
    assert store.video_ids() == sorted(GOOD)
    assert {r["video_id"] for r in read_shard_failures(out)} == set(EXPECTED)
    alone = tmp_path / "alone.parquet"
    ShardExtractor(tiny_model(), DecodeSettings(), batch_size=1, progress=False).run(
        [corpus[v] for v in sorted(GOOD)], alone, tmp_path / "alone.tsv", metadata=META)
    for vid, k in GOOD.items():
        feats = store.get(vid)
        assert feats.shape == (k, 6) and feats.dtype == np.float32
        np.testing.assert_allclose(feats, FeatureStore(alone).get(vid), rtol=1e-5, atol=1e-6)
    # …and to the model applied directly on the decoded clips
    _, clips = decode_clips(corpus["good1"].path, DecodeSettings())
    direct = tiny_model()(np.stack([normalize(c, Preprocess()) for *_, c in clips]))
    np.testing.assert_allclose(store.get("good1"), direct, rtol=1e-5, atol=1e-6)
    times = store.table("good2").to_pydict()
    assert times["start_frame"] == [0] and times["end_frame"] == [16]
    assert times["start_s"] == [0.0] and times["end_s"] == pytest.approx([16 / 25])


def test_too_many_failures_fail_the_job_leave_no_shard_and_keep_the_manifest(corpus, tmp_path):
    refs = [corpus[v] for v in ("good1", "text", "empty", "short")]
    out, manifest = tmp_path / "shard.parquet", tmp_path / "failures.tsv"
    with pytest.raises(McLSError) as err:
        ShardExtractor(tiny_model(), DecodeSettings(), progress=False).run(
            refs, out, manifest, metadata=META, max_failure_fraction=0.5)
    msg = str(err.value)
    assert "3 of 4 videos failed (75.0% > features.max_failure_fraction 50.0%" in msg
    assert str(manifest) in msg and "text: unreadable" in msg
    assert not out.exists() and not list(tmp_path.glob(".shard.parquet*"))
    assert len(read_manifest(manifest)) == 3


def test_fixed_fps_accepts_variable_frame_rate_videos(corpus, tmp_path):
    plan, clips = decode_clips(corpus["vfr"].path, DecodeSettings(fps=8))
    # 48 coded frames spread over ~14 s, resampled to a constant 8 fps
    assert plan.fps == 8 and plan.expected_frames > 100 and len(clips) == plan.expected_frames // 16


def test_decoding_fewer_frames_than_the_stream_holds_is_a_failure(corpus):
    dec = VideoDecoder(corpus["good1"].path, DecodeSettings(), Plan(expected_frames=60, fps=8.0))
    with pytest.raises(VideoFailure) as err:
        list(dec.clips())
    assert err.value.reason == "frame_count_mismatch"
    assert (err.value.expected_frames, err.value.decoded_frames) == (60, 40)


def test_two_decoder_threads_give_the_same_shard(corpus, tmp_path):
    refs = [corpus[v] for v in ("good1", "text", "good2", "good3", "short")]
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for path, workers in ((a, 1), (b, 2)):
        ShardExtractor(tiny_model(), DecodeSettings(), batch_size=2, decode_workers=workers, progress=False).run(
            refs, path, tmp_path / f"{path.stem}.tsv", metadata=META, max_failure_fraction=1.0)
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.equals(tb)
    assert [pq.ParquetFile(a).metadata.row_group(i).num_rows for i in range(3)] == [2, 1, 2]


def test_a_shard_without_videos_is_a_valid_empty_shard(tmp_path):
    report = ShardExtractor(tiny_model(), DecodeSettings(), progress=False).run(
        [], tmp_path / "empty.parquet", tmp_path / "empty.tsv", metadata=META)
    assert report.videos == 0 and report.clips == 0
    store = FeatureStore(tmp_path / "empty.parquet")
    assert len(store) == 0 and store.dim == 6 and read_manifest(tmp_path / "empty.tsv") == []
