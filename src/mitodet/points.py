"""Validation of point arrays shared by tiling and the clinical read-out."""

from __future__ import annotations

import numpy as np


def as_points(points: object, name: str) -> np.ndarray:
    """``points`` as a float64 (N, 2) array of (x, y); empty input gives (0, 2).

    Raises:
        ValueError: on another shape or non-finite coordinates (the message names ``name``).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) as (x, y), got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{name} contains non-finite coordinates")
    return pts
