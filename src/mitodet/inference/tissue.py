"""Tissue detection on a low-resolution thumbnail, so slide background is skipped.

Method (:func:`detect_tissue`), on an RGB thumbnail of the whole slide:

1. **Saturation** ``S = (max(R, G, B) - min(R, G, B)) / max(R, G, B)`` per pixel. Glass and
   empty (white or grey) background is unsaturated; eosin and haematoxylin are not.
2. **Otsu's threshold** on ``S`` (numpy histogram, 256 bins) over the non-black pixels,
   clamped to ``[0.04, 0.15]``: the lower bound keeps JPEG noise on glass out on a slide
   with little tissue, the upper bound keeps pale (weakly stained) tissue in when the
   slide is nearly all tissue and Otsu would split stained tissue in two.
   ``tissue = S >= t`` and ``max(R, G, B) >= 30`` (black scan borders / out-of-scan fill are
   not tissue).
3. **Clean-up** with ``scipy.ndimage``: a binary closing (radius ~16 um) joins fragmented
   stroma, holes smaller than ``min_hole_um2`` (default 0.01 mm^2) are filled, and connected
   objects smaller than ``min_object_um2`` (default 0.005 mm^2, about 70 um x 70 um: dust,
   debris, isolated specks) are removed.

The mask covers the whole level-0 image; :class:`TissueMask` converts between level-0
pixel boxes and mask cells. Tiles whose read box holds less than
:data:`MIN_TILE_TISSUE_FRACTION` (1 %) tissue are skipped, and detections are kept only
where the mask, dilated by :data:`KEEP_MARGIN_UM` (16 um, about one cell diameter), is
tissue, so the count and the tissue area refer to the same region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_TILE_TISSUE_FRACTION = 0.01
"""Tiles whose read box has less tissue than this fraction are not run through the network."""

KEEP_MARGIN_UM = 16.0
"""Detections within this distance of the tissue mask are kept (the mask is coarse)."""

OTSU_CLAMP = (0.04, 0.15)
"""The saturation threshold is Otsu's, clamped to this range."""

SUMMARY_CELL_UM = 8.0
"""Cell size of the tissue mask handed to the read-out (hotspot search), at least."""


def otsu_threshold(values: np.ndarray, bins: int = 256, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Otsu's threshold of ``values`` (maximises the between-class variance of a histogram).

    Returns the upper edge of the best lower class (the middle of the first run of equally
    good thresholds, e.g. of an empty gap between two modes); ``value_range[0]`` for empty or
    constant input.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return float(value_range[0])
    hist, edges = np.histogram(v, bins=bins, range=value_range)
    p = hist.astype(np.float64) / max(1, hist.sum())
    omega = np.cumsum(p)
    centres = (edges[:-1] + edges[1:]) / 2
    mu = np.cumsum(p * centres)
    mu_t = mu[-1]
    denom = omega * (1.0 - omega)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_b = np.where(denom > 0, (mu_t * omega - mu) ** 2 / denom, 0.0)
    if not np.any(sigma_b > 0):
        return float(value_range[0])
    # a gap between two modes is a plateau of equal variance: take its middle
    best = np.flatnonzero(sigma_b >= sigma_b.max() * (1.0 - 1e-9))
    breaks = np.flatnonzero(np.diff(best) != 1)
    run = best[: breaks[0] + 1] if len(breaks) else best
    return float((edges[run[0] + 1] + edges[run[-1] + 1]) / 2)


@dataclass(frozen=True, eq=False)
class TissueMask:
    """A boolean tissue mask covering the whole level-0 image.

    Attributes:
        mask: ``(h, w)`` bool, True on tissue.
        image_shape: ``(H, W)`` of level 0 in pixels.
        threshold: the saturation threshold used (None for a given mask).
        method: one line saying how the mask was made.
    """

    mask: np.ndarray
    image_shape: tuple[int, int]
    threshold: float | None = None
    method: str = ""

    @property
    def cell(self) -> tuple[float, float]:
        """Level-0 pixels per mask cell ``(cx, cy)``."""
        h, w = self.mask.shape
        return self.image_shape[1] / w, self.image_shape[0] / h

    def fraction(self, box: tuple[float, float, float, float]) -> float:
        """Tissue fraction of a level-0 box ``(x0, y0, x1, y1)`` (cells it touches)."""
        cx, cy = self.cell
        h, w = self.mask.shape
        x0, y0, x1, y1 = box
        c0, r0 = max(0, int(math.floor(x0 / cx))), max(0, int(math.floor(y0 / cy)))
        c1, r1 = min(w, int(math.ceil(x1 / cx))), min(h, int(math.ceil(y1 / cy)))
        if c1 <= c0 or r1 <= r0:
            return 0.0
        return float(self.mask[r0:r1, c0:c1].mean())

    def contains(self, points: np.ndarray, margin_px: float = 0.0) -> np.ndarray:
        """Which ``(N, 2)`` level-0 (x, y) points lie on tissue, the mask dilated by ``margin_px``."""
        from scipy import ndimage

        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            return np.zeros(0, dtype=bool)
        cx, cy = self.cell
        m = self.mask
        it = int(math.ceil(margin_px / min(cx, cy))) if margin_px > 0 else 0
        if it > 0:
            m = ndimage.binary_dilation(m, structure=_disk(1), iterations=it)
        h, w = m.shape
        c = np.clip(np.floor((pts[:, 0] + 0.5) / cx).astype(np.int64), 0, w - 1)
        r = np.clip(np.floor((pts[:, 1] + 0.5) / cy).astype(np.int64), 0, h - 1)
        return m[r, c]

    def area_mm2(self, mpp: float) -> float:
        cx, cy = self.cell
        return float(self.mask.sum()) * cx * cy * mpp * mpp / 1e6

    def resized(self, max_side: int, min_cell_px: float = 1.0) -> "TissueMask":
        """The mask on a coarser grid (long side <= ``max_side`` cells, cells >= ``min_cell_px``
        level-0 px); a coarse cell is tissue when at least half of it is."""
        from PIL import Image

        h, w = self.mask.shape
        H, W = self.image_shape
        f = max(1.0, max(h, w) / float(max_side), min_cell_px / min(self.cell))
        nh, nw = max(1, round(h / f)), max(1, round(w / f))
        if (nh, nw) == (h, w):
            return self
        frac = np.asarray(Image.fromarray(self.mask.astype(np.float32)).resize((nw, nh), Image.Resampling.BOX))
        return TissueMask(frac >= 0.5, (H, W), self.threshold, self.method)

    def to_dict(self, mpp: float) -> dict[str, Any]:
        cx, cy = self.cell
        return {
            "method": self.method,
            "saturation_threshold": self.threshold,
            "mask_shape": list(self.mask.shape),
            "cell_um": [cx * mpp, cy * mpp],
            "tissue_fraction": float(self.mask.mean()),
            "tissue_area_mm2": self.area_mm2(mpp),
        }


def _disk(radius: int) -> np.ndarray:
    r = max(0, int(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= r * r + r  # a rounder small disk than the strict <= r^2


def _remove_small(mask: np.ndarray, min_cells: int) -> np.ndarray:
    from scipy import ndimage

    if min_cells <= 1 or not mask.any():
        return mask
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_cells
    keep[0] = False
    return keep[labels]


def detect_tissue(
    thumb: np.ndarray,
    thumb_mpp: float,
    image_shape: tuple[int, int],
    *,
    min_object_um2: float = 5000.0,
    min_hole_um2: float = 10000.0,
    closing_um: float = 16.0,
) -> TissueMask:
    """Tissue mask of an RGB thumbnail (see the module docstring for the method).

    Args:
        thumb: ``(h, w, 3)`` uint8 RGB thumbnail of the whole image.
        thumb_mpp: micrometres per thumbnail pixel.
        image_shape: ``(H, W)`` of level 0 (the mask covers it).
        min_object_um2: tissue objects smaller than this are removed.
        min_hole_um2: holes smaller than this are filled.
        closing_um: radius of the binary closing.

    Returns:
        A :class:`TissueMask` at the thumbnail's resolution.
    """
    from scipy import ndimage

    rgb = np.asarray(thumb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"thumb must be (h, w, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    mx = rgb.max(axis=2).astype(np.float32)
    mn = rgb.min(axis=2).astype(np.float32)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1.0), 0.0)
    not_black = mx >= 30
    lo, hi = OTSU_CLAMP
    t = float(np.clip(otsu_threshold(sat[not_black]) if not_black.any() else hi, lo, hi))
    mask = (sat >= t) & not_black
    cell_um2 = thumb_mpp * thumb_mpp
    r = int(round(closing_um / thumb_mpp))
    if r >= 1 and mask.any():
        # pad so the closing does not erode tissue touching the border
        padded = np.pad(mask, r, mode="edge")
        mask = ndimage.binary_closing(padded, structure=_disk(r))[r:-r, r:-r]
    if mask.any():
        holes = ndimage.binary_fill_holes(mask) & ~mask
        mask = mask | (holes & ~_remove_small(holes, int(math.ceil(min_hole_um2 / cell_um2))))
        mask = _remove_small(mask, int(math.ceil(min_object_um2 / cell_um2)))
    method = (
        f"saturation >= {t:.3f} (Otsu clamped to [{lo}, {hi}]) and max(RGB) >= 30 on a "
        f"{thumb_mpp:.2f} um/px thumbnail; closing {closing_um:g} um, holes < {min_hole_um2:g} um^2 filled, "
        f"objects < {min_object_um2:g} um^2 removed"
    )
    return TissueMask(mask, (int(image_shape[0]), int(image_shape[1])), t, method)


__all__ = [
    "MIN_TILE_TISSUE_FRACTION",
    "KEEP_MARGIN_UM",
    "OTSU_CLAMP",
    "SUMMARY_CELL_UM",
    "otsu_threshold",
    "TissueMask",
    "detect_tissue",
]
