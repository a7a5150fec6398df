"""Video backbones as rows of one settings table, behind one feature-model interface.

| name          | model                                     | D    | frames → model input                          |
|---------------|-------------------------------------------|------|-----------------------------------------------|
| resnext101    | ResNeXt-101 3D, Hara et al. 2018 (paper)  | 2048 | short side 112, crop 112, 0..255 − mean       |
| r3d_18        | torchvision R3D-18 (Kinetics-400)         | 512  | 128×171, crop 112, /255, torchvision mean/std |
| mc3_18        | torchvision MC3-18                        | 512  | same                                          |
| r2plus1d_18   | torchvision R(2+1)D-18                    | 512  | same                                          |
| s3d           | torchvision S3D                           | 1024 | 256×256, crop 224, /255, mean/std             |

Every backbone takes clips of 16 frames and returns one D-dimensional vector per clip: the
globally average-pooled output of its last convolutional stage (the classifier is not used).

Weights, in order of preference: a local checkpoint file (``features.checkpoint``; the released
``resnext-101-kinetics.pth`` for resnext101, a torchvision state-dict file for the others);
torchvision's own Kinetics weights downloaded into ``$TORCH_HOME`` (``features.torchvision_weights``;
needs internet once); seeded random weights (``features.random_init_ok``), loudly warned and
recorded as ``weights=random``.

Random weights (the demo has no Kinetics checkpoint): the authors' own initialisation
(Hara et al.: kaiming-normal fan-out convolutions; torchvision's for its models), seeded;
BatchNorm keeps its initial statistics (mean 0, variance 1, γ=1, β=0), so in eval mode the
network is a fixed piecewise-linear map of the input. Its raw features are non-negative
(ReLU before pooling) but their scale depends on the architecture (ResNeXt-101: mean ≈ 2.7,
max ≈ 30; S3D: ≈ 2e-7). One scalar fixes that: the features of four seeded synthetic clips
(coloured moving stripes, checkerboards, discs) are computed once, and every feature is
multiplied by ``0.35 / their mean`` — the mean of the real How2 ResNeXt features (0.27–0.38
in the 18-video sample). Scaling keeps every difference between videos (colours and patterns stay apart;
docs/features.md has the measurements).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import McLSError
from .decode import KINETICS_MEAN_255, Preprocess, normalize
from .resnext import (CheckpointError, load_resnext_checkpoint, load_state_dict_strict, normalize_state_dict,
                      resnext101, sha256_file)

log = logging.getLogger(__name__)

TV_MEAN = (0.43216, 0.394666, 0.37645)
TV_STD = (0.22803, 0.22145, 0.216989)
RANDOM_TARGET_MEAN = 0.35          # mean of real How2 ResNeXt-101 features (0.27–0.38 per video)
CALIBRATION_CLIPS = 4


def _build_resnext() -> nn.Module:
    return resnext101(num_classes=0)


def _build_torchvision(name: str) -> nn.Module:
    from torchvision.models import video as tvv

    return getattr(tvv, name)(weights=None)      # full model with its 400-way head (checkpoints load strictly)


def _strip_torchvision_head(model: nn.Module) -> nn.Module:
    """Feature output of a torchvision video model: drop the classifier, keep the pooling."""
    if hasattr(model, "fc"):               # VideoResNet: avgpool → flatten → fc
        model.fc = nn.Identity()
        return model
    if hasattr(model, "classifier"):       # S3D: features → avgpool → classifier → mean(T,H,W)
        model.classifier = nn.Identity()
        return model
    raise TypeError(f"do not know how to take features from {type(model).__name__}")


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    dim: int
    preprocess: Preprocess
    build: Callable[[], nn.Module]
    source: str                          # "hara2018" | "torchvision"
    torchvision_weights: str | None = None
    description: str = ""


_TV_112 = Preprocess(resize=(128, 171), crop=112, clip_len=16, pixel_scale=1 / 255, mean=TV_MEAN, std=TV_STD)
_TV_224 = Preprocess(resize=(256, 256), crop=224, clip_len=16, pixel_scale=1 / 255, mean=TV_MEAN, std=TV_STD)

BACKBONES: dict[str, BackboneSpec] = {
    "resnext101": BackboneSpec("resnext101", 2048, Preprocess(112, 112, 16, 1.0, KINETICS_MEAN_255), _build_resnext,
                               "hara2018", None, "ResNeXt-101 3D (Hara et al. 2018), Kinetics-400: the paper's features"),
    "r3d_18": BackboneSpec("r3d_18", 512, _TV_112, lambda: _build_torchvision("r3d_18"), "torchvision",
                           "R3D_18_Weights.KINETICS400_V1", "torchvision R3D-18, Kinetics-400"),
    "mc3_18": BackboneSpec("mc3_18", 512, _TV_112, lambda: _build_torchvision("mc3_18"), "torchvision",
                           "MC3_18_Weights.KINETICS400_V1", "torchvision MC3-18, Kinetics-400"),
    "r2plus1d_18": BackboneSpec("r2plus1d_18", 512, _TV_112, lambda: _build_torchvision("r2plus1d_18"), "torchvision",
                                "R2Plus1D_18_Weights.KINETICS400_V1", "torchvision R(2+1)D-18, Kinetics-400"),
    "s3d": BackboneSpec("s3d", 1024, _TV_224, lambda: _build_torchvision("s3d"), "torchvision",
                        "S3D_Weights.KINETICS400_V1", "torchvision S3D, Kinetics-400"),
}


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise McLSError(f"unknown backbone {name!r} (allowed: {', '.join(BACKBONES)})")
    return BACKBONES[name]


# --------------------------------------------------------------------------------------------
# Random weights


def calibration_clips(n: int, size: int, clip_len: int, seed: int) -> np.ndarray:
    """``n`` seeded synthetic uint8 clips (n, clip_len, size, size, 3): moving stripes, checkerboards, discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) * (112.0 / size)
    out = np.empty((n, clip_len, size, size, 3), dtype=np.uint8)
    for i in range(n):
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        period, speed, angle = rng.uniform(8, 40), rng.uniform(-3, 3), rng.uniform(0, np.pi)
        for t in range(clip_len):
            u = (np.cos(angle) * xx + np.sin(angle) * yy + speed * t) / period
            kind = i % 3
            if kind == 0:
                m = np.floor(u) % 2
            elif kind == 1:
                m = (np.floor(xx / period + speed * t / period) + np.floor(yy / period)) % 2
            else:
                m = ((xx - 56 - speed * t) ** 2 + (yy - 56) ** 2 < (2 * period) ** 2).astype(np.float32)
            frame = m[..., None] * c1 + (1 - m[..., None]) * c2 + rng.normal(0, 5, (size, size, 3))
            out[i, t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


class ScaledFeatures(nn.Module):
    """``model(x) * scale``: the output scaling of random-weight backbones (scale 1 otherwise)."""

    def __init__(self, model: nn.Module, scale: float = 1.0):
        super().__init__()
        self.model = model
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


def _warn_random(name: str, seed: int, scale: float) -> None:
    bar = "!" * 78
    msg = (f"\n{bar}\n!! RANDOM WEIGHTS: backbone {name} runs with seeded random weights (seed {seed}),\n"
           f"!! not a Kinetics checkpoint. Features keep colours/patterns/motion apart but carry no\n"
           f"!! learned knowledge; results are NOT comparable with the paper. The store records\n"
           f"!! weights=random. For real features set features.checkpoint (see docs/features.md).\n{bar}")
    log.warning("random weights for backbone %s (seed %d, output scale %.4g)", name, seed, scale)
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Loading


@dataclass
class FeatureModel:
    """A backbone ready to turn normalized clips into features.

    ``__call__(clips)``: float32 (B, T, H, W, 3) numpy array (the decoder's layout) → float32
    (B, D). On CUDA the forward runs under bf16 autocast unless ``bf16=False``.
    """

    spec: BackboneSpec
    module: nn.Module
    weights: dict = field(default_factory=dict)     # what was loaded: recorded in the store metadata
    device: torch.device = torch.device("cpu")
    bf16: bool = True

    def to(self, device: str | torch.device) -> "FeatureModel":
        self.device = torch.device(device)
        self.module = self.module.to(self.device).to(memory_format=torch.channels_last_3d).eval()
        return self

    @property
    def dim(self) -> int:
        return self.spec.dim

    def input_tensor(self, clips: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(clips)                       # (B, T, H, W, C)
        if self.device.type != "cpu":
            x = x.pin_memory().to(self.device, non_blocking=True)
        return x.permute(0, 4, 1, 2, 3)                   # (B, C, T, H, W), channels_last_3d strides

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.device.type == "cuda" and self.bf16:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    y = self.module(x)
            else:
                y = self.module(x)
            return y.float()

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        return self.forward_tensor(self.input_tensor(clips)).cpu().numpy()


def _torchvision_state_dict(spec: BackboneSpec) -> tuple[dict, dict]:
    from torchvision.models import get_weight

    weights = get_weight(spec.torchvision_weights)
    try:
        sd = weights.get_state_dict(progress=sys.stderr.isatty(), check_hash=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise McLSError(
            f"cannot get torchvision's {spec.torchvision_weights} weights ({type(exc).__name__}: {exc}). "
            f"Without internet, download {weights.url} elsewhere and set features.checkpoint to the file"
        ) from exc
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    info = {"weights": f"torchvision:{spec.torchvision_weights}", "url": weights.url}
    if cached.exists():
        info["sha256"] = sha256_file(cached)
    return sd, info


def load_backbone(name: str, *, checkpoint: str | Path | None = None, torchvision_weights: bool = False,
                  random_init_ok: bool = False, seed: int = 42, device: str = "cpu", bf16: bool = True) -> FeatureModel:
    """Build backbone ``name`` with its weights (see the module docstring for the order of choice)."""
    spec = get_spec(name)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise McLSError(f"features.device is {device!r} but torch sees no CUDA device; set features.device: cpu")
    if not (checkpoint or (torchvision_weights and spec.torchvision_weights) or random_init_ok):
        hint = ("set features.checkpoint to resnext-101-kinetics.pth (docs/features.md explains where to get it)"
                if spec.source == "hara2018" else
                "set features.checkpoint to a torchvision weights file or features.torchvision_weights: true")
        raise McLSError(f"no weights for backbone {name}: {hint}, or set features.random_init_ok: true to run with "
                        "seeded random weights (the features then carry no Kinetics knowledge)")
    torch.manual_seed(seed)
    model = spec.build()
    if checkpoint:
        path = Path(checkpoint)
        if spec.source == "hara2018":
            digest = load_resnext_checkpoint(model, path)
        else:
            if not path.is_file():
                raise CheckpointError(f"checkpoint {path} not found")
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001
                raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True) ({exc})") from exc
            load_state_dict_strict(model, normalize_state_dict(obj, path), path)
            digest = sha256_file(path)
        info = {"weights": f"sha256:{digest}", "checkpoint": str(path.resolve()), "sha256": digest}
        scale = 1.0
    elif torchvision_weights and spec.torchvision_weights:
        sd, info = _torchvision_state_dict(spec)
        load_state_dict_strict(model, normalize_state_dict(sd, spec.torchvision_weights), spec.torchvision_weights)
        scale = 1.0
    else:
        info, scale = {"weights": "random"}, None
    if spec.source == "torchvision":
        model = _strip_torchvision_head(model)
    fm = FeatureModel(spec, ScaledFeatures(model, 1.0), info, bf16=bf16)
    if scale is None:
        pre = spec.preprocess
        clips = normalize(calibration_clips(CALIBRATION_CLIPS, pre.crop, pre.clip_len, seed), pre)
        fm.to("cpu")
        raw = fm(clips)
        scale = RANDOM_TARGET_MEAN / max(float(raw.mean()), 1e-30)
        fm.module.scale.fill_(scale)
        info.update({"random_init": {
            "scheme": "authors' init (seeded) + BatchNorm at initial statistics + output scale to a "
                      f"mean of {RANDOM_TARGET_MEAN} on {CALIBRATION_CLIPS} seeded synthetic clips",
            "seed": seed, "output_scale": scale, "target_mean": RANDOM_TARGET_MEAN}})
        _warn_random(name, seed, scale)
    info["output_scale"] = scale
    return fm.to(device)
