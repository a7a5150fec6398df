"""Decoding generated videos of several sizes and frame rates: frames, clips, crop, normalization."""

from __future__ import annotations

import numpy as np
import pytest

from mcls.video import ffmpeg as ff
from mcls.video.decode import DecodeSettings, Preprocess, decode_clips, decode_command, normalize
from mcls.video.synth import solid_frames, write_video

COLORS = [((8 * i) % 256, 255 - 5 * i, (37 * i) % 256) for i in range(40)]


@pytest.mark.parametrize("h, w, fps, n", [
    (120, 160, 8, 40),            # the demo's 4:3 size
    (160, 120, 25, 33),           # portrait
    (121, 161, "30000/1001", 17), # odd sizes, NTSC rate
    (112, 112, 8, 16),            # exactly one clip, no scaling
    (240, 320, 12, 32),           # downscaling
])
def test_lossless_videos_decode_to_their_exact_frames(tmp_path, h, w, fps, n):
    frames = solid_frames(COLORS[:n], h, w)
    path = write_video(tmp_path / f"v{w}x{h}.mp4", frames, fps, lossless=True)
    plan, clips = decode_clips(str(path), DecodeSettings())
    assert plan.expected_frames == n
    assert plan.fps == pytest.approx(eval(str(fps)), rel=1e-3)
    assert [(s, e) for _, s, e, _ in clips] == [(16 * i, 16 * i + 16) for i in range(n // 16)]
    got = np.concatenate([c for *_, c in clips]) if clips else np.zeros((0, 112, 112, 3), np.uint8)
    assert got.shape == (16 * (n // 16), 112, 112, 3) and got.dtype == np.uint8
    want = np.asarray(COLORS[:len(got)], np.uint8)[:, None, None, :]
    assert np.array_equal(got, np.broadcast_to(want, got.shape))


@pytest.mark.parametrize("n, windows", [(32, [(0, 16)]), (33, [(0, 16), (16, 32)]), (40, [(0, 16), (16, 32)])])
def test_reference_clip_rule_needs_a_frame_after_each_window(tmp_path, n, windows):
    frames = solid_frames(COLORS[:n], 120, 160)
    path = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    plan, clips = decode_clips(str(path), DecodeSettings(clip_rule="reference"))
    assert [(s, e) for _, s, e, _ in clips] == windows
    assert tuple(clips[0][3][0, 0, 0]) == COLORS[0] and tuple(clips[-1][3][-1, 5, 5]) == COLORS[windows[-1][1] - 1]


def test_reference_clip_rule_on_exactly_16_frames_is_too_short(tmp_path):
    from mcls.video.failures import VideoFailure

    path = write_video(tmp_path / "v.mp4", solid_frames(COLORS[:16], 120, 160), 8, lossless=True)
    with pytest.raises(VideoFailure, match="needs >= 17") as err:
        decode_clips(str(path), DecodeSettings(clip_rule="reference"))
    assert err.value.reason == "too_short"


def test_short_side_scaled_to_112_and_centre_cropped(tmp_path):
    # 336x112: the short side is already 112, the crop keeps columns 112..223 (the middle third)
    h, w = 112, 336
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, :112] = (255, 0, 0)
    frame[:, 112:168] = (0, 255, 0)
    frame[:, 168:224] = (0, 0, 255)
    frame[:, 224:] = (255, 255, 255)
    path = write_video(tmp_path / "wide.mp4", np.stack([frame] * 16), 8, lossless=True)
    _, clips = decode_clips(str(path), DecodeSettings())
    f = clips[0][3][0]
    assert f.shape == (112, 112, 3)
    assert tuple(f[50, 10]) == (0, 255, 0) and tuple(f[50, 100]) == (0, 0, 255)
    # 448x224 (2:1), four 112-px bands: scaled to 224x112 (bilinear) the bands are 56 px wide and
    # the crop [56, 168) holds green then blue
    big = np.zeros((224, 448, 3), np.uint8)
    for i, c in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        big[:, 112 * i:112 * (i + 1)] = c
    path = write_video(tmp_path / "big.mp4", np.stack([big] * 16), 8, lossless=True)
    _, clips = decode_clips(str(path), DecodeSettings())
    f = clips[0][3][0].astype(int)
    assert np.abs(f[50, 20] - (0, 255, 0)).max() <= 2 and np.abs(f[50, 90] - (0, 0, 255)).max() <= 2


def test_fixed_fps_resamples_inside_ffmpeg(tmp_path):
    frames = solid_frames(COLORS[:40], 120, 160)               # 5 s at 8 fps
    path = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    plan, clips = decode_clips(str(path), DecodeSettings(fps=4))
    assert plan.fps == 4 and plan.expected_frames == 20
    assert len(clips) == 1
    got = clips[0][3][:, 0, 0]
    assert [tuple(c) for c in got[:4]] == [COLORS[0], COLORS[2], COLORS[4], COLORS[6]]
    assert "fps=4" in " ".join(decode_command(str(path), DecodeSettings(fps=4)))


def test_lossy_demo_like_video_decodes_close_to_its_colour(tmp_path):
    frames = np.broadcast_to(np.asarray((220, 40, 40), np.uint8), (24, 120, 160, 3)).copy()
    path = write_video(tmp_path / "lossy.mp4", frames, 8)       # libx264 yuv420p, like the demo
    plan, clips = decode_clips(str(path), DecodeSettings())
    assert len(clips) == 1 and plan.expected_frames == 24
    assert np.abs(clips[0][3].astype(int).mean(axis=(0, 1, 2)) - (220, 40, 40)).max() < 4


def test_normalization_kinetics_mean_and_torchvision_scaling():
    frames = np.full((2, 4, 4, 3), 200, np.uint8)
    out = normalize(frames, Preprocess())
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [200 - 114.7748, 200 - 107.7354, 200 - 99.4750], rtol=1e-6)
    tv = Preprocess(resize=(128, 171), pixel_scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    np.testing.assert_allclose(normalize(frames, tv)[1, 3, 3], [(200 / 255 - 0.5) / s for s in (0.25, 0.5, 1.0)],
                               rtol=1e-5)


def test_header_and_packet_parsers_on_captured_output():
    header = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 77 kb/s
  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
  Stream #0:1[0x2](und): Video: mjpeg (Baseline), yuvj420p(pc), 300x300, 90k tbr, 90k tbn (attached pic)
  Stream #0:2[0x3](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 640x360 [SAR 1:1 DAR 16:9], 700 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)
      Side data:
        displaymatrix: rotation of -90.00 degrees
Stream mapping:
  Stream #0:2 -> #0:0 (copy)
"""
    h = ff.parse_header(header)
    assert h["opened"] and h["container"].startswith("mov")
    assert h["duration_s"] == pytest.approx(62.5)
    assert h["streams"] == ["audio", "video", "video"]
    v = h["video"]                                        # the attached picture is skipped
    assert (v["index"], v["codec"], v["width"], v["height"]) == (2, "h264", 640, 360)
    assert v["fps"] == pytest.approx(29.97) and v["rotation"] == -90.0
    assert not ff.parse_header("x.mp4: No such file or directory")["opened"]
    tb, pts, durs = ff.parse_framecrc("#tb 0: 1/16384\n#media_type 0: video\n"
                                      "0,      -4096,          0,     2048,     3440, 0x4f904d09\n"
                                      "0,      -2048,       4096,     2048,     1744, 0x1eed622b, F=0x0\n"
                                      "0,          0,       2048,     2048,      905, 0x5677ca9f, F=0x0\n")
    assert tb == ff.Fraction(1, 16384) and list(pts) == [0, 4096, 2048]
    rate = ff.frame_rate_stats(pts, durs, tb)
    assert rate.fps == pytest.approx(8.0) and not rate.vfr and rate.span_s == pytest.approx(6144 / 16384)


def test_vfr_detection_tolerates_one_irregular_interval():
    tb = ff.Fraction(1, 1000)
    regular = np.arange(100, dtype=np.int64) * 40
    one_drop = np.delete(regular, 50)
    vfr = np.concatenate([np.arange(50) * 40, 2000 + np.arange(50) * 120])
    durs = np.full(100, 40)
    assert not ff.frame_rate_stats(one_drop, durs[:99], tb).vfr
    assert ff.frame_rate_stats(vfr, durs, tb).vfr
    ntsc_ms = np.round(np.arange(300) * 1001 / 30).astype(np.int64)   # 33/34 ms intervals in a 1/1000 time base
    assert not ff.frame_rate_stats(ntsc_ms, np.full(300, 33), tb).vfr


def test_mp4_sample_count_reads_the_stsz_box(tmp_path):
    path = write_video(tmp_path / "v.mp4", solid_frames(COLORS[:21], 120, 160), 8)
    assert ff.mp4_video_sample_count(path) == 21
    plain = write_video(tmp_path / "v.mp4", solid_frames(COLORS[:21], 120, 160), 8, faststart=False)
    assert ff.mp4_video_sample_count(plain) == 21                 # moov after mdat
    mkv = write_video(tmp_path / "v.mkv", solid_frames(COLORS[:21], 120, 160), 8)
    assert ff.mp4_video_sample_count(mkv) is None
    p = ff.probe(mkv)
    assert p.container_frames == 21 and not p.container_frames_exact and p.packets == 21
