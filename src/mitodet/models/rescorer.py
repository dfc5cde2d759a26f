"""The second stage: re-score each first-stage candidate on a native-resolution patch.

The RDLM detector works at 0.5 um/px, where a mitosis and a dark, compact nucleus look
alike. The second stage reads a patch around every candidate at about 0.25 um/px (the
scanner's own resolution, where chromatin texture shows) and gives the probability that
it is a mitotic figure: the two-stage design (candidates, then refinement) of the MIDOG
2022 winner. It is an addition beside the paper's detector, not a change of it.

Files: ``<model>/rescorer/model.safetensors`` + ``<model>/rescorer/config.json``
(:class:`RescorerConfig` under ``"rescorer"``), written by :func:`save_rescorer` and read by
:func:`load_rescorer`; :class:`~mitodet.inference.predictor.Detector` runs it when the
model folder has one (``second_stage=False`` / ``mitodet detect --no-second-stage`` turn
it off).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mitodet.checks import atomic_save, atomic_write_json, check_threshold
from mitodet.models.detector import IMAGENET_MEAN, IMAGENET_STD

RESCORER_DIR = "rescorer"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
COMBINES = ("second", "geometric", "product", "min")


@dataclass(frozen=True)
class RescorerConfig:
    """How the second stage reads candidates and combines its score with the first stage's.

    Attributes:
        arch: ``"mobilenet_v2"`` (torchvision, ImageNet-initialisable).
        patch_px: patch side in pixels at ``mpp``.
        mpp: micrometres per pixel of the patch.
        min_candidate_score: first-stage candidates below this are dropped before re-scoring.
        combine: ``"second"`` (the final score is the second stage's probability),
            ``"geometric"`` (the geometric mean of both stages' scores: a confident second
            stage can *raise* a candidate above the first stage's score), or the veto rules
            ``"product"`` (first x second) and ``"min"`` (the lower of the two), with which
            the second stage can only lower a candidate's score.
        temperature: the second stage's logit is divided by it before the sigmoid.
        threshold: the operating threshold of the combined score (chosen by whole-field F1).
    """

    arch: str = "mobilenet_v2"
    patch_px: int = 64
    mpp: float = 0.25
    min_candidate_score: float = 0.1
    combine: str = "second"
    temperature: float = 1.0
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.arch != "mobilenet_v2":
            raise ValueError(f"rescorer arch must be 'mobilenet_v2', got {self.arch!r}")
        if int(self.patch_px) < 16:
            raise ValueError(f"rescorer patch_px must be >= 16, got {self.patch_px!r}")
        if not 0.05 <= float(self.mpp) <= 2.0:
            raise ValueError(f"rescorer mpp must lie in [0.05, 2] um/px, got {self.mpp!r}")
        if not 0.0 <= float(self.min_candidate_score) < 1.0:
            raise ValueError(f"min_candidate_score must lie in [0, 1), got {self.min_candidate_score!r}")
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {self.combine!r}")
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        check_threshold(self.threshold)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RescorerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown rescorer settings {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **kw) -> "RescorerConfig":
        return replace(self, **kw)


class PatchClassifier(nn.Module):
    """MobileNetV2 features -> global average pool -> one logit: the patch network of the
    second stage (mitosis or not) and of the atypical classifier (atypical or normal).
    ``config`` needs a ``temperature``."""

    def __init__(self, config, weights_backbone: str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2

        self.config = config
        net = mobilenet_v2(weights=None)
        if weights_backbone is not None:
            state = torch.load(str(weights_backbone), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        self.features = net.features
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) floats in [0, 1] -> (N,) logits."""
        x = (x - self.mean) / self.std
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.head(x).squeeze(1)

    @torch.inference_mode()
    def probabilities(self, patches: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """(N, P, P, 3) uint8 patches -> (N,) float64 probabilities (temperature applied)."""
        self.eval()
        out = []
        for i in range(0, len(patches), batch_size):
            t = torch.from_numpy(np.ascontiguousarray(patches[i : i + batch_size])).permute(0, 3, 1, 2)
            t = t.to(self.mean.device).float() / 255.0
            out.append(torch.sigmoid(self(t) / float(self.config.temperature)).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


class Rescorer(PatchClassifier):
    """The second stage's patch network (:class:`PatchClassifier` with a :class:`RescorerConfig`)."""


def combine_scores(first: np.ndarray, second: np.ndarray, how: str) -> np.ndarray:
    """The final score of a candidate from both stages' scores (see :class:`RescorerConfig`)."""
    if how == "second":
        return np.asarray(second, dtype=np.float64)
    f, s = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if how == "geometric":
        return np.sqrt(f * s)
    if how == "product":
        return f * s
    if how == "min":
        return np.minimum(f, s)
    raise ValueError(f"combine must be one of {COMBINES}, got {how!r}")


def read_patches(read, shape: tuple[int, int], points: np.ndarray, side_px: float, out_px: int) -> np.ndarray:
    """Square patches of ``side_px`` image pixels centred on ``points``, resized to ``out_px``.

    Args:
        read: ``read(x0, y0, x1, y1) -> (y1-y0, x1-x0, 3) uint8`` for an in-bounds box of the image.
        shape: (H, W) of the image.
        points: (N, 2) x, y pixel centres.
        side_px: patch side in image pixels (``out_px * patch_mpp / image_mpp``).
        out_px: output side.

    Parts outside the image are black (as the padded border crops of the training data).
    """
    from PIL import Image

    h, w = shape
    side = max(1, int(round(side_px)))
    out = np.zeros((len(points), out_px, out_px, 3), dtype=np.uint8)
    for i, (x, y) in enumerate(np.asarray(points, dtype=np.float64).reshape(-1, 2)):
        x0, y0 = int(math.floor(x + 0.5 - side / 2)), int(math.floor(y + 0.5 - side / 2))
        canvas = np.zeros((side, side, 3), dtype=np.uint8)
        ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
        if ix1 > ix0 and iy1 > iy0:
            canvas[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = read(ix0, iy0, ix1, iy1)
        out[i] = (
            canvas
            if side == out_px
            else np.asarray(Image.fromarray(canvas).resize((out_px, out_px), Image.Resampling.BILINEAR))
        )
    return out


def array_reader(image: np.ndarray):
    """A ``read`` for :func:`read_patches` over an in-memory (H, W, 3) image."""
    return lambda x0, y0, x1, y1: image[y0:y1, x0:x1]


def save_patch_model(
    model: PatchClassifier, folder: Path, key: str, config, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``folder/{model.safetensors, config.json}`` (atomic per file; ``config`` under ``key``)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_save(
        folder / WEIGHTS_NAME,
        lambda tmp: save_file(state, tmp, metadata={"format": f"mitodet-{key}", "format_version": "1"}),
    )
    atomic_write_json(folder / CONFIG_NAME, {"format_version": 1, key: asdict(config), "extra": extra or {}})
    return folder


def load_patch_model(folder: Path, key: str, model_cls, config_cls, fix: str):
    """Load what :func:`save_patch_model` wrote; errors name the file and ``fix``."""
    cpath, wpath = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    try:
        doc = json.loads(cpath.read_text(encoding="utf-8"))
        cfg = config_cls.from_dict(doc[key])
    except FileNotFoundError:
        raise FileNotFoundError(f"{cpath} not found: the {key} needs {CONFIG_NAME} and {WEIGHTS_NAME}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{cpath} is not a mitodet {key} config ({exc}); {fix}") from None
    model = model_cls(cfg)
    try:
        state = load_file(str(wpath))
    except Exception as exc:  # safetensors' own error type, or OSError
        raise ValueError(f"{wpath} cannot be read as safetensors ({type(exc).__name__}: {exc}); {fix}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{wpath} does not fit the {key}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


def save_rescorer(
    model: Rescorer, model_dir: str | Path, config: RescorerConfig | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``<model_dir>/rescorer/{model.safetensors, config.json}`` (atomic per file)."""
    return save_patch_model(model, Path(model_dir) / RESCORER_DIR, "rescorer", config or model.config, extra)


def has_rescorer(model_dir: str | Path) -> bool:
    return (Path(model_dir) / RESCORER_DIR / CONFIG_NAME).is_file()


def load_rescorer(model_dir: str | Path) -> Rescorer:
    """Load ``<model_dir>/rescorer``; errors name the file and the fix."""
    return load_patch_model(
        Path(model_dir) / RESCORER_DIR,
        "rescorer",
        Rescorer,
        RescorerConfig,
        "copy it again or re-export it with `mitodet train-rescorer`, or run without the second stage "
        "(--no-second-stage)",
    )


@torch.no_grad()
def adapt_batchnorm(model: PatchClassifier, patches: np.ndarray, batch_size: int = 128) -> PatchClassifier:
    """Test-time BatchNorm re-estimation (AdaBN, Li et al. 2016): a copy of ``model`` whose
    BatchNorm statistics are those of ``patches`` ((N, P, P, 3) uint8 of the target domain),
    weights unchanged. With fewer than 2 patches the copy keeps the training statistics."""
    import copy

    adapted = copy.deepcopy(model)
    if len(patches) < 2:
        return adapted.eval()
    bns = [m for m in adapted.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over every batch
    adapted.train()
    for i in range(0, len(patches), batch_size):
        chunk = patches[i : i + batch_size]
        if len(chunk) < 2:
            continue
        adapted(torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2).float() / 255.0)
    return adapted.eval()
