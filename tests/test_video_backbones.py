"""Backbones: the settings table, weights (checkpoint / torchvision / random), random-init features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcls.errors import McLSError
from mcls.video import backbones as bb
from mcls.video.backbones import BACKBONES, calibration_clips, load_backbone
from mcls.video.decode import normalize
from mcls.video.resnext import CheckpointError, resnext101
from mcls.video.synth import pattern_frames

COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "yellow": (230, 210, 40)}


def test_settings_table_rows():
    assert set(BACKBONES) == {"resnext101", "r3d_18", "mc3_18", "r2plus1d_18", "s3d"}
    r = BACKBONES["resnext101"]
    assert (r.dim, r.preprocess.resize, r.preprocess.crop, r.preprocess.std) == (2048, 112, 112, (1.0, 1.0, 1.0))
    assert r.preprocess.mean == (114.7748, 107.7354, 99.4750) and r.preprocess.pixel_scale == 1.0
    for name in ("r3d_18", "mc3_18", "r2plus1d_18"):
        s = BACKBONES[name]
        assert (s.dim, s.preprocess.resize, s.preprocess.crop) == (512, (128, 171), 112)
        assert s.torchvision_weights.endswith("KINETICS400_V1")
    assert (BACKBONES["s3d"].dim, BACKBONES["s3d"].preprocess.crop) == (1024, 224)
    with pytest.raises(McLSError, match="unknown backbone 'i3d'"):
        bb.get_spec("i3d")


@pytest.fixture(scope="module")
def resnext_random():
    return load_backbone("resnext101", random_init_ok=True, seed=42)


def test_random_resnext_is_seeded_recorded_and_scaled(resnext_random):
    fm = resnext_random
    w = fm.weights
    assert w["weights"] == "random" and w["random_init"]["seed"] == 42
    assert 0.05 < w["output_scale"] < 0.5
    clips = normalize(calibration_clips(bb.CALIBRATION_CLIPS, 112, 16, 42), fm.spec.preprocess)
    f = fm(clips)
    assert f.shape == (4, 2048) and f.dtype == np.float32 and (f >= 0).all()
    assert f.mean() == pytest.approx(bb.RANDOM_TARGET_MEAN, rel=1e-3)
    torch.manual_seed(42)                                   # the weights are the seeded authors' init
    ref = resnext101()
    own = fm.module.model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in ref.state_dict().items())


def test_random_features_are_order_one_and_keep_colours_and_patterns_apart(resnext_random):
    pre = resnext_random.spec.preprocess
    labels, clips = [], []
    for name, rgb in list(COLOURS.items())[:2]:
        for pattern in ("plain", "striped"):
            for seed in (1, 2):
                clips.append(normalize(pattern_frames(16, 112, 112, rgb, pattern, seed=seed), pre))
                labels.append(f"{name}/{pattern}")
    f = np.concatenate([resnext_random(np.stack(clips[i:i + 4])) for i in range(0, len(clips), 4)])
    assert 0.1 < f.mean() < 1.0 and f.max() < 8 and (f >= 0).all()        # How2: mean ~0.33, max ~3.5
    d = np.linalg.norm(f[:, None] - f[None], axis=2)
    labels = np.array(labels)
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    assert d[same].max() < d[labels[:, None] != labels[None]].min()          # every class apart from the others


def test_no_weights_is_an_error_naming_the_setting():
    with pytest.raises(McLSError, match="features.checkpoint .*docs/features.md.*random_init_ok"):
        load_backbone("resnext101")
    with pytest.raises(McLSError, match="torchvision_weights"):
        load_backbone("r3d_18")


def test_torchvision_backbone_from_a_local_weights_file(tmp_path):
    from torchvision.models.video import r2plus1d_18

    torch.manual_seed(3)
    ref = r2plus1d_18(weights=None).eval()
    torch.save(ref.state_dict(), tmp_path / "r2plus1d_18-91a641e6.pth")
    fm = load_backbone("r2plus1d_18", checkpoint=tmp_path / "r2plus1d_18-91a641e6.pth")
    assert fm.weights["weights"].startswith("sha256:") and fm.weights["output_scale"] == 1.0
    x = np.random.default_rng(0).standard_normal((1, 16, 112, 112, 3)).astype(np.float32)
    f = fm(x)
    assert f.shape == (1, 512)
    ref.fc = torch.nn.Identity()
    with torch.inference_mode():
        want = ref(torch.from_numpy(x).permute(0, 4, 1, 2, 3).contiguous()).numpy()
    np.testing.assert_allclose(f, want, rtol=1e-4, atol=1e-5)
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(1)}}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="missing key"):
        load_backbone("r2plus1d_18", checkpoint=tmp_path / "wrong.pth")


def test_s3d_random_features_are_1024_d():
    fm = load_backbone("s3d", random_init_ok=True, seed=1)
    pre = fm.spec.preprocess
    f = fm(normalize(pattern_frames(16, 224, 224, (40, 70, 220), "checkered"), pre)[None])
    assert f.shape == (1, 1024) and (f >= 0).all() and 0.05 < f.mean() < 2


def test_torchvision_weights_without_network_explain_the_offline_route(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(McLSError, match=r"download https://download.pytorch.org/models/r3d_18-b3b3357e.pth elsewhere"):
        load_backbone("r3d_18", torchvision_weights=True)


def test_cuda_device_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(McLSError, match="no CUDA device"):
        load_backbone("resnext101", random_init_ok=True, device="cuda")
