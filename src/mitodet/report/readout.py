"""Clinical read-out: mitotic count per mm^2 and per 10 HPF, hotspot, Nottingham score.

Units and coordinates: points are ``(N, 2)`` arrays of (x, y) = (column, row). Pixel
coordinates are level-0 pixels of the image; ``mpp`` is micrometres per pixel; areas are in
mm^2 (``1 mm^2 = 1e6 um^2``). A high-power field (HPF) is a field of ``field_area_mm2``;
the digital standard HPF is 0.237 mm^2, so 10 HPF = 2.37 mm^2.

Nottingham mitotic score (Elston & Ellis). The score is 1 / 2 / 3 from the number of
mitoses in 10 HPF, with cut-offs that depend on the microscope's field size.
:data:`NOTTINGHAM_TABLE` holds the published table for field diameters 0.40-0.69 mm
(areas 0.125-0.374 mm^2). Rule used here: the row whose **area is nearest** to the
requested field area is used as published (no interpolation: the cut-offs are integer
counts defined per row, and interpolating would invent cut-offs nobody validated). For the
digital standard HPF of 0.237 mm^2 that is the 0.55 mm row (0.238 mm^2): score 1 for <= 8,
score 2 for 9-17, score 3 for >= 18 mitoses per 10 HPF. For the 0.274 mm^2 field of the
original Elston-Ellis paper (0.59 mm, row area 0.273 mm^2) it gives <= 9 / 10-19 / >= 20.
Field areas outside the table (diameter outside 0.395-0.695 mm) raise ``ValueError``:
report the count per mm^2 instead.

A count that is not an integer (one scaled from another area) must reach the integer
lower bound of a category: with the 0.55 mm row, 8.7 scores 1 and 9.0 scores 2.

Hotspot rule (:func:`find_hotspot`): the 10-HPF window (``n_fields * field_area_mm2``,
a ``4:3`` rectangle by default, about 1.78 mm x 1.33 mm) with the most mitoses, searched
exhaustively at the resolution of the tissue mask with integral images. A window is
eligible when at least ``min_tissue_fraction`` (default 50 %) of it lies on tissue; ties
go to the window with more tissue, then to the top-most, left-most one. When the image is
smaller than the window in either direction (a single HPF or a small crop), the hotspot
is the whole image, its count is scaled to 10 HPF by the tissue area, and it is flagged
``extrapolated``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mitodet.points import as_points as _points

DIGITAL_HPF_AREA_MM2 = 0.237
"""Area of the digital standard high-power field in mm^2 (10 HPF = 2.37 mm^2)."""


@dataclass(frozen=True)
class NottinghamRow:
    """One row of the Nottingham mitotic-count table.

    Attributes:
        field_diameter_mm: microscope field diameter in mm.
        field_area_mm2: field area in mm^2 as published (pi * (d / 2)^2, rounded).
        score1_max: score 1 when the count per 10 HPF is at most this.
        score2_max: score 2 when the count is above ``score1_max`` and at most this;
            score 3 above it.
    """

    field_diameter_mm: float
    field_area_mm2: float
    score1_max: int
    score2_max: int

    @property
    def cutoffs(self) -> dict[str, str]:
        """Human-readable cut-offs, e.g. ``{"score_1": "<= 8", "score_2": "9-17", "score_3": ">= 18"}``."""
        return {
            "score_1": f"<= {self.score1_max}",
            "score_2": f"{self.score1_max + 1}-{self.score2_max}",
            "score_3": f">= {self.score2_max + 1}",
        }


NOTTINGHAM_TABLE_SOURCE = (
    "Elston CW, Ellis IO. Pathological prognostic factors in breast cancer. I. The value of "
    "histological grade in breast cancer. Histopathology 1991;19:403-410; table of mitotic-count "
    "cut-offs by field diameter as given in the College of American Pathologists protocol for "
    "invasive carcinoma of the breast (Table 1, 'Score Categories According to Field Diameter and "
    "Mitotic Count', after Ellis & Elston 2006 and the Royal College of Pathologists breast "
    "dataset 2016)"
)
"""Where :data:`NOTTINGHAM_TABLE` comes from."""

# (field diameter mm, field area mm^2, score-1 max, score-2 max), 10 HPF per count.
_ROWS: tuple[tuple[float, float, int, int], ...] = (
    (0.40, 0.125, 4, 9),
    (0.41, 0.132, 4, 9),
    (0.42, 0.139, 5, 10),
    (0.43, 0.145, 5, 10),
    (0.44, 0.152, 5, 11),
    (0.45, 0.159, 5, 11),
    (0.46, 0.166, 6, 12),
    (0.47, 0.173, 6, 12),
    (0.48, 0.181, 6, 13),
    (0.49, 0.189, 6, 13),
    (0.50, 0.196, 7, 14),
    (0.51, 0.204, 7, 14),
    (0.52, 0.212, 7, 15),
    (0.53, 0.221, 8, 16),
    (0.54, 0.229, 8, 16),
    (0.55, 0.238, 8, 17),
    (0.56, 0.246, 8, 17),
    (0.57, 0.255, 9, 18),
    (0.58, 0.264, 9, 19),
    (0.59, 0.273, 9, 19),
    (0.60, 0.283, 10, 20),
    (0.61, 0.292, 10, 21),
    (0.62, 0.302, 11, 22),
    (0.63, 0.312, 11, 22),
    (0.64, 0.322, 11, 23),
    (0.65, 0.332, 12, 24),
    (0.66, 0.342, 12, 24),
    (0.67, 0.353, 12, 25),
    (0.68, 0.363, 13, 26),
    (0.69, 0.374, 13, 27),
)

NOTTINGHAM_TABLE: tuple[NottinghamRow, ...] = tuple(NottinghamRow(*r) for r in _ROWS)
"""Nottingham mitotic-score cut-offs (mitoses per 10 HPF) by field diameter / area."""

_DIAMETER_RANGE_MM = (0.395, 0.695)  # the table's range, half a row beyond each end


@dataclass(frozen=True)
class MitoticScore:
    """A Nottingham mitotic score and the table row it came from.

    Attributes:
        score: 1, 2 or 3.
        count_per_10hpf: the count that was scored (mitoses per 10 fields of
            ``field_area_mm2``).
        field_area_mm2: the requested field area.
        row: the table row used (nearest area).
    """

    score: int
    count_per_10hpf: float
    field_area_mm2: float
    row: NottinghamRow

    @property
    def cutoffs(self) -> dict[str, str]:
        return self.row.cutoffs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary, including the table row and source."""
        return {
            "score": self.score,
            "count_per_10hpf": float(self.count_per_10hpf),
            "cutoffs": self.cutoffs,
            "score1_max": self.row.score1_max,
            "score2_max": self.row.score2_max,
            "field_area_mm2": float(self.field_area_mm2),
            "table_row": {"field_diameter_mm": self.row.field_diameter_mm, "field_area_mm2": self.row.field_area_mm2},
            "row_rule": "nearest field area in the published table, cut-offs used as published",
            "table_source": NOTTINGHAM_TABLE_SOURCE,
        }


def _positive(name: str, value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _count(name: str, value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def nottingham_row(field_area_mm2: float = DIGITAL_HPF_AREA_MM2) -> NottinghamRow:
    """The table row for a field area: the row with the nearest area (ties: the smaller row).

    Raises:
        ValueError: if the field's diameter is outside the table (0.40-0.69 mm, give or take
            half a row).
    """
    area = _positive("field_area_mm2", field_area_mm2)
    diameter = 2.0 * math.sqrt(area / math.pi)
    lo, hi = _DIAMETER_RANGE_MM
    if not lo <= diameter <= hi:
        raise ValueError(
            f"field_area_mm2={area:g} (diameter {diameter:.3f} mm) is outside the Nottingham table "
            f"(diameters 0.40-0.69 mm, areas 0.125-0.374 mm^2); use a field area in that range "
            f"(the digital standard HPF is {DIGITAL_HPF_AREA_MM2} mm^2) or report mitoses per mm^2"
        )
    return min(NOTTINGHAM_TABLE, key=lambda r: abs(r.field_area_mm2 - area))


def mitotic_score(count_per_10hpf: float, field_area_mm2: float = DIGITAL_HPF_AREA_MM2) -> MitoticScore:
    """Nottingham mitotic score from the mitoses in 10 HPF of ``field_area_mm2`` each.

    Args:
        count_per_10hpf: mitoses per 10 high-power fields (may be non-integer when scaled).
        field_area_mm2: area of one HPF in mm^2 (0.237 for the digital standard HPF).

    Returns:
        The score with the table row used; ``result.cutoffs`` are the cut-offs.
    """
    c = _count("count_per_10hpf", count_per_10hpf)
    row = nottingham_row(field_area_mm2)
    # A category starts at an integer count; a scaled count must reach it.
    if c < row.score1_max + 1:
        score = 1
    elif c < row.score2_max + 1:
        score = 2
    else:
        score = 3
    return MitoticScore(score=score, count_per_10hpf=c, field_area_mm2=float(field_area_mm2), row=row)


def count_per_mm2(count: float, area_mm2: float) -> float:
    """Mitotic density: ``count / area_mm2`` (mitoses per mm^2)."""
    return _count("count", count) / _positive("area_mm2", area_mm2)


def count_per_10hpf(
    count: float, area_mm2: float, field_area_mm2: float = DIGITAL_HPF_AREA_MM2, n_fields: int = 10
) -> float:
    """Mitoses per ``n_fields`` HPF: the density over ``area_mm2`` times ``n_fields * field_area_mm2``."""
    if isinstance(n_fields, bool) or not isinstance(n_fields, (int, np.integer)) or n_fields < 1:
        raise ValueError(f"n_fields must be a positive integer, got {n_fields!r}")
    return count_per_mm2(count, area_mm2) * int(n_fields) * _positive("field_area_mm2", field_area_mm2)


@dataclass(frozen=True)
class Hotspot:
    """The most mitotically active 10-HPF region.

    Attributes:
        box_um: ``(x0, y0, x1, y1)`` in micrometres from the image's top-left corner.
        count: mitoses inside the box (half-open in x and y).
        area_mm2: area the count refers to: the window's area, or the tissue area of the
            whole image when ``extrapolated``.
        count_per_10hpf: ``count`` scaled to ``n_fields * field_area_mm2`` (for a window
            this only corrects the rounding of the window to the mask grid).
        tissue_fraction: fraction of the box on tissue.
        extrapolated: True when the image is smaller than the window and the count of the
            whole image was scaled up (or down) to 10 HPF.
        n_fields: number of HPF in the window (10).
        field_area_mm2: area of one HPF.
    """

    box_um: tuple[float, float, float, float]
    count: int
    area_mm2: float
    count_per_10hpf: float
    tissue_fraction: float
    extrapolated: bool
    n_fields: int
    field_area_mm2: float

    def box_px(self, mpp: float) -> tuple[float, float, float, float]:
        """The box in level-0 pixels for an image of ``mpp`` micrometres per pixel."""
        m = _positive("mpp", mpp)
        return tuple(float(v) / m for v in self.box_um)  # type: ignore[return-value]

    def to_dict(self, mpp: float | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "box_um": [float(v) for v in self.box_um],
            "count": int(self.count),
            "area_mm2": float(self.area_mm2),
            "count_per_10hpf": float(self.count_per_10hpf),
            "tissue_fraction": float(self.tissue_fraction),
            "extrapolated": bool(self.extrapolated),
            "n_fields": int(self.n_fields),
            "field_area_mm2": float(self.field_area_mm2),
        }
        if mpp is not None:
            d["box_px"] = [float(v) for v in self.box_px(mpp)]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Hotspot":
        """The hotspot of :meth:`to_dict`'s dict (``box_px`` is derived, not read)."""
        return cls(
            box_um=tuple(float(v) for v in d["box_um"]),  # type: ignore[arg-type]
            count=int(d["count"]),
            area_mm2=float(d["area_mm2"]),
            count_per_10hpf=float(d["count_per_10hpf"]),
            tissue_fraction=float(d["tissue_fraction"]),
            extrapolated=bool(d["extrapolated"]),
            n_fields=int(d["n_fields"]),
            field_area_mm2=float(d["field_area_mm2"]),
        )


@dataclass(frozen=True)
class Readout:
    """The clinical read-out of one image (see :func:`summarize`), typed.

    Attributes:
        count: mitoses counted (at ``score_threshold`` when given).
        mpp: micrometres per level-0 pixel; ``image_shape``: (height, width) in level-0 px.
        tissue_area_mm2: the tissue the count refers to.
        count_per_mm2 / count_per_10hpf: the whole-tissue densities (None without tissue).
        field_area_mm2 / n_fields: the HPF definition (0.237 mm^2, 10 fields).
        hotspot: the most active ``n_fields``-HPF region of tissue (None without tissue).
        nottingham: the score and the table row used (``score`` None with an ``error``
            when it cannot be given), as :meth:`MitoticScore.to_dict` writes it.
    """

    count: int
    mpp: float
    image_shape: tuple[int, int]
    score_threshold: float | None
    tissue_area_mm2: float
    count_per_mm2: float | None
    count_per_10hpf: float | None
    field_area_mm2: float
    n_fields: int
    hotspot: Hotspot | None
    nottingham: dict[str, Any]

    @property
    def mitotic_score(self) -> int | None:
        """The Nottingham mitotic score (1-3), or None when it is withheld."""
        return self.nottingham.get("score")

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict of ``NAME.summary.json``'s read-out keys."""
        return {
            "count": int(self.count),
            "mpp": float(self.mpp),
            "image_shape": [int(v) for v in self.image_shape],
            "score_threshold": None if self.score_threshold is None else float(self.score_threshold),
            "tissue_area_mm2": float(self.tissue_area_mm2),
            "count_per_mm2": self.count_per_mm2,
            "count_per_10hpf": self.count_per_10hpf,
            "field_area_mm2": float(self.field_area_mm2),
            "n_fields": int(self.n_fields),
            "hotspot": None if self.hotspot is None else self.hotspot.to_dict(mpp=self.mpp),
            "nottingham": dict(self.nottingham),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Readout":
        """The read-out of a summary dict (:meth:`to_json`, or a whole ``NAME.summary.json``).

        Raises:
            ValueError: a key is missing or of the wrong type (the message names it).
        """
        try:
            hot = d["hotspot"]
            thr = d["score_threshold"]
            return cls(
                count=int(d["count"]),
                mpp=float(d["mpp"]),
                image_shape=(int(d["image_shape"][0]), int(d["image_shape"][1])),
                score_threshold=None if thr is None else float(thr),
                tissue_area_mm2=float(d["tissue_area_mm2"]),
                count_per_mm2=_opt_float(d["count_per_mm2"]),
                count_per_10hpf=_opt_float(d["count_per_10hpf"]),
                field_area_mm2=float(d["field_area_mm2"]),
                n_fields=int(d["n_fields"]),
                hotspot=None if hot is None else Hotspot.from_dict(hot),
                nottingham=dict(d["nottingham"]),
            )
        except KeyError as exc:
            raise ValueError(f"not a mitodet read-out: no {exc.args[0]!r}") from None
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"not a mitodet read-out: {exc}") from None


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _pair(name: str, value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float, np.floating, np.integer)):
        v = _positive(name, value)
        return v, v
    vals = tuple(value)
    if len(vals) != 2:
        raise ValueError(f"{name} must be a number or an (x, y) pair, got {value!r}")
    return _positive(f"{name}[0]", vals[0]), _positive(f"{name}[1]", vals[1])


def _cells(pts: np.ndarray, step: float, n: int, axis: str) -> np.ndarray:
    """Grid cell of each coordinate; a point up to one cell outside the grid is clipped in."""
    idx = np.floor(pts / step).astype(np.int64)
    bad = (idx < -1) | (idx > n)
    if np.any(bad):
        v = float(pts[bad][0])
        raise ValueError(
            f"{int(bad.sum())} point(s) lie outside the tissue mask's extent in {axis} "
            f"(e.g. {v:g} um, extent 0-{n * step:g} um); check mpp and the mask's size"
        )
    return np.clip(idx, 0, n - 1)


def _window_sums(a: np.ndarray, wh: int, ww: int) -> np.ndarray:
    s = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.int64)
    s[1:, 1:] = np.cumsum(np.cumsum(a, axis=0, dtype=np.int64), axis=1)
    return s[wh:, ww:] - s[:-wh, ww:] - s[wh:, :-ww] + s[:-wh, :-ww]


def _rect_sums(integral: np.ndarray, r0: np.ndarray, c0: np.ndarray, wh: int, ww: int) -> np.ndarray:
    return integral[r0 + wh, c0 + ww] - integral[r0, c0 + ww] - integral[r0 + wh, c0] + integral[r0, c0]


def _integral(a: np.ndarray) -> np.ndarray:
    s = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.int64)
    s[1:, 1:] = np.cumsum(np.cumsum(a, axis=0, dtype=np.int64), axis=1)
    return s


HOTSPOT_GROWTH = 1.25
"""Area ratio between successive window sizes of the tissue-holding hotspot search."""


def find_hotspot(
    points_um: np.ndarray,
    tissue_mask: np.ndarray,
    mask_mpp: float | Sequence[float],
    field_area_mm2: float = DIGITAL_HPF_AREA_MM2,
    n_fields: int = 10,
    aspect: tuple[float, float] = (4, 3),
    min_tissue_fraction: float = 0.5,
    mode: str = "tissue",
) -> Hotspot:
    """The region of ``n_fields`` HPF with the most mitoses.

    ``mode="tissue"`` (the default, the read-out's): the region holds ``n_fields`` HPF **of
    tissue**. Around every cell of the mask, a window of the given aspect grows (by
    :data:`HOTSPOT_GROWTH` in area per step, from the size of ``n_fields`` HPF, clipped to the
    image) until it holds that much tissue; its mitoses on tissue are counted and scaled to
    exactly ``n_fields`` HPF of its tissue. The hotspot is the window with the highest such
    count (ties: the smaller window, then the first). So glass neither
    dilutes nor pads the count: the same tissue gives the same count as a frame, in a mosaic
    or inside a slide (up to the mask grid and the growth step), and a thin core is followed
    along its length. ``count`` is the window's own count, ``area_mm2`` its tissue area,
    ``count_per_10hpf`` the count scaled to exactly ``n_fields`` HPF of tissue (what the
    score is read from).

    ``mode="window"``: the earlier rule, a fixed window of ``n_fields`` HPF of area with at
    least ``min_tissue_fraction`` of tissue, counting every mitosis in it.

    Both search exhaustively at the mask's resolution with integral images. When the image
    holds less than ``n_fields`` HPF (tissue mode: of tissue; window mode: of area), the
    hotspot is the whole image and ``extrapolated`` is set.

    Args:
        points_um: ``(N, 2)`` mitosis centres as (x, y) in micrometres from the top-left
            corner of the image.
        tissue_mask: ``(h, w)`` boolean tissue mask covering the whole image (a thumbnail:
            the search costs ``O(h * w)`` per window size, so keep it to a few thousand cells).
        mask_mpp: micrometres per mask cell, a number or an (x, y) pair.
        field_area_mm2: area of one HPF in mm^2.
        n_fields: number of HPF in the window.
        aspect: (width, height) ratio of the window; when only the transposed window fits
            the image, the transposed one is used.
        min_tissue_fraction: window mode only (see above).
        mode: ``"tissue"`` or ``"window"``.

    Returns:
        The hotspot.

    Raises:
        ValueError: on an empty tissue mask, bad sizes, or points outside the mask.
    """
    mx, my = _pair("mask_mpp", mask_mpp)
    fa = _positive("field_area_mm2", field_area_mm2)
    if isinstance(n_fields, bool) or int(n_fields) != n_fields or n_fields < 1:
        raise ValueError(f"n_fields must be a positive integer, got {n_fields!r}")
    n_fields = int(n_fields)
    ax, ay = _pair("aspect", aspect)
    if not 0.0 <= float(min_tissue_fraction) <= 1.0:
        raise ValueError(f"min_tissue_fraction must lie in [0, 1], got {min_tissue_fraction!r}")
    if mode not in ("tissue", "window"):
        raise ValueError(f"mode must be 'tissue' or 'window', got {mode!r}")
    mask = np.asarray(tissue_mask).astype(bool)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"tissue_mask must be a non-empty 2-D (h, w) array, got shape {mask.shape}")
    if not mask.any():
        raise ValueError(
            "tissue_mask has no tissue; a hotspot needs tissue (pass an all-True mask "
            "to treat the whole image as tissue)"
        )
    pts = _points(points_um, "points_um")
    h, w = mask.shape
    cx = _cells(pts[:, 0], mx, w, "x")
    cy = _cells(pts[:, 1], my, h, "y")
    counts = np.bincount(cy * w + cx, minlength=h * w).reshape(h, w)

    target_mm2 = n_fields * fa
    target_um2 = target_mm2 * 1e6
    width_um, height_um = math.sqrt(target_um2 * ax / ay), math.sqrt(target_um2 * ay / ax)
    ww, wh = max(1, round(width_um / mx)), max(1, round(height_um / my))
    if ww > w or wh > h:  # try the transposed window (a portrait image)
        tw, th = max(1, round(height_um / mx)), max(1, round(width_um / my))
        if tw <= w and th <= h:
            ww, wh = tw, th

    def whole_image(n: int, tissue_mm2: float) -> Hotspot:
        return Hotspot(
            box_um=(0.0, 0.0, w * mx, h * my),
            count=n,
            area_mm2=tissue_mm2,
            count_per_10hpf=n * target_mm2 / tissue_mm2,
            tissue_fraction=float(mask.mean()),
            extrapolated=True,
            n_fields=n_fields,
            field_area_mm2=fa,
        )

    if mode == "tissue":
        # n_fields HPF of tissue, as the window of that area rounds to the mask grid
        target_cells = target_um2 / (mx * my)
        if ww <= w and wh <= h:
            target_cells = min(target_cells, float(ww * wh))
        on_tissue = np.where(mask, counts, 0)
        if mask.sum() < target_cells - 1e-9:
            return whole_image(int(on_tissue.sum()), float(mask.sum()) * mx * my / 1e6)
        return _tissue_hotspot(on_tissue, mask, ww, wh, target_cells, mx, my, n_fields, fa)

    if ww > w or wh > h:
        return whole_image(int(len(pts)), float(mask.sum()) * mx * my / 1e6)
    win_counts = _window_sums(counts, wh, ww)
    win_frac = _window_sums(mask.astype(np.int64), wh, ww) / float(ww * wh)
    eligible = win_frac >= float(min_tissue_fraction) - 1e-12
    if not eligible.any():
        eligible = win_frac >= win_frac.max() - 1e-12
    flat = np.flatnonzero(eligible.ravel())
    c = win_counts.ravel()[flat]
    f = win_frac.ravel()[flat]
    best = flat[np.lexsort((flat, -f, -c))[0]]  # most mitoses, then most tissue, then first
    r0, c0 = divmod(int(best), win_counts.shape[1])
    area_mm2 = ww * wh * mx * my / 1e6
    count = int(win_counts[r0, c0])
    return Hotspot(
        box_um=(c0 * mx, r0 * my, (c0 + ww) * mx, (r0 + wh) * my),
        count=count,
        area_mm2=area_mm2,
        count_per_10hpf=count * target_mm2 / area_mm2,
        tissue_fraction=float(win_frac[r0, c0]),
        extrapolated=False,
        n_fields=n_fields,
        field_area_mm2=fa,
    )


def _tissue_hotspot(
    counts: np.ndarray,
    mask: np.ndarray,
    ww0: int,
    wh0: int,
    target_cells: float,
    mx: float,
    my: float,
    n_fields: int,
    fa: float,
) -> Hotspot:
    """The tissue-mode search of :func:`find_hotspot` (windows growing around each centre)."""
    h, w = mask.shape
    ic, it = _integral(counts), _integral(mask.astype(np.int64))
    done = np.zeros((h, w), dtype=bool)
    best_key, best = None, None
    scale = 1.0
    while True:
        ww, wh = min(w, max(1, round(ww0 * scale))), min(h, max(1, round(wh0 * scale)))
        # every placement of this window; its centre cell indexes the "done" grid
        r0 = np.arange(h - wh + 1)[:, None]
        c0 = np.arange(w - ww + 1)[None, :]
        tissue = _rect_sums(it, r0, c0, wh, ww)
        rc, cc = r0 + wh // 2, c0 + ww // 2
        new = (tissue >= target_cells - 1e-9) & ~done[rc, cc]
        if new.any():
            done[rc[:, :1].ravel()[:, None], cc[:1, :].ravel()[None, :]] |= new
            n = _rect_sums(ic, r0, c0, wh, ww)
            cand = np.flatnonzero(new.ravel())
            # mitoses per n_fields HPF of the window's tissue (it holds 1-1.25 x that much tissue)
            dens = n.ravel()[cand] * target_cells / tissue.ravel()[cand]
            j = int(np.argmax(dens))  # the first of the densest at this size
            k = cand[j]
            key = (-round(float(dens[j]), 9), ww * wh)
            if best_key is None or key < best_key:  # denser, or as dense in a smaller window
                rr, ccol = divmod(int(k), new.shape[1])
                best_key, best = key, (rr, ccol, ww, wh, int(n.ravel()[k]), int(tissue.ravel()[k]))
        if (ww == w and wh == h) or done.all():
            break
        scale *= math.sqrt(HOTSPOT_GROWTH)
    rr, ccol, ww, wh, count, tissue_cells = best
    tissue_mm2 = tissue_cells * mx * my / 1e6
    return Hotspot(
        box_um=(ccol * mx, rr * my, (ccol + ww) * mx, (rr + wh) * my),
        count=count,
        area_mm2=tissue_mm2,
        count_per_10hpf=count * n_fields * fa / tissue_mm2,
        tissue_fraction=tissue_cells / float(ww * wh),
        extrapolated=False,
        n_fields=n_fields,
        field_area_mm2=fa,
    )


HOTSPOT_GRID_UM = 8.0
"""Grid step (micrometres) of the hotspot search when no tissue mask is given."""


def summarize(
    points_xy_px: np.ndarray,
    scores: np.ndarray | None,
    mpp: float,
    image_shape: Sequence[int],
    tissue_mask: np.ndarray | None = None,
    field_area_mm2: float = DIGITAL_HPF_AREA_MM2,
    *,
    n_fields: int = 10,
    min_tissue_fraction: float = 0.5,
    score_threshold: float | None = None,
) -> dict[str, Any]:
    """The clinical read-out of one image as a JSON-ready dict.

    Args:
        points_xy_px: ``(N, 2)`` mitosis centres as (x, y) in level-0 pixels.
        scores: ``(N,)`` detection scores, or None.
        mpp: micrometres per level-0 pixel.
        image_shape: ``(height, width[, channels])`` of the level-0 image in pixels.
        tissue_mask: optional ``(h, w)`` boolean mask covering the whole image at any
            (coarser) resolution; its cell size is ``mpp * height / h`` by ``mpp * width / w``.
            Without it the whole image counts as tissue.
        field_area_mm2: area of one HPF in mm^2 (0.237, the digital standard HPF).
        n_fields: HPF per count (10).
        min_tissue_fraction: minimum tissue fraction of an eligible hotspot window.
        score_threshold: when given, only detections with ``score >= score_threshold`` count.

    Returns:
        ``count``, ``tissue_area_mm2``, ``count_per_mm2``, ``count_per_10hpf`` (the average
        over the tissue), ``hotspot`` (``box_px``, ``box_um``, ``count``, ``count_per_10hpf``,
        ``extrapolated``, ...), and ``nottingham`` (``score``, ``cutoffs``, ``field_area_mm2``,
        ``table_source``, ... scored on the hotspot's count per 10 HPF, as the grading
        system asks for the most mitotically active area). When the field area is outside
        the published table, ``nottingham.score`` is None and ``nottingham.error`` says why.
    """
    m = _positive("mpp", mpp)
    shape = tuple(int(v) for v in image_shape)
    if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"image_shape must be (height, width[, channels]) with positive sizes, got {image_shape!r}")
    height, width = shape[0], shape[1]
    pts = _points(points_xy_px, "points_xy_px")
    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(sc) != len(pts):
            raise ValueError(f"{len(pts)} points but {len(sc)} scores")
        if score_threshold is not None:
            pts = pts[sc >= float(score_threshold)]
    elif score_threshold is not None:
        raise ValueError("score_threshold needs scores")

    if tissue_mask is None:
        nx = max(1, math.ceil(width * m / max(HOTSPOT_GRID_UM, m)))
        ny = max(1, math.ceil(height * m / max(HOTSPOT_GRID_UM, m)))
        mask = np.ones((ny, nx), dtype=bool)
        tissue_mm2 = height * width * m * m / 1e6
    else:
        mask = np.asarray(tissue_mask).astype(bool)
        if mask.ndim != 2 or mask.size == 0:
            raise ValueError(f"tissue_mask must be a non-empty 2-D (h, w) array, got shape {mask.shape}")
        ny, nx = mask.shape
        tissue_mm2 = float(mask.sum()) * (width * m / nx) * (height * m / ny) / 1e6
    mask_mpp = (width * m / mask.shape[1], height * m / mask.shape[0])

    n = int(len(pts))
    readout = Readout(
        count=n,
        mpp=m,
        image_shape=(height, width),
        score_threshold=None if score_threshold is None else float(score_threshold),
        tissue_area_mm2=tissue_mm2,
        count_per_mm2=count_per_mm2(n, tissue_mm2) if tissue_mm2 > 0 else None,
        count_per_10hpf=count_per_10hpf(n, tissue_mm2, field_area_mm2, n_fields) if tissue_mm2 > 0 else None,
        field_area_mm2=float(field_area_mm2),
        n_fields=int(n_fields),
        hotspot=None,
        nottingham={"score": None, "error": "no tissue in tissue_mask", "table_source": NOTTINGHAM_TABLE_SOURCE},
    )
    if tissue_mm2 <= 0:
        return readout.to_json()
    hot = find_hotspot(
        pts * m,
        mask,
        mask_mpp,
        field_area_mm2=field_area_mm2,
        n_fields=n_fields,
        min_tissue_fraction=min_tissue_fraction,
    )
    try:
        ms = mitotic_score(hot.count_per_10hpf, field_area_mm2)
        nd = ms.to_dict()
        nd["based_on"] = "hotspot (extrapolated from the whole image)" if hot.extrapolated else "hotspot"
    except ValueError as err:
        nd = {
            "score": None,
            "error": str(err),
            "field_area_mm2": float(field_area_mm2),
            "table_source": NOTTINGHAM_TABLE_SOURCE,
        }
    return replace(readout, hotspot=hot, nottingham=nd).to_json()


__all__ = [
    "DIGITAL_HPF_AREA_MM2",
    "NOTTINGHAM_TABLE",
    "NOTTINGHAM_TABLE_SOURCE",
    "NottinghamRow",
    "MitoticScore",
    "nottingham_row",
    "mitotic_score",
    "count_per_mm2",
    "count_per_10hpf",
    "Hotspot",
    "Readout",
    "find_hotspot",
    "HOTSPOT_GRID_UM",
    "summarize",
]
