"""Atypical or normal: a patch classifier for every detected mitosis.

Atypical mitotic figures (AMF) are an independent prognostic marker in breast cancer. This
stage reads a patch around each detection at about 0.25 um/px and gives the probability that
it is atypical; a detection is called atypical when that probability reaches the config's
threshold. It is the same patch network as the second stage
(:class:`~mitodet.models.rescorer.PatchClassifier`: MobileNetV2, one logit), trained by
``mitodet train-atypical`` (:mod:`mitodet.engine.atypical_train`) on AMi-Br.

Files: ``<model>/atypical/model.safetensors`` + ``<model>/atypical/config.json``
(:class:`AtypicalConfig` under ``"atypical"``). :class:`~mitodet.inference.predictor.Detector`
runs it when the model folder has one (``atypical=False`` / ``mitodet detect --no-atypical``
turn it off).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mitodet.checks import check_threshold
from mitodet.models.rescorer import CONFIG_NAME, PatchClassifier, adapt_batchnorm, load_patch_model, save_patch_model

ATYPICAL_DIR = "atypical"
ATYPICAL_CLASS = "Atypical mitotic figure"

#: test-time augmentations (:attr:`AtypicalConfig.tta`)
TTA_MODES = ("none", "flip", "d4")


def tta_views(patches: np.ndarray, mode: str) -> list[np.ndarray]:
    """The (N, P, P, 3) patches as the ``mode`` test-time augmentation sees them."""
    if mode == "none":
        return [patches]
    flips = [patches, patches[:, :, ::-1]]
    if mode == "flip":
        return flips
    return [np.rot90(f, k, axes=(1, 2)) for f in flips for k in range(4)]


@dataclass(frozen=True)
class AtypicalConfig:
    """How the atypical classifier reads a detection and calls it.

    Attributes:
        arch: ``"mobilenet_v2"``.
        patch_px: patch side in pixels at ``mpp`` (the AMi-Br crops: 128 px at 0.25 um/px).
        input_px: the centre ``input_px`` square the network sees (training crops it at random).
        mpp: micrometres per pixel of the patch.
        temperature: the logit is divided by it before the sigmoid.
        threshold: probability at and above which a mitosis is called atypical.
        members: how many networks average their probabilities (the fold models of the
            benchmark, :class:`AtypicalEnsemble`); 1: one network.
        tta: test-time augmentation, the probability averaged over ``"none"`` (the patch
            as read), ``"flip"`` (and its mirror image) or ``"d4"`` (its 8 rotations and
            mirror images: a mitosis has no up or left; training sees all 8).
    """

    arch: str = "mobilenet_v2"
    patch_px: int = 128
    input_px: int = 112
    mpp: float = 0.25
    temperature: float = 1.0
    threshold: float = 0.5
    members: int = 1
    tta: str = "none"

    #: settings added after the first shipped model: left out of the model fingerprint at these values
    FINGERPRINT_DEFAULTS: ClassVar[dict[str, Any]] = {"tta": "none"}

    def __post_init__(self) -> None:
        if self.tta not in TTA_MODES:
            raise ValueError(f"atypical tta must be one of {TTA_MODES}, got {self.tta!r}")
        if int(self.members) < 1:
            raise ValueError(f"atypical members must be >= 1, got {self.members!r}")
        if self.arch != "mobilenet_v2":
            raise ValueError(f"atypical arch must be 'mobilenet_v2', got {self.arch!r}")
        if not 16 <= int(self.input_px) <= int(self.patch_px):
            raise ValueError(f"atypical input_px must lie in [16, patch_px={self.patch_px}], got {self.input_px!r}")
        if not 0.05 <= float(self.mpp) <= 2.0:
            raise ValueError(f"atypical mpp must lie in [0.05, 2] um/px, got {self.mpp!r}")
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        check_threshold(self.threshold)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AtypicalConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown atypical settings {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **kw) -> "AtypicalConfig":
        return replace(self, **kw)


class AtypicalClassifier(PatchClassifier):
    """P(atypical) of a mitosis from its patch (the centre ``input_px`` of a ``patch_px`` patch)."""

    def probabilities(self, patches, batch_size: int = 128):  # type: ignore[override]
        m = (patches.shape[1] - int(self.config.input_px)) // 2
        centre = patches[:, m : m + int(self.config.input_px), m : m + int(self.config.input_px)]
        views = tta_views(centre, self.config.tta)
        return np.mean([super(AtypicalClassifier, self).probabilities(v, batch_size) for v in views], axis=0)


def adapt_atypical(model: AtypicalClassifier, patches: np.ndarray) -> AtypicalClassifier:
    """AdaBN for the atypical classifier: a copy of ``model`` whose BatchNorm statistics are
    those of ``patches`` (the same ``patch_px`` patches :meth:`~AtypicalClassifier.probabilities`
    takes; their centre ``input_px`` is what the network sees). Transductive: it needs a set
    of unlabelled patches of the target domain, so it is a benchmark row, not a shipped setting."""
    m = (patches.shape[1] - int(model.config.input_px)) // 2
    return adapt_batchnorm(model, patches[:, m : m + int(model.config.input_px), m : m + int(model.config.input_px)])


class AtypicalEnsemble(torch.nn.Module):
    """``config.members`` classifiers whose probabilities are averaged."""

    def __init__(self, config: AtypicalConfig) -> None:
        super().__init__()
        self.config = config
        one = config.replace(members=1)
        self.members = torch.nn.ModuleList(AtypicalClassifier(one) for _ in range(int(config.members)))

    def probabilities(self, patches, batch_size: int = 128):
        return np.mean([m.probabilities(patches, batch_size) for m in self.members], axis=0)


def _build(config: AtypicalConfig):
    return AtypicalEnsemble(config) if int(config.members) > 1 else AtypicalClassifier(config)


def save_atypical(
    model: AtypicalClassifier | AtypicalEnsemble, model_dir: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``<model_dir>/atypical/{model.safetensors, config.json}`` (atomic per file)."""
    return save_patch_model(model, Path(model_dir) / ATYPICAL_DIR, "atypical", model.config, extra)


def has_atypical(model_dir: str | Path) -> bool:
    return (Path(model_dir) / ATYPICAL_DIR / CONFIG_NAME).is_file()


def load_atypical(model_dir: str | Path) -> AtypicalClassifier | AtypicalEnsemble:
    """Load ``<model_dir>/atypical``; errors name the file and the fix."""
    return load_patch_model(
        Path(model_dir) / ATYPICAL_DIR,
        "atypical",
        _build,
        AtypicalConfig,
        "copy it again or retrain it with `mitodet train-atypical`, or run without it (--no-atypical)",
    )
