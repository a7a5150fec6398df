"""ResNeXt-101 3D: the published size and cost, output shape, the released checkpoint format."""

from __future__ import annotations

import datetime

import pytest
import torch

from mcls.video.resnext import (CheckpointError, count_flops, count_parameters, load_resnext_checkpoint,
                                load_state_dict_strict, normalize_state_dict, released_format, resnext101)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return resnext101().eval()


def test_parameter_count_and_flops_match_the_paper():
    with torch.device("meta"):
        with_fc = resnext101(num_classes=400)
        features_only = resnext101()
    assert count_parameters(with_fc) == 48_340_816            # "48.3 M" (Hara et al. 2018)
    assert round(count_parameters(with_fc) / 1e6, 1) == 48.3
    assert count_parameters(features_only) == 48_340_816 - (2048 * 400 + 400)
    flops = count_flops(with_fc)                                # multiply-add = 2 FLOPs
    assert round(flops / 1e9, 1) == 19.1, flops


def test_stage_layout_of_the_2018_architecture(model):
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    assert model.conv1.weight.shape == (64, 3, 7, 7, 7)
    assert model.conv1.stride == (1, 2, 2)
    assert model.layer1[0].conv2.weight.shape == (128, 4, 3, 3, 3)       # 32 groups
    assert model.layer4[0].conv3.weight.shape == (2048, 1024, 1, 1, 1)
    assert model.layer1[0].downsample[0].weight.shape == (256, 64, 1, 1, 1)
    assert model.layer1[1].downsample is None                              # shortcut B


def test_output_is_the_pooled_2048_d_layer4_vector(model):
    x = torch.randn(1, 3, 16, 112, 112) * 50
    with torch.inference_mode():
        y = model(x)
        y_cl = model.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d))
    model.to(memory_format=torch.contiguous_format)
    assert y.shape == (1, 2048) and y.dtype == torch.float32
    assert (y >= 0).all()                                                   # ReLU before pooling
    torch.testing.assert_close(y, y_cl, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"expects \(B, 3, 16, 112, 112\)"):
        model(torch.zeros(1, 3, 8, 112, 112))


@pytest.mark.parametrize("prefix", ["module.", "module.module."])
def test_released_checkpoint_format_round_trip(model, tmp_path, prefix):
    ckpt = released_format(model, prefix=prefix)
    sd = ckpt["state_dict"]
    assert len(sd) == 522 and not any(k.endswith("num_batches_tracked") for k in sd)
    assert sd[prefix + "fc.weight"].shape == (400, 2048)
    assert sd[prefix + "layer1.0.downsample.1.running_var"].shape == (256,)
    path = tmp_path / "resnext-101-kinetics.pth"
    torch.save(ckpt, path)
    fresh = resnext101()
    digest = load_resnext_checkpoint(fresh, path)
    assert len(digest) == 64
    own, loaded = model.state_dict(), fresh.state_dict()
    for key, value in own.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, loaded[key]), key


def _load_in_memory(model, ckpt: dict, path: str) -> None:
    """What load_resnext_checkpoint does after torch.load (saves writing 190 MB per case).

    Loading checks every key before copying anything, so a refused checkpoint leaves ``model`` as it was.
    """
    load_state_dict_strict(model, normalize_state_dict(ckpt, path), path, ignore=("fc.",))


def test_wrong_shape_missing_and_unexpected_keys_are_named(model):
    ckpt = released_format(model)
    sd = ckpt["state_dict"]
    sd["module.layer3.5.bn2.running_mean"] = torch.zeros(7)
    del sd["module.layer4.2.bn3.bias"]
    sd["module.extra.weight"] = torch.zeros(1)
    path = "bad.pth"
    with pytest.raises(CheckpointError) as err:
        _load_in_memory(model, ckpt, path)
    msg = str(err.value)
    assert "layer3.5.bn2.running_mean: checkpoint [7] vs model [512]" in msg
    assert "missing key(s): layer4.2.bn3.bias" in msg
    assert "unexpected key(s): extra.weight" in msg
    assert str(path) in msg


def test_the_2020_layout_with_128_conv1_channels_is_refused_with_a_hint(model):
    ckpt = released_format(model)
    ckpt["state_dict"]["module.conv1.weight"] = torch.zeros(128, 3, 7, 7, 7)
    with pytest.raises(CheckpointError, match=r"conv1.weight: checkpoint \[128, 3, 7, 7, 7\] vs model \[64, 3, 7, 7, 7\]"
                       r"(.|\n)*2020 layout"):
        _load_in_memory(model, ckpt, "r3d-2020.pth")


def test_unsafe_or_foreign_files_are_refused(model, tmp_path):
    evil = tmp_path / "evil.pth"     # an arbitrary pickled object: weights_only loading refuses it
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "when": datetime.date(2018, 1, 1)}, evil)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_resnext_checkpoint(model, evil)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_resnext_checkpoint(model, text)
    with pytest.raises(CheckpointError, match="not found"):
        load_resnext_checkpoint(model, tmp_path / "missing.pth")
    torch.save({"epoch": 1}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        load_resnext_checkpoint(model, tmp_path / "empty.pth")
