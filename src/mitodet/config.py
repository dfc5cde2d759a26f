"""Configuration: one frozen dataclass tree per experiment, validated on construction.

The configs of the project in one place: :class:`ModelConfig` (the detector: presets, GLB,
focal loss), :class:`SamplerConfig` and :class:`TrainConfig` (``mitodet train``), and
:class:`DetectConfig` (``mitodet detect``, whose :meth:`~DetectConfig.run_settings` are the
resume key). The two patch stages keep theirs beside their models
(:mod:`mitodet.models.rescorer`, :mod:`mitodet.models.atypical`).

Physical quantities carry their unit in the name (``mpp`` in micrometres per pixel,
``box_size_um``, ``radius_um``). Configs round-trip through plain JSON dicts with
:func:`to_dict` / :func:`model_config_from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitodet.report.readout import DIGITAL_HPF_AREA_MM2

ENCODERS = ("resnet50", "resnet34", "resnet18", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
NORMS = ("bn", "frozen_bn", "gn")


class ConfigError(ValueError):
    """A configuration value is invalid; the message quotes the value and the fix."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class GLBConfig:
    """Global Bank neck (paper eqs. 1-3).

    Attributes:
        k: filters of each 3x3 projection f_i of an encoder stage EN_i.
        m: depth (filters) of the vault layer f_A.
    """

    k: int = 256
    m: int = 256

    def __post_init__(self) -> None:
        for name in ("k", "m"):
            v = getattr(self, name)
            _check(
                isinstance(v, int) and not isinstance(v, bool) and v > 0,
                f"glb.{name} must be a positive integer, got {v!r}; the paper uses k=256, m=256 or 512",
            )


@dataclass(frozen=True)
class FocalConfig:
    """Focal loss of eq. 7, FL = -z a (1-p)^g log p - (1-z)(1-a) p^g log(1-p).

    Attributes:
        alpha: class-balance factor in [0, 1].
        gamma: focusing exponent, >= 0 (0 gives alpha-weighted BCE).
        rpn: also use the focal loss for the RPN objectness (default: RoI classifier only).
        prior: initial foreground probability used to set the classifier bias.
    """

    alpha: float = 0.5
    gamma: float = 0.5
    rpn: bool = False
    prior: float = 0.01

    def __post_init__(self) -> None:
        _check(
            isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and 0.0 <= self.alpha <= 1.0,
            f"focal.alpha must lie in [0, 1], got {self.alpha!r}; the paper uses 0.5",
        )
        _check(
            isinstance(self.gamma, (int, float)) and math.isfinite(self.gamma) and self.gamma >= 0.0,
            f"focal.gamma must be >= 0, got {self.gamma!r}; the paper uses 0.5",
        )
        _check(0.0 < self.prior < 1.0, f"focal.prior must lie in (0, 1), got {self.prior!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a detector and run it at the right physical scale.

    Attributes:
        preset: name of the preset this config came from (informational).
        encoder: backbone name, one of ``ENCODERS``.
        norm: normalisation in the encoder: ``bn`` (trainable BatchNorm, the choice when
            training from scratch), ``frozen_bn`` (torchvision's choice with ImageNet
            weights), or ``gn`` (GroupNorm; ResNets only).
        weights_backbone: ``None`` (random init, the default), a path to a local state-dict
            file (.pth/.pt via ``torch.load(weights_only=True)`` or .safetensors), or
            ``"imagenet"`` for torchvision's ImageNet enum, which downloads and so is only
            done when a user asks for it explicitly.
        fpn_channels: channels of every FPN output level.
        glb: Global Bank settings, or ``None`` for the plain FPN.
        focal: focal-loss settings, or ``None`` for the stock cross-entropy losses.
        mpp: working resolution in micrometres per pixel; every input is resampled to it.
        box_size_um: side of the square training box drawn around each point label.
        anchor_sizes: one anchor side (pixels at ``mpp``) per FPN level incl. the pooled one.
        aspect_ratios: anchor aspect ratios (boxes are square, so (1.0,) suffices for
            light presets; the paper presets keep torchvision's (0.5, 1, 2)).
        rpn_*: torchvision RPN proposal counts and sampling.
        box_*: RoI head sampling / head width / detections per image.
        score_threshold: the operating threshold for detections (chosen on validation by
            the training engine and stored with the model).
    """

    preset: str = "custom"
    encoder: str = "resnet50"
    norm: str = "bn"
    weights_backbone: str | None = None
    fpn_channels: int = 256
    glb: GLBConfig | None = None
    focal: FocalConfig | None = None
    mpp: float = 0.425
    box_size_um: float = 12.5
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    box_head_dim: int = 1024
    box_detections_per_img: int = 100
    box_nms_thresh: float = 0.3
    score_threshold: float = 0.5
    notes: str = ""

    def __post_init__(self) -> None:
        _check(self.encoder in ENCODERS, f"encoder {self.encoder!r} is unknown; choose one of {', '.join(ENCODERS)}")
        _check(self.norm in NORMS, f"norm {self.norm!r} is unknown; choose one of {', '.join(NORMS)}")
        _check(
            not (self.norm == "gn" and self.encoder.startswith("mobilenet")),
            f"norm 'gn' is supported for ResNet encoders only, not {self.encoder!r}; use 'bn' or 'frozen_bn'",
        )
        _check(
            isinstance(self.mpp, (int, float)) and math.isfinite(self.mpp) and self.mpp > 0,
            f"mpp must be > 0 micrometres per pixel, got {self.mpp!r}; typical x40 scans are 0.23-0.26",
        )
        _check(self.box_size_um > 0, f"box_size_um must be > 0, got {self.box_size_um!r}")
        _check(self.fpn_channels > 0, f"fpn_channels must be > 0, got {self.fpn_channels!r}")
        _check(
            len(self.anchor_sizes) == 5,
            f"anchor_sizes needs 5 entries (P2..P5 and the pooled level), got {self.anchor_sizes!r}",
        )
        _check(all(a > 0 for a in self.anchor_sizes), f"anchor_sizes must be positive, got {self.anchor_sizes!r}")
        _check(
            len(self.aspect_ratios) > 0 and all(r > 0 for r in self.aspect_ratios),
            f"aspect_ratios must be positive, got {self.aspect_ratios!r}",
        )
        _check(0.0 <= self.score_threshold <= 1.0, f"score_threshold must lie in [0, 1], got {self.score_threshold!r}")
        _check(0.0 < self.box_nms_thresh <= 1.0, f"box_nms_thresh must lie in (0, 1], got {self.box_nms_thresh!r}")
        for name in (
            "rpn_pre_nms_top_n_train",
            "rpn_pre_nms_top_n_test",
            "rpn_post_nms_top_n_train",
            "rpn_post_nms_top_n_test",
            "rpn_batch_size_per_image",
            "box_batch_size_per_image",
            "box_head_dim",
            "box_detections_per_img",
        ):
            v = getattr(self, name)
            _check(isinstance(v, int) and v > 0, f"{name} must be a positive integer, got {v!r}")

    @property
    def box_size_px(self) -> float:
        """Training box side in pixels at the working resolution."""
        return self.box_size_um / self.mpp

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


#: how tissue is found: ``auto`` (whole-slide images only), ``on``, ``off``
TISSUE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class DetectConfig:
    """How ``mitodet detect`` (and :func:`~mitodet.inference.pipeline.detect_files`, local or on
    Ray) treats every file of a batch; checked on construction, before any model loads.

    The fields that change an output, with the model's fingerprint and tiling, are the run key
    (:meth:`run_settings`): a rerun with equal settings skips the files it finished.

    Attributes:
        mpp: micrometres per pixel for every input, overriding file metadata; None reads it
            from each file (a file without one fails with a message saying to pass --mpp).
        threshold: score threshold (None: the model's operating threshold; 0: every candidate).
        gt: ground-truth points (any format ``mitodet evaluate`` reads); images pair by file
            stem (a single image with a single GT entry pair anyway).
        field_area_mm2: HPF area for the per-10-HPF count, hotspot and Nottingham score.
        tissue: one of :data:`TISSUE_MODES`.
        heatmap: write the GLB heat-map for HPF images (a second pass of the neck).
        overlay: write the overlay picture (a JPEG, a downsampled thumbnail for slides).
        radius_um: matching radius against ``gt`` (um); None: by the ground truth's format
            (7.5 um for MIDOG files, as ``mitodet evaluate`` scores them, else 8 um).
        reader: ``"auto"``, ``"openslide"`` or ``"tifffile"`` for slides.
        allow_coarse: run an image whose pixel size is more than twice the model's working
            one (mitoses unresolved); by default such a file fails before any tile runs.
        recursive: look into sub-folders of folder inputs.
        overwrite: process inputs even when complete outputs from the same settings exist.
        progress: tqdm bars over files and tiles (shown on terminals only).
    """

    mpp: float | None = None
    threshold: float | None = None
    gt: str | None = None
    field_area_mm2: float = DIGITAL_HPF_AREA_MM2
    tissue: str = "auto"
    heatmap: bool = False
    overlay: bool = True
    radius_um: float | None = None
    reader: str = "auto"
    allow_coarse: bool = False
    recursive: bool = False
    overwrite: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        from mitodet.checks import check_mpp, check_threshold

        if self.tissue not in TISSUE_MODES:
            raise ConfigError(f"tissue must be one of {TISSUE_MODES}, got {self.tissue!r}")
        check_threshold(self.threshold)
        if self.mpp is not None:
            check_mpp(self.mpp, "--mpp")
        r = self.radius_um
        if r is not None and not (isinstance(r, numbers.Real) and math.isfinite(r) and r > 0):
            raise ConfigError(f"radius_um must be a positive number of micrometres, got {r!r}")
        a = self.field_area_mm2
        if not (isinstance(a, numbers.Real) and math.isfinite(a) and a > 0):
            raise ConfigError(f"field_area_mm2 must be a positive area in mm^2, got {a!r}")
        for name in ("field_area_mm2", "radius_um", "threshold"):  # (mpp as given: it is part of the run key)
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, float(v))
        for name in ("heatmap", "overlay", "allow_coarse", "recursive", "overwrite", "progress"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.gt is not None:
            object.__setattr__(self, "gt", str(self.gt))

    def replace(self, **changes: Any) -> "DetectConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, config: "DetectConfig | None" = None, **options: Any) -> "DetectConfig":
        """``config`` (default: the defaults) with ``options`` over it: what ``detect_files`` takes."""
        base = config if config is not None else cls()
        return base.replace(**options) if options else base

    def run_settings(self, detector) -> dict[str, Any]:
        """What the run key of each file is made of: this config's output-changing fields, the
        model's fingerprint and how it tiles (the ground truth by its file's identity)."""
        from mitodet.inference.resume import file_identity, model_fingerprint

        return {
            "model": model_fingerprint(detector),
            "threshold": detector.threshold if self.threshold is None else self.threshold,
            "mpp": self.mpp,
            "tissue": self.tissue,
            "heatmap": self.heatmap,
            "overlay": self.overlay,
            "reader": self.reader,
            "field_area_mm2": self.field_area_mm2,
            "radius_um": self.radius_um,
            "tile_px": detector.tile_px,
            "overlap_px": detector.overlap_px,
            "flip_tta": detector.flip_tta,
            "backend": getattr(detector, "backend", "torch"),
            "device": getattr(detector, "device", "cpu"),
            "gt": None if self.gt is None else file_identity(Path(self.gt)),
        }


@dataclass(frozen=True)
class SamplerConfig:
    """How training crops are made (sizes in pixels at the working resolution).

    Attributes:
        crop_px: side of every training crop.
        pieces: (min, max) number of pasted pieces per crop.
        piece_px: (min, max) side of a pasted piece.
        p_positive / p_hard_negative: probability that a piece is centred on a labelled
            mitosis / hard negative (else a random window of a random patch).
        feather_px: width of the soft edge of a pasted piece.
        edge_margin_px: a label whose centre lies closer than this to a piece's cut edge is
            dropped (the object is cut in half), and so is the image content's claim to it.
        scale_jitter: relative scale jitter (0.1 = +-10%).
        hed_sigma / hed_bias: HED stain jitter strengths.
        p_blur: probability of a Gaussian blur (radius 0.5-1.2 px).
        p_mosaic_background: probability that the canvas starts as a random-phase mosaic of
            small patches even when large images exist (so pieces and background come from
            the same sources as often as not, and a piece edge is no cue).
        piece_hed_sigma: extra HED jitter per pasted piece, so a piece's colour does not
            tell it apart from the background systematically.
        augment: False gives unaugmented (still mosaicked) crops for validation.
    """

    crop_px: int = 112
    pieces: tuple[int, int] = (1, 4)
    piece_px: tuple[int, int] = (24, 64)
    p_positive: float = 0.5
    p_hard_negative: float = 0.25
    feather_px: int = 3
    edge_margin_px: float = 4.0
    scale_jitter: float = 0.1
    hed_sigma: float = 0.05
    hed_bias: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    p_blur: float = 0.2
    p_mosaic_background: float = 0.5
    piece_hed_sigma: float = 0.03
    augment: bool = True

    def __post_init__(self) -> None:
        if self.crop_px < 32:
            raise ValueError(f"crop_px must be >= 32, got {self.crop_px!r}")
        if not (1 <= self.piece_px[0] <= self.piece_px[1]):
            raise ValueError(f"piece_px must be (min, max) with 1 <= min <= max, got {self.piece_px!r}")
        if not (0 <= self.pieces[0] <= self.pieces[1]):
            raise ValueError(f"pieces must be (min, max) with 0 <= min <= max, got {self.pieces!r}")
        if not 0 <= self.p_positive + self.p_hard_negative <= 1:
            raise ValueError("p_positive + p_hard_negative must lie in [0, 1]")


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe. Defaults are the paper's (SPEC.md, 'Training recipe')."""

    preset: str = "rdlm"
    model_overrides: dict = field(default_factory=dict)
    #: fine-tuning: a model folder (``"default"``: the bundled one) whose config and weights
    #: the detector starts from, instead of ``preset`` with ImageNet / random initialisation
    init_from: str = ""
    iterations: int = 20000
    batch_size: int = 2
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    lr_decay_at: tuple[float, ...] = ()
    grad_clip: float = 10.0
    val_every: int = 1000
    val_crops: int = 256
    checkpoint_every: int = 200
    log_every: int = 10
    radius_um: float = 8.0
    seed: int = 0
    threads: int = 0
    #: also save the model at every validation (``<out>/snapshots/it<N>``), so that a later,
    #: slower criterion (``mitodet validate``'s whole-field F1) can pick the checkpoint
    snapshots: bool = False
    #: leave-one-lab-out: lab groups (:func:`mitodet.evaluation.wholefield.lab_group`, e.g.
    #: ``"tupac16"``) dropped from training and validation after the slide split, so that the
    #: other labs keep the split of a run that used every lab
    exclude_labs: tuple[str, ...] = ()
    #: hard-negative mining: a file of the first stage's candidates on the training images
    #: (``candidates.npz`` of ``mitodet train-rescorer``, or ``mine_candidates``); on every
    #: label-complete training image its ``mined_per_image`` best candidates scoring at least
    #: ``mined_min_score`` and farther than ``radius_um`` from every labelled object join the
    #: look-alikes the sampler centres pieces on (``sampler.p_hard_negative``)
    mined_negatives: str = ""
    mined_min_score: float = 0.5
    mined_per_image: int = 8
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "val_every", "val_crops", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.mined_min_score <= 1 or self.mined_per_image < 0:
            raise ValueError(
                f"mined_min_score must lie in [0, 1] and mined_per_image be >= 0, got "
                f"{self.mined_min_score!r}, {self.mined_per_image!r}"
            )
        if any(not 0 < f < 1 for f in self.lr_decay_at):
            raise ValueError(f"lr_decay_at are fractions of the run in (0, 1), got {self.lr_decay_at!r}")


def train_config_from_dict(d: dict[str, Any]) -> TrainConfig:
    if not isinstance(d, dict):
        raise ValueError(f"the train config must be a JSON object of settings, got {d!r}")
    d = dict(d)
    if not isinstance(d.get("model_overrides", {}), dict):
        raise ValueError(f"model_overrides must be a JSON object of model settings, got {d['model_overrides']!r}")
    if "sampler" in d and not isinstance(d["sampler"], SamplerConfig):
        s = dict(d["sampler"]) if isinstance(d["sampler"], dict) else d["sampler"]
        for k in ("pieces", "piece_px"):
            if isinstance(s, dict) and k in s:
                s[k] = _as_tuple(s[k], f"sampler.{k}")
        d["sampler"] = from_dict(SamplerConfig, s, "sampler")
    for k in ("lr_decay_at", "exclude_labs"):
        if k in d:
            d[k] = _as_tuple(d[k], k)
    return from_dict(TrainConfig, d, "train config")


def _as_tuple(value: Any, what: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{what} must be a list, got {value!r}")
    return tuple(value)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type, d: Any, what: str) -> Any:
    """``cls(**d)`` for a config dataclass, or a :class:`ConfigError` naming ``what`` and the known keys."""
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be a JSON object of settings, got {d!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; known keys: {sorted(known)}")
    try:
        return cls(**d)
    except TypeError as exc:  # a value of the wrong type, e.g. a string where a number goes
        raise ConfigError(f"invalid {what}: {exc}; check the types of its values ({d})") from None


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Rebuild a :class:`ModelConfig` from :func:`to_dict` output; unknown keys are an error."""
    d = dict(d)
    if d.get("glb") is not None:
        d["glb"] = from_dict(GLBConfig, d["glb"], "glb")
    if d.get("focal") is not None:
        d["focal"] = from_dict(FocalConfig, d["focal"], "focal")
    for key in ("anchor_sizes", "aspect_ratios"):
        if key in d:
            d[key] = tuple(d[key])
    return from_dict(ModelConfig, d, "model config")


def save_json(obj: dict[str, Any], path: str | Path) -> None:
    """Write JSON atomically (a temp file renamed into place) so no half-written file is left."""
    from mitodet.checks import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


__all__ = [
    "ConfigError",
    "GLBConfig",
    "FocalConfig",
    "ModelConfig",
    "DetectConfig",
    "SamplerConfig",
    "TrainConfig",
    "train_config_from_dict",
    "TISSUE_MODES",
    "to_dict",
    "from_dict",
    "model_config_from_dict",
    "save_json",
    "ENCODERS",
    "NORMS",
    "field",
]
