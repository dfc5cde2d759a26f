"""The Global Bank (GLB) neck of RDLM (paper eqs. 1-3) on top of torchvision's FPN.

VL     = f_A( f_1(EN_1) + sum_{i>=2} up(f_i(EN_i)) )           (vault layer, eq. 1)
GAIN_i = f_GAIN_i(VL), with 3x3 stride-2 convs down to CAL_i's size  (gain layers, eq. 2)
CAL_i  = CAL_i + GAIN_i   for every FPN output level              (calibration, eq. 3)

Choice (documented deviation): the paper writes f_i(up(EN_i)); mitodet applies the 3x3
conv f_i at EN_i's own resolution and upsamples afterwards, which is 16-64x cheaper for
C4/C5 and keeps the same receptive-field role. Convolutions inside the vault path are
followed by ReLU; the last conv of each gain branch is linear so GAIN_i can be negative
and calibrate CAL_i in both directions.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from mitodet.models.encoder import LevelSpec


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    nn.init.zeros_(conv.bias)
    return conv


class GlobalBank(nn.Module):
    """Vault layer plus one gain branch per calibrated (FPN output) level.

    Args:
        in_levels: the encoder's levels EN_1..EN_s; the first has the finest stride.
        out_strides: stride of each FPN output level to calibrate (e.g. 4, 8, 16, 32, 64).
        out_channels: channels of the FPN outputs (the gains match them).
        k: filters of each projection f_i.
        m: filters (depth) of the vault layer f_A.
    """

    def __init__(
        self, in_levels: Sequence[LevelSpec], out_strides: Sequence[int], out_channels: int, k: int, m: int
    ) -> None:
        super().__init__()
        if k <= 0 or m <= 0:
            raise ValueError(f"GLB needs k > 0 and m > 0, got k={k!r}, m={m!r}")
        base = in_levels[0].stride
        for s in out_strides:
            ratio = s / base
            if ratio < 1 or not float(math.log2(ratio)).is_integer():
                raise ValueError(
                    f"GLB cannot reach output stride {s} from vault stride {base} "
                    "with stride-2 convs; output strides must be base * 2^n"
                )
        self.vault_stride = base
        self.proj = nn.ModuleList(_conv3x3(lv.channels, k) for lv in in_levels)
        self.vault = _conv3x3(k, m)
        gains = []
        for s in out_strides:
            n_down = int(math.log2(s // base))
            layers: list[nn.Module] = []
            if n_down == 0:
                layers.append(_conv3x3(m, out_channels))
            else:
                cin = m
                for j in range(n_down):
                    layers.append(_conv3x3(cin, out_channels, stride=2))
                    if j < n_down - 1:
                        layers.append(nn.ReLU(inplace=True))
                    cin = out_channels
            gains.append(nn.Sequential(*layers))
        self.gains = nn.ModuleList(gains)

    def vault_layer(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """VL of eq. 1 for encoder stage outputs ``feats`` (finest first)."""
        size = feats[0].shape[-2:]
        acc = F.relu(self.proj[0](feats[0]))
        for f, x in zip(self.proj[1:], feats[1:]):
            acc = acc + F.interpolate(F.relu(f(x)), size=size, mode="nearest")
        return F.relu(self.vault(acc))

    def forward(self, feats: Sequence[torch.Tensor], cal: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Calibrate the FPN outputs ``cal`` with gains from the vault of ``feats`` (eq. 3)."""
        vl = self.vault_layer(feats)
        out = []
        for gain, c in zip(self.gains, cal):
            g = gain(vl)
            if g.shape[-2:] != c.shape[-2:]:
                # Odd input sizes make conv/pool rounding differ by a pixel; align to CAL_i.
                g = F.interpolate(g, size=c.shape[-2:], mode="nearest")
            out.append(c + g)
        return out


class PyramidNeck(nn.Module):
    """torchvision's FPN (P2..P5 plus a max-pooled P6) with an optional GLB calibration.

    Exposes ``out_channels`` as torchvision's detection heads expect, and ``levels`` for
    the outputs ('0'..'3', 'pool'). The encoder levels are checked here, at construction.
    """

    def __init__(
        self,
        in_levels: Sequence[LevelSpec],
        out_channels: int = 256,
        glb_k: int | None = None,
        glb_m: int | None = None,
    ) -> None:
        super().__init__()
        in_levels = tuple(in_levels)
        if len(in_levels) != 4:
            raise ValueError(f"the neck expects 4 encoder levels (EN_1..EN_4), got {[lv.name for lv in in_levels]}")
        strides = [lv.stride for lv in in_levels]
        if strides != sorted(strides) or any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise ValueError(f"encoder strides must double from level to level, got {strides}")
        self.in_levels = in_levels
        self.fpn = FeaturePyramidNetwork(
            [lv.channels for lv in in_levels], out_channels, extra_blocks=LastLevelMaxPool()
        )
        out_strides = strides + [strides[-1] * 2]
        self.levels = tuple(LevelSpec(n, out_channels, s) for n, s in zip(["0", "1", "2", "3", "pool"], out_strides))
        self.out_channels = out_channels
        self.glb = None
        if glb_k is not None or glb_m is not None:
            if glb_k is None or glb_m is None:
                raise ValueError("GLB needs both k and m")
            self.glb = GlobalBank(in_levels, out_strides, out_channels, glb_k, glb_m)

    def forward(self, feats: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
        names = [lv.name for lv in self.in_levels]
        x = OrderedDict((str(i), feats[n]) for i, n in enumerate(names))
        p = self.fpn(x)
        if self.glb is None:
            return p
        cal = self.glb([feats[n] for n in names], list(p.values()))
        return OrderedDict(zip(p.keys(), cal))


class EncoderWithNeck(nn.Module):
    """Backbone for torchvision's GeneralizedRCNN: encoder then neck."""

    def __init__(self, encoder: nn.Module, neck: PyramidNeck) -> None:
        super().__init__()
        if tuple(neck.in_levels) != tuple(encoder.levels):
            raise ValueError(f"neck built for {neck.in_levels} but encoder declares {encoder.levels}")
        self.body = encoder
        self.neck = neck
        self.out_channels = neck.out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.neck(self.body(x))
