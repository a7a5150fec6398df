"""Clip windowing: a pure function, both rules, edge cases."""

from __future__ import annotations

import pytest

from mcls.video.clips import clip_windows, frames_after_window, min_frames


@pytest.mark.parametrize("n, expected", [
    (0, []),
    (15, []),
    (16, [(0, 16)]),
    (17, [(0, 16)]),
    (31, [(0, 16)]),
    (32, [(0, 16), (16, 32)]),
    (33, [(0, 16), (16, 32)]),
])
def test_default_rule_floor_n_over_16_from_frame_0(n, expected):
    assert clip_windows(n) == expected
    assert len(clip_windows(n)) == n // 16


@pytest.mark.parametrize("n, expected", [
    (0, []),
    (15, []),
    (16, []),            # the reference extractor crashed here; we give no clip (→ too_short)
    (17, [(0, 16)]),
    (32, [(0, 16)]),     # floor(31/16) = 1: the last full window is dropped, as in the reference
    (33, [(0, 16), (16, 32)]),
])
def test_reference_rule_floor_n_minus_1_over_16(n, expected):
    assert clip_windows(n, rule="reference") == expected
    assert len(clip_windows(n, rule="reference")) == max(0, (n - 1) // 16)


def test_reference_rule_matches_the_reference_loop():
    # video-classification-3d-cnn-pytorch: for i in range(1, n - 16 + 1, 16): frames i .. i+15 (1-based files)
    for n in range(0, 100):
        ref = [(i - 1, i - 1 + 16) for i in range(1, n - 16 + 1, 16)]
        assert clip_windows(n, rule="reference") == ref, n


def test_windows_never_overlap_and_stay_inside():
    for rule in ("default", "reference"):
        for n in range(0, 200):
            w = clip_windows(n, 16, rule)
            assert all(e - s == 16 for s, e in w)
            assert all(a[1] == b[0] for a, b in zip(w, w[1:]))
            assert all(0 <= s and e <= n for s, e in w)


def test_other_clip_lengths_and_helpers():
    assert clip_windows(10, clip_len=4) == [(0, 4), (4, 8)]
    assert clip_windows(8, clip_len=4, rule="reference") == [(0, 4)]
    assert frames_after_window("default") == 0 and frames_after_window("reference") == 1
    assert min_frames(16, "default") == 16 and min_frames(16, "reference") == 17


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="n_frames must be >= 0"):
        clip_windows(-1)
    with pytest.raises(ValueError, match="clip_len"):
        clip_windows(10, clip_len=0)
    with pytest.raises(ValueError, match="unknown clip rule 'middle'"):
        clip_windows(10, rule="middle")
