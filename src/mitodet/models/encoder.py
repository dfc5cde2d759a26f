"""Encoders (backbones) that declare their named output levels, channels and strides.

Every encoder returns an ordered dict ``{name: tensor}`` of the last layer of each stage
(EN_1..EN_4 in the paper; C2..C5 for ResNets) and exposes ``levels``, a tuple of
:class:`LevelSpec`, so necks can check compatibility at construction time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.ops import FrozenBatchNorm2d


@dataclass(frozen=True)
class LevelSpec:
    """One encoder output: its key, channel count and stride (pixels of input per cell)."""

    name: str
    channels: int
    stride: int


def _norm_layer(norm: str):
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "gn":
        return lambda c: nn.GroupNorm(32, c)
    return nn.BatchNorm2d


class ResNetEncoder(nn.Module):
    """torchvision ResNet trunk returning C2..C5 (strides 4, 8, 16, 32)."""

    def __init__(self, arch: str = "resnet50", norm: str = "bn") -> None:
        super().__init__()
        net = getattr(tvm, arch)(weights=None, norm_layer=_norm_layer(norm))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        widths = [64, 128, 256, 512]
        expansion = 4 if arch in ("resnet50", "resnet101", "resnet152") else 1
        self.levels = tuple(LevelSpec(f"c{i + 2}", widths[i] * expansion, 2 ** (i + 2)) for i in range(4))
        self.arch = arch

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.stem(x)
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return OrderedDict(c2=c2, c3=c3, c4=c4, c5=c5)

    def torchvision_state_dict_keys(self, key: str) -> str | None:
        """Map a key of torchvision's ResNet state dict onto this module (None: unused)."""
        if key.startswith("fc."):
            return None
        for src, dst in (("conv1.", "stem.0."), ("bn1.", "stem.1.")):
            if key.startswith(src):
                return dst + key[len(src) :]
        return key


# (feature index after which the stage ends, channels, stride) for torchvision MobileNets.
_MOBILENET_STAGES = {
    "mobilenet_v2": ((3, 24, 4), (6, 32, 8), (13, 96, 16), (18, 1280, 32)),
    "mobilenet_v3_large": ((3, 24, 4), (6, 40, 8), (12, 112, 16), (16, 960, 32)),
    "mobilenet_v3_small": ((1, 16, 4), (3, 24, 8), (8, 48, 16), (12, 576, 32)),
}


class MobileNetEncoder(nn.Module):
    """torchvision MobileNetV2/V3 ``features`` split into four stages (strides 4..32)."""

    def __init__(self, arch: str = "mobilenet_v2", norm: str = "bn") -> None:
        super().__init__()
        net = getattr(tvm, arch)(weights=None, norm_layer=_norm_layer(norm))
        stages = _MOBILENET_STAGES[arch]
        self.features = net.features
        self._ends = tuple(end for end, _, _ in stages)
        self.levels = tuple(LevelSpec(f"c{i + 2}", c, s) for i, (_, c, s) in enumerate(stages))
        # Layers after the last stage end are unused; drop them so they hold no parameters.
        self.features = self.features[: self._ends[-1] + 1]
        self.arch = arch

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        level = 0
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self._ends[level]:
                out[self.levels[level].name] = x
                level += 1
        return out

    def torchvision_state_dict_keys(self, key: str) -> str | None:
        if not key.startswith("features."):
            return None
        idx = int(key.split(".")[1])
        return key if idx <= self._ends[-1] else None


_IMAGENET_ENUMS = {
    "resnet50": "ResNet50_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet18": "ResNet18_Weights",
    "mobilenet_v2": "MobileNet_V2_Weights",
    "mobilenet_v3_large": "MobileNet_V3_Large_Weights",
    "mobilenet_v3_small": "MobileNet_V3_Small_Weights",
}


def build_encoder(name: str, norm: str = "bn") -> nn.Module:
    """Build an encoder by name with random weights (never downloads)."""
    if name.startswith("resnet"):
        return ResNetEncoder(name, norm)
    if name in _MOBILENET_STAGES:
        return MobileNetEncoder(name, norm)
    raise ValueError(
        f"unknown encoder {name!r}; choose one of resnet50, resnet34, resnet18, {', '.join(_MOBILENET_STAGES)}"
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights file {path} does not exist; pass a local .pth/.safetensors "
            "state dict, 'imagenet' (downloads, online only), or nothing for random init"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(sd).__name__})")
    return sd


def load_backbone_weights(encoder: nn.Module, source: str | Path) -> list[str]:
    """Load ImageNet-style torchvision weights into ``encoder``.

    Args:
        encoder: a :class:`ResNetEncoder` or :class:`MobileNetEncoder`.
        source: a local state-dict file of the matching torchvision model, or ``"imagenet"``
            to use torchvision's weight enum (downloads; only on explicit request).

    Returns:
        The encoder keys that were NOT filled (should be empty apart from BN counters).
    """
    if str(source) == "imagenet":
        enum = getattr(tvm, _IMAGENET_ENUMS[encoder.arch])
        sd = enum.DEFAULT.get_state_dict(progress=True)  # explicit user request: may download
    else:
        sd = read_state_dict(source)
    mapped: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        dst = encoder.torchvision_state_dict_keys(key)
        if dst is not None and not (dst.endswith("num_batches_tracked") and dst not in encoder.state_dict()):
            mapped[dst] = value
    own = encoder.state_dict()
    bad = [k for k in mapped if k not in own or own[k].shape != mapped[k].shape]
    if bad or not mapped:
        raise ValueError(
            f"weights in {source} do not fit encoder {encoder.arch}: "
            f"{len(bad)} mismatched keys (e.g. {bad[:3]}); pass the torchvision {encoder.arch} state dict"
        )
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    encoder.load_state_dict(mapped, strict=False)
    return missing
