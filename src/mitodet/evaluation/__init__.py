"""Evaluation of point detections: one-to-one matching within a radius, pooled P/R/F1,
threshold sweep and average precision, and the ``mitodet evaluate`` command.

Public names are imported lazily so that ``mitodet --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MatchResult": "mitodet.evaluation.matching",
    "match_points": "mitodet.evaluation.matching",
    "MATCH_MODES": "mitodet.evaluation.matching",
    "EvaluationReport": "mitodet.evaluation.metrics",
    "ImageResult": "mitodet.evaluation.metrics",
    "DomainResult": "mitodet.evaluation.metrics",
    "ThresholdSweep": "mitodet.evaluation.metrics",
    "average_precision": "mitodet.evaluation.metrics",
    "evaluate_images": "mitodet.evaluation.metrics",
    "precision_recall_f1": "mitodet.evaluation.metrics",
    "threshold_sweep": "mitodet.evaluation.metrics",
    "PointSet": "mitodet.evaluation.io",
    "load_points": "mitodet.evaluation.io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mitodet.evaluation' has no attribute {name!r}")
