"""Reading regions at a pyramid level, resized, and bounded thumbnails."""

from __future__ import annotations

import math

import numpy as np

from mitodet.inference.slide.sources import ImageSource

# ----------------------------------------------------------------------------- thumbnails


def best_level(source: ImageSource, downsample: float) -> int:
    """The coarsest level whose downsample is at most ``downsample`` (level 0 if none)."""
    best, best_d = 0, 1.0
    for k in range(len(source.level_dimensions)):
        d = max(source.level_downsample(k))
        # 0.1 % slack: level sizes are rounded, so a nominal 2x level may be 2.0004x
        if d <= downsample * 1.001 and d > best_d:
            best, best_d = k, d
    return best


def resize_region(
    source: ImageSource,
    level: int,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    filter: str = "bilinear",
) -> np.ndarray:
    """Read the sub-pixel ``box`` (x0, y0, x1, y1 in pixels of ``level``, edges) resampled to
    ``size = (width, height)``.

    A margin of source pixels around the box is read so the filter sees real neighbours,
    which makes adjacent boxes resample exactly as one large image would (Pillow's ``box``
    argument keeps the sub-pixel alignment).
    """
    from PIL import Image

    x0, y0, x1, y1 = (float(v) for v in box)
    out_w, out_h = int(size[0]), int(size[1])
    scale = max((x1 - x0) / out_w, (y1 - y0) / out_h, 1.0)
    pad = int(math.ceil(scale)) + 2
    if (
        abs((x1 - x0) - out_w) < 1e-9
        and abs((y1 - y0) - out_h) < 1e-9
        and all(abs(v - round(v)) < 1e-9 for v in (x0, y0))
    ):
        return source.read_region(level, (round(x0), round(y0), round(x0) + out_w, round(y0) + out_h))
    rx0, ry0 = int(math.floor(x0)) - pad, int(math.floor(y0)) - pad
    rx1, ry1 = int(math.ceil(x1)) + pad, int(math.ceil(y1)) + pad
    w, h = source.level_dimensions[level]
    # never read beyond the image: resampling then clamps at the true image edge, as a
    # whole-image resize does
    rx0, ry0, rx1, ry1 = max(0, rx0), max(0, ry0), min(w, rx1), min(h, ry1)
    crop = source.read_region(level, (rx0, ry0, rx1, ry1))
    resample = {"bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX}[filter]
    im = Image.fromarray(crop).resize((out_w, out_h), resample, box=(x0 - rx0, y0 - ry0, x1 - rx0, y1 - ry0))
    return np.asarray(im, dtype=np.uint8)


def read_thumbnail(
    source: ImageSource, max_side: int = 4096, chunk_bytes: int = 64 * 2**20
) -> tuple[np.ndarray, tuple[float, float]]:
    """A thumbnail of the whole image with its long side at most ``max_side`` pixels.

    The finest pyramid level that fits in ``max_side`` is the thumbnail as it is; without
    one (a flat or shallow pyramid), the level just finer than needed is resampled. Either
    way the level is read in horizontal bands of at most ``chunk_bytes`` (each band
    resampled on its own), so memory stays bounded even for a slide without a pyramid.

    Returns:
        ``(thumb (th, tw, 3) uint8, (dx, dy))`` with ``dx, dy`` level-0 pixels per thumbnail
        pixel. An image no larger than ``max_side`` is returned at full resolution.
    """
    from PIL import Image

    h0, w0 = source.shape
    d = max(1.0, max(h0, w0) / float(max_side))
    tw, th = max(1, round(w0 / d)), max(1, round(h0 / d))
    full = source.in_memory()
    if full is not None:
        if (tw, th) == (w0, h0):
            return full, (1.0, 1.0)
        return (
            np.asarray(Image.fromarray(full).resize((tw, th), Image.Resampling.BOX), dtype=np.uint8),
            (w0 / tw, h0 / th),
        )
    fits = [k for k, (w, h) in enumerate(source.level_dimensions) if max(w, h) <= max_side]
    if fits:
        # the finest pyramid level that fits is the thumbnail: read as is, no resampling
        level = min(fits, key=lambda k: max(source.level_downsample(k)))
        tw, th = source.level_dimensions[level]
    else:
        level = best_level(source, min(w0 / tw, h0 / th))
    wl, hl = source.level_dimensions[level]
    fy = hl / th  # level pixels per thumbnail pixel (rows)
    rows_per_chunk = max(1, int(chunk_bytes // max(1, wl * 3 * fy)))
    out = np.empty((th, tw, 3), dtype=np.uint8)
    for r0 in range(0, th, rows_per_chunk):
        r1 = min(th, r0 + rows_per_chunk)
        out[r0:r1] = resize_region(source, level, (0.0, r0 * fy, float(wl), r1 * fy), (tw, r1 - r0), "box")
    return out, (w0 / tw, h0 / th)
