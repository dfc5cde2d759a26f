"""mitodet: mitotic-figure detection in H&E histology (RDLM: GLB-FPN Faster R-CNN + focal loss).

``from mitodet import Detector`` gives the detector API (:mod:`mitodet.inference.predictor`);
it is imported lazily, so ``import mitodet`` (and ``mitodet --help``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Detector": "mitodet.inference.predictor",
    "Detections": "mitodet.inference.predictor",
    "detect_files": "mitodet.inference.pipeline",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mitodet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
