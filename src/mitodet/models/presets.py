"""Preset registry: the 11 rows of the paper's Table 1, by name, plus CPU-light twins.

Paper presets (SPEC.md, Table 1): ResNet-50 + FPN (256 channels), torchvision's Faster
R-CNN defaults, working resolution 0.425 um/px (the paper resizes 1040 px crops of
0.2455 um/px frames to 600 px: 0.2455 * 1040 / 600 = 0.4255 um/px).

CPU twins (``<name>-cpu``): the same GLB and focal-loss settings scaled down so two CPU cores
can train them: MobileNetV2 encoder, 64-channel FPN and GLB (k = m = 64), square anchors
only, fewer proposals, a 256-wide box head, working resolution 0.5 um/px. ``rdlm-cpu`` is
the shipped default's architecture.
"""

from __future__ import annotations

from typing import Callable

from mitodet.config import ConfigError, FocalConfig, GLBConfig, ModelConfig

_REGISTRY: dict[str, Callable[[], ModelConfig]] = {}
PAPER_PRESETS: tuple[str, ...] = ()


def register_preset(name: str, factory: Callable[[], ModelConfig]) -> None:
    """Register a preset factory; duplicate names are refused."""
    if name in _REGISTRY:
        raise ConfigError(f"preset {name!r} is already registered")
    _REGISTRY[name] = factory


def get_preset(name: str) -> ModelConfig:
    """The config of preset ``name``; unknown names raise :class:`ConfigError` listing the known ones."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]()


def list_presets() -> list[str]:
    return list(_REGISTRY)


def _paper(name: str, glb: GLBConfig | None, focal: FocalConfig | None) -> ModelConfig:
    return ModelConfig(preset=name, encoder="resnet50", fpn_channels=256, glb=glb, focal=focal, mpp=0.425)


def cpu_variant(cfg: ModelConfig, name: str) -> ModelConfig:
    """The CPU-light twin of a paper preset (same GLB on/off and focal settings)."""
    glb = GLBConfig(k=64, m=2 * 64 if cfg.glb and cfg.glb.m > cfg.glb.k else 64) if cfg.glb else None
    return cfg.replace(
        preset=name,
        encoder="mobilenet_v2",
        fpn_channels=64,
        glb=glb,
        mpp=0.5,
        anchor_sizes=(16, 32, 64, 128, 256),
        aspect_ratios=(1.0,),
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=600,
        rpn_post_nms_top_n_test=150,
        rpn_batch_size_per_image=128,
        box_batch_size_per_image=128,
        box_head_dim=256,
        notes="CPU-light twin: MobileNetV2, 64-ch FPN/GLB, 0.5 um/px",
    )


_TABLE1 = {
    "fpn": (None, None),
    "fpn-fl-g0": (None, (0.5, 0.0)),
    "fpn-fl": (None, (0.5, 0.5)),
    "fpn-fl-g1": (None, (0.5, 1.0)),
    "fpn-fl-g2": (None, (0.5, 2.0)),
    "glb-fpn": ((256, 256), None),
    "glb-fpn-m512": ((256, 512), None),
    "rdlm-g0": ((256, 256), (0.5, 0.0)),
    "rdlm": ((256, 256), (0.5, 0.5)),
    "rdlm-g1": ((256, 256), (0.5, 1.0)),
    "rdlm-g2": ((256, 256), (0.5, 2.0)),
}

# Paper Table 1 (MITOS-ATYPIA-14 Aperio, 8 um): precision, recall, F1.
PAPER_RESULTS = {
    "fpn": (0.578, 0.599, 0.589),
    "fpn-fl-g0": (0.586, 0.613, 0.595),
    "fpn-fl": (0.614, 0.645, 0.629),
    "fpn-fl-g1": (0.563, 0.584, 0.573),
    "fpn-fl-g2": (0.496, 0.647, 0.561),
    "glb-fpn": (0.614, 0.675, 0.643),
    "glb-fpn-m512": (0.647, 0.685, 0.662),
    "rdlm-g0": (0.623, 0.654, 0.638),
    "rdlm": (0.685, 0.700, 0.692),
    "rdlm-g1": (0.591, 0.640, 0.614),
    "rdlm-g2": (0.546, 0.674, 0.602),
}


def _make(name: str, glb, focal) -> Callable[[], ModelConfig]:
    def factory() -> ModelConfig:
        return _paper(name, GLBConfig(*glb) if glb else None, FocalConfig(*focal) if focal else None)

    return factory


for _name, (_glb, _focal) in _TABLE1.items():
    register_preset(_name, _make(_name, _glb, _focal))
PAPER_PRESETS = tuple(_TABLE1)

CPU_PRESETS = ("fpn-cpu", "fpn-fl-cpu", "glb-fpn-cpu", "rdlm-cpu")
for _name in CPU_PRESETS:
    _base = _name.removesuffix("-cpu")
    register_preset(_name, (lambda b=_base, n=_name: cpu_variant(get_preset(b), n)))


def describe(cfg: ModelConfig) -> str:
    """The settings that distinguish a preset, on one line."""
    glb = f"GLB k={cfg.glb.k} m={cfg.glb.m}" if cfg.glb else "no GLB"
    if cfg.focal:
        focal = f"focal a={cfg.focal.alpha:g} g={cfg.focal.gamma:g}" + (" (+RPN)" if cfg.focal.rpn else "")
    else:
        focal = "cross-entropy"
    return f"{cfg.encoder}, FPN {cfg.fpn_channels}, {glb}, {focal}, {cfg.mpp:g} um/px"
