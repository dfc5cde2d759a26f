"""Pure tiling of large images with a read box and a core box per tile.

A large image (a whole-slide image or a big high-power field) is processed in tiles. Each
:class:`Tile` has two boxes, both in level-0 pixel coordinates of the full image, written
``(x0, y0, x1, y1)`` with x = column and y = row, half-open (``x0 <= x < x1``):

* the **core** box: the cores of all tiles partition the image, so every pixel lies in
  exactly one core;
* the **read** box: the core grown by ``overlap // 2`` pixels on its left/top side and
  ``overlap - overlap // 2`` on its right/bottom side, clipped to the image. This is the
  region the detector sees; it is at most ``tile_size`` pixels wide (cores are at most
  ``tile_size - overlap``, split evenly, so reads are often a little smaller).

A detection belongs to the tile whose core holds its centre (:func:`owned_mask`,
:func:`assign_to_tiles`), so after :func:`merge_tile_detections` no detection is counted
twice and none is lost at a seam. The overlap must exceed the object size: then an object
whose centre lies in a core is seen whole inside that tile's read box (the read extends
at least ``overlap / 2`` beyond the core on every side that is not the image border).

Cores that touch the image border are treated as unbounded on that side when assigning
detections, so a centre lying exactly on the far edge (``x == width``) or a sub-pixel
outside the image is still owned by exactly one tile. The ownership rule therefore
partitions the whole plane, not only the image.

The tiling follows the core/read split of stardist's ``big.py`` and TIAToolbox's patch
extraction; it is pure (no I/O) and works on any image size, including images smaller
than one tile (one tile whose core is the whole image).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mitodet.points import as_points as _as_points

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Tile:
    """One tile of a tiled image.

    Attributes:
        read: ``(x0, y0, x1, y1)`` region to read and run the detector on, level-0 pixels,
            half-open, clipped to the image.
        core: ``(x0, y0, x1, y1)`` region this tile owns; the cores of all tiles partition
            the image.
        row: tile row index (0 = top).
        col: tile column index (0 = left).
        image_shape: ``(height, width)`` of the full image in pixels.
    """

    read: Box
    core: Box
    row: int
    col: int
    image_shape: tuple[int, int]

    @property
    def read_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the read box in pixels."""
        x0, y0, x1, y1 = self.read
        return (y1 - y0, x1 - x0)

    @property
    def offset(self) -> tuple[int, int]:
        """``(x0, y0)`` of the read box: add it to read-box coordinates to get image ones."""
        return (self.read[0], self.read[1])

    @property
    def core_in_read(self) -> Box:
        """The core box in the coordinates of the read box (origin at the read's top-left)."""
        ox, oy = self.offset
        x0, y0, x1, y1 = self.core
        return (x0 - ox, y0 - oy, x1 - ox, y1 - oy)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Convert ``(N, 2)`` (x, y) points from read-box to image coordinates (a new array)."""
        pts = _as_points(points, "points")
        return pts + np.asarray(self.offset, dtype=np.float64)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _split(length: int, step: int) -> list[tuple[int, int]]:
    """Split ``[0, length)`` into ``ceil(length / step)`` near-equal consecutive intervals.

    Every interval is at most ``step`` long (so every read stays within ``tile_size``), and
    the sizes differ by at most one pixel, which avoids a sliver tile at the far edge.
    """
    n = max(1, math.ceil(length / step))
    bounds = [(i * length) // n for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n)]


def make_tiles(
    height: int,
    width: int,
    tile_size: int,
    overlap: int,
    min_overlap: int | None = None,
) -> list[Tile]:
    """Tile an image into read/core boxes whose cores partition the image.

    Args:
        height: image height in pixels (rows), >= 1.
        width: image width in pixels (columns), >= 1.
        tile_size: side of an interior read box in pixels (the detector's input size).
        overlap: pixels shared by the read boxes of neighbouring tiles, ``0 <= overlap <
            tile_size``. The core step is ``tile_size - overlap``.
        min_overlap: the object size in pixels (e.g. the diameter of a mitotic figure at
            this resolution). When given, ``overlap`` must be at least this large so that an
            object whose centre lies in a core is seen whole in the read box.

    Returns:
        Tiles in row-major order (top-left first). Edge tiles have read boxes clipped to
        the image, so they can be smaller than ``tile_size``; an image smaller than one
        tile gives a single tile whose read and core are the whole image.

    Raises:
        ValueError: on non-positive sizes, ``overlap >= tile_size``, or ``overlap <
            min_overlap``.
    """
    height = _check_int("height", height, 1)
    width = _check_int("width", width, 1)
    tile_size = _check_int("tile_size", tile_size, 1)
    overlap = _check_int("overlap", overlap, 0)
    if overlap >= tile_size:
        raise ValueError(
            f"overlap ({overlap} px) must be smaller than tile_size ({tile_size} px); "
            f"reduce the overlap or enlarge the tile"
        )
    if min_overlap is not None:
        min_overlap = _check_int("min_overlap", min_overlap, 0)
        if overlap < min_overlap:
            raise ValueError(
                f"overlap ({overlap} px) must exceed the object size ({min_overlap} px): "
                f"otherwise an object centred near a seam is cut off in the tile that owns it; "
                f"use overlap >= {min_overlap} (and tile_size > overlap)"
            )
    step = tile_size - overlap
    lo, hi = overlap // 2, overlap - overlap // 2
    rows = _split(height, step)
    cols = _split(width, step)
    tiles: list[Tile] = []
    for r, (cy0, cy1) in enumerate(rows):
        for c, (cx0, cx1) in enumerate(cols):
            read = (max(0, cx0 - lo), max(0, cy0 - lo), min(width, cx1 + hi), min(height, cy1 + hi))
            tiles.append(Tile(read=read, core=(cx0, cy0, cx1, cy1), row=r, col=c, image_shape=(height, width)))
    return tiles


def owned_mask(tile: Tile, points: np.ndarray) -> np.ndarray:
    """Which points this tile owns: those whose centre lies in its core box.

    Boxes are half-open (``x0 <= x < x1``); a core side that lies on the image border is
    unbounded, so points on or slightly beyond the border still belong to exactly one tile.

    Args:
        tile: a tile from :func:`make_tiles`.
        points: ``(N, 2)`` centres as (x, y) in image (level-0 pixel) coordinates.

    Returns:
        ``(N,)`` boolean mask.
    """
    pts = _as_points(points, "points")
    h, w = tile.image_shape
    x0, y0, x1, y1 = (float(v) for v in tile.core)
    # A core on the image border extends to infinity on that side (see module docstring).
    x0 = -np.inf if x0 <= 0 else x0
    y0 = -np.inf if y0 <= 0 else y0
    x1 = np.inf if x1 >= w else x1
    y1 = np.inf if y1 >= h else y1
    x, y = pts[:, 0], pts[:, 1]
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def assign_to_tiles(tiles: Sequence[Tile], points: np.ndarray) -> np.ndarray:
    """Index of the owning tile for each point.

    Args:
        tiles: the tiles of one image (from :func:`make_tiles`).
        points: ``(N, 2)`` centres as (x, y) in image coordinates.

    Returns:
        ``(N,)`` int array of indices into ``tiles``.

    Raises:
        ValueError: if ``tiles`` is empty or the tiles do not own every point exactly once
            (tiles that do not come from one :func:`make_tiles` call).
    """
    pts = _as_points(points, "points")
    if len(tiles) == 0:
        raise ValueError("tiles is empty; build them with make_tiles(height, width, tile_size, overlap)")
    owner = np.full(len(pts), -1, dtype=np.int64)
    hits = np.zeros(len(pts), dtype=np.int64)
    for i, tile in enumerate(tiles):
        m = owned_mask(tile, pts)
        owner[m] = i
        hits += m
    if np.any(hits != 1):
        bad = int(np.sum(hits != 1))
        raise ValueError(
            f"{bad} point(s) are owned by {sorted(set(hits[hits != 1].tolist()))} tiles instead "
            f"of exactly one; pass all tiles of a single make_tiles() call"
        )
    return owner


def merge_tile_detections(
    results: Iterable[tuple[Tile, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-tile detections, keeping each detection only in the tile that owns it.

    Args:
        results: ``(tile, points, scores)`` per tile, with ``points`` ``(N, 2)`` as (x, y)
            in **image** coordinates (use :meth:`Tile.to_image` on read-box coordinates)
            and ``scores`` ``(N,)``.

    Returns:
        ``(points (M, 2) float64, scores (M,) float64)``: the owned detections of all tiles,
        in tile order.
    """
    kept_pts: list[np.ndarray] = []
    kept_scores: list[np.ndarray] = []
    for tile, points, scores in results:
        pts = _as_points(points, "points")
        sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(sc) != len(pts):
            raise ValueError(f"tile (row {tile.row}, col {tile.col}): {len(pts)} points but {len(sc)} scores")
        m = owned_mask(tile, pts)
        kept_pts.append(pts[m])
        kept_scores.append(sc[m])
    if not kept_pts:
        return np.zeros((0, 2), dtype=np.float64), np.zeros((0,), dtype=np.float64)
    return np.concatenate(kept_pts, axis=0), np.concatenate(kept_scores, axis=0)


__all__ = ["Box", "Tile", "make_tiles", "owned_mask", "assign_to_tiles", "merge_tile_detections"]
