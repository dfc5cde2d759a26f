"""Model files: ``model.safetensors`` (weights) + ``config.json`` (resolved config).

Loading never unpickles anything: safetensors holds tensors only, the config is JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mitodet.checks import atomic_save
from mitodet.config import ModelConfig, model_config_from_dict, save_json, to_dict

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


def save_detector(
    model: torch.nn.Module, out_dir: str | Path, config: ModelConfig | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/config.json``.

    Args:
        model: a :class:`~mitodet.models.detector.MitosisDetector`.
        out_dir: folder (created).
        config: config to store (default ``model.config``), e.g. with a tuned threshold.
        extra: JSON-able metadata stored beside the config (training info, metrics).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or model.config
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_save(
        out / WEIGHTS_NAME,
        lambda tmp: save_file(state, tmp, metadata={"format": "mitodet", "format_version": str(FORMAT_VERSION)}),
    )
    save_json({"format_version": FORMAT_VERSION, "model": to_dict(cfg), "extra": extra or {}}, out / CONFIG_NAME)
    return out


def read_model_config(model_dir: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    path = Path(model_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a mitodet model folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); re-export the model with mitodet") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise ValueError(
            f"{path} has no 'model' settings object: it is not a mitodet model config; re-export "
            "the model with mitodet (mitodet train writes one into OUT/model)"
        )
    try:
        cfg = model_config_from_dict(doc["model"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid model settings ({exc}); re-export the model with mitodet") from None
    return cfg, doc.get("extra", {})


def load_detector(model_dir: str | Path, map_location: str = "cpu"):
    """Load a detector saved by :func:`save_detector`; returns it in eval mode.

    The backbone is built without ``weights_backbone`` (the file holds all weights), so
    loading never reads or downloads anything else.
    """
    from mitodet.models.builder import build_detector

    cfg, _ = read_model_config(model_dir)
    weights = Path(model_dir) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found beside {CONFIG_NAME}")
    model = build_detector(cfg.replace(weights_backbone=None))
    model.config = cfg
    try:
        state = load_file(str(weights), device=map_location)
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError) on a damaged file
        raise ValueError(
            f"{weights} cannot be read as safetensors ({type(exc).__name__}: {exc}); the file is "
            "damaged or incomplete: copy it again or re-export the model"
        ) from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not fit preset {cfg.preset!r}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model.eval()
