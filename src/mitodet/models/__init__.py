"""Model parts: encoder, GLB neck, focal loss, heads, the detector assembly and presets."""

from mitodet.models.builder import build_detector
from mitodet.models.io import load_detector, save_detector
from mitodet.models.presets import get_preset, list_presets

__all__ = ["build_detector", "load_detector", "save_detector", "get_preset", "list_presets"]
