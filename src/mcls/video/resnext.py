"""ResNeXt-101 3D (Hara, Kataoka & Satoh, CVPR 2018), the paper's video feature extractor.

The architecture is the 2018 release of 3D-ResNets-PyTorch exactly (SPEC §3), so that its
Kinetics-400 checkpoint ``resnext-101-kinetics.pth`` loads with strict key and shape checks:

    conv1  3→64, 7×7×7, stride (1,2,2), pad 3, BN, ReLU      # (B, 64, 16, 56, 56)
    maxpool 3×3×3, stride 2, pad 1                           # (B, 64, 8, 28, 28)
    layer1  3 blocks, inner 128,  out 256,  stride 1         # (B, 256, 8, 28, 28)
    layer2  4 blocks, inner 256,  out 512,  stride 2         # (B, 512, 4, 14, 14)
    layer3 23 blocks, inner 512,  out 1024, stride 2         # (B, 1024, 2, 7, 7)
    layer4  3 blocks, inner 1024, out 2048, stride 2         # (B, 2048, 1, 4, 4)
    avgpool (1,4,4) → the 2048-d feature                      # (B, 2048)

Bottleneck ("ResNeXt block", expansion 2): 1×1×1 → grouped 3×3×3 (32 groups, carries the
stride) → 1×1×1, BN after each, ReLU after the first two and after the residual sum.
Shortcut type B: identity, except a 1×1×1 conv + BN in the first block of each stage.
48.3 M parameters with the 400-way Kinetics ``fc`` (47.5 M without it, as the extractor builds
it); 19.1 GFLOPs per 16×112×112 clip, counting a multiply-add as 2 FLOPs (9.57 G multiply-adds).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import McLSError

log = logging.getLogger(__name__)

CLIP_LEN = 16
CROP = 112
FEATURE_DIM = 2048
STAGES = (3, 4, 23, 3)       # blocks per stage (ResNeXt-101)
CARDINALITY = 32
EXPANSION = 2


class CheckpointError(McLSError):
    """A checkpoint file does not match the model (missing/unexpected keys, wrong shapes, bad format)."""


class Bottleneck(nn.Module):
    """ResNeXt bottleneck: in → inner (1×1×1) → inner (3×3×3, 32 groups, stride) → out = 2·planes."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        inner = CARDINALITY * (planes // 32)          # 128, 256, 512, 1024
        self.conv1 = nn.Conv3d(inplanes, inner, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(inner)
        self.conv2 = nn.Conv3d(inner, inner, kernel_size=3, stride=stride, padding=1,
                               groups=CARDINALITY, bias=False)
        self.bn2 = nn.BatchNorm3d(inner)
        self.conv3 = nn.Conv3d(inner, planes * EXPANSION, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNeXt3D(nn.Module):
    """ResNeXt-101 3D; ``forward`` returns the avg-pooled layer-4 feature (B, 2048).

    ``num_classes`` > 0 adds the Kinetics ``fc`` head (only for ``classify``); the extractor
    builds the model without it and ignores the checkpoint's ``fc.*`` tensors.
    """

    def __init__(self, layers: tuple[int, ...] = STAGES, num_classes: int = 0):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=(3, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self._inplanes = 64
        self.layer1 = self._stage(128, layers[0], stride=1)
        self.layer2 = self._stage(256, layers[1], stride=2)
        self.layer3 = self._stage(512, layers[2], stride=2)
        self.layer4 = self._stage(1024, layers[3], stride=2)
        self.avgpool = nn.AvgPool3d(kernel_size=(1, 4, 4), stride=1)
        self.fc = nn.Linear(FEATURE_DIM, num_classes) if num_classes else None
        for m in self.modules():       # Hara et al.'s init: kaiming-normal fan-out, BN = identity
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * EXPANSION
        downsample = None
        if stride != 1 or self._inplanes != out:          # shortcut type B
            downsample = nn.Sequential(
                nn.Conv3d(self._inplanes, out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(out),
            )
        mods = [Bottleneck(self._inplanes, planes, stride, downsample)]
        self._inplanes = out
        mods += [Bottleneck(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, 16, 112, 112), pixel values 0..255 minus the Kinetics mean
        if x.shape[1:] != (3, CLIP_LEN, CROP, CROP):
            raise ValueError(f"ResNeXt-101 3D expects (B, 3, {CLIP_LEN}, {CROP}, {CROP}) clips, got {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))     # (B, 64, 8, 28, 28)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 2048, 1, 4, 4)
        return self.avgpool(x).flatten(1)                        # (B, 2048)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc is None:
            raise ValueError("model built without the fc head (num_classes=0)")
        return self.fc(self.forward(x))


def resnext101(num_classes: int = 0) -> ResNeXt3D:
    return ResNeXt3D(STAGES, num_classes=num_classes)


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, CLIP_LEN, CROP, CROP)) -> int:
    return 2 * count_macs(model, input_shape)


# --------------------------------------------------------------------------------------------
# Counting (tests assert the published 48.3 M parameters and 19.1 GFLOPs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, CLIP_LEN, CROP, CROP)) -> int:
    """Multiply-accumulates of the conv and linear layers per input item (FLOPs = 2 × MACs).

    Runs the model on the ``meta`` device (no memory, no arithmetic) and counts from output
    shapes; build the model under ``torch.device("meta")`` to skip a copy.
    """
    import copy

    meta = model if next(model.parameters()).is_meta else copy.deepcopy(model).to("meta")
    total = 0

    def conv_hook(m: nn.Conv3d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * m.kernel_size[2]
        total += out.numel() * (m.in_channels // m.groups) * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in meta.modules():
        if isinstance(m, nn.Conv3d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    with torch.no_grad():
        meta.eval()(torch.empty(input_shape, device="meta"))
    for h in hooks:
        h.remove()
    return total // input_shape[0]


# --------------------------------------------------------------------------------------------
# The released checkpoint format


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_PREFIX = re.compile(r"^(?:module\.)+")


def normalize_state_dict(obj, path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Return the tensors of a checkpoint object with every leading ``module.`` prefix removed.

    Accepts the released format (``{"epoch", "arch", "state_dict", "optimizer"}``) or a bare
    state dict.
    """
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path}: not a model checkpoint (expected a dict with a 'state_dict' of tensors, "
            f"as in the released resnext-101-kinetics.pth)")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        short = _PREFIX.sub("", key)
        if short in out:
            raise CheckpointError(f"{path}: key {key!r} collides with another key after removing 'module.' prefixes")
        out[short] = value
    return out


def load_state_dict_strict(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path,
                           ignore: tuple[str, ...] = (), optional: tuple[str, ...] = ("num_batches_tracked",)) -> None:
    """Copy ``tensors`` into ``model``; fail naming every missing, unexpected or wrong-shape key.

    ``ignore``: key prefixes in the checkpoint that are allowed and dropped (the unused ``fc.``).
    ``optional``: key suffixes the model has but the checkpoint may lack (BN ``num_batches_tracked``).
    """
    own = model.state_dict()
    tensors = {k: v for k, v in tensors.items() if not (k.startswith(ignore) and k not in own)}
    missing = [k for k in own if k not in tensors and not k.endswith(optional)]
    unexpected = [k for k in tensors if k not in own]
    wrong = [f"{k}: checkpoint {list(tensors[k].shape)} vs model {list(v.shape)}"
             for k, v in own.items() if k in tensors and tensors[k].shape != v.shape]
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) with the wrong shape: " + "; ".join(wrong[:8])
                        + (" …" if len(wrong) > 8 else ""))
        if "conv1.weight" in tensors and tensors["conv1.weight"].shape[0] == 128:
            problems.append("conv1 has 128 output channels: this is the 2020 layout of 3D-ResNets-PyTorch, "
                            "which this 2018 architecture does not load; use the 2018 resnext-101-kinetics.pth")
    if missing:
        problems.append(f"{len(missing)} missing key(s): " + ", ".join(missing[:8]) + (" …" if len(missing) > 8 else ""))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected[:8])
                        + (" …" if len(unexpected) > 8 else ""))
    if problems:
        raise CheckpointError(f"{path}: does not match the model:\n  " + "\n  ".join(problems))
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v)


def load_resnext_checkpoint(model: ResNeXt3D, path: str | Path) -> str:
    """Load the released ``resnext-101-kinetics.pth`` (or the same format) into ``model``.

    Returns the file's sha256 (recorded in the feature store's metadata).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found (see docs/features.md: Kinetics checkpoint)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors, truncated zip files, non-checkpoint files
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint with weights_only=True ({exc})") from exc
    tensors = normalize_state_dict(obj, path)
    ignore = ("fc.",) if model.fc is None else ()
    load_state_dict_strict(model, tensors, path, ignore=ignore)
    return sha256_file(path)


def released_format(model: ResNeXt3D, prefix: str = "module.", num_classes: int = 400, seed: int = 0) -> dict:
    """The state of ``model`` in the released checkpoint's format (used by tests and docs).

    Keys carry ``prefix``; an ``fc`` of ``num_classes`` rows is added when the model has none;
    BN ``num_batches_tracked`` buffers are dropped (the release has none): 522 keys.
    """
    sd = {prefix + k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    if model.fc is None:
        g = torch.Generator().manual_seed(seed)
        sd[prefix + "fc.weight"] = torch.randn(num_classes, FEATURE_DIM, generator=g) * 0.01
        sd[prefix + "fc.bias"] = torch.zeros(num_classes)
    return {"epoch": 200, "arch": "resnext-101", "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}}
