"""SYNTHETIC H&E-like scenes for tests and smoke runs. NOT REAL DATA.

!!! Everything this module makes is SYNTHETIC: cartoons of H&E tissue drawn from random
!!! numbers. Never use them as evidence of detection accuracy, never report a metric measured
!!! on them, never mix them into training data for a model anyone will use. They exist so
!!! that tests of the data pipeline, tiling, slide reading, evaluation and the CLI can run
!!! offline, fast and deterministically.

A scene is drawn in optical density with the Ruifrok & Johnston (2001) H&E stain vectors and
turned into RGB by Beer-Lambert (``I = 255 * exp(-OD)``):

* eosin background: smooth pink texture with a few pale lumen-like gaps;
* ordinary nuclei: purple ellipses (~6-10 um) with a grainy chromatin texture;
* "mitoses" (label 1): dark, compact, clumped chromatin (a band or cluster of small dark
  blobs, about 8-12 um across) in a pale halo;
* "look-alikes" (label 0, hard negatives): dark but smooth round bodies (pyknotic /
  apoptotic-like, ~5-8 um) with a bright eosinophilic rim.

Coordinates are (x, y) = (column, row) in pixels, float64, as everywhere in mitodet; physical
sizes follow ``mpp`` (micrometres per pixel), so a scene at 0.5 um/px shows the same objects
at half the pixel size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

# Ruifrok & Johnston (2001) optical-density vectors (R, G, B), unit length
_H_VEC = np.array([0.650, 0.704, 0.286], dtype=np.float32)
_E_VEC = np.array([0.072, 0.990, 0.105], dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell_px: float) -> np.ndarray:
    """Uniform [0, 1] noise on a coarse grid, bilinearly upsampled to (h, w), float32."""
    gh = int(np.ceil(h / cell_px)) + 2
    gw = int(np.ceil(w / cell_px)) + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    fy = (np.arange(h, dtype=np.float32) + 0.5) / np.float32(cell_px)
    fx = (np.arange(w, dtype=np.float32) + 0.5) / np.float32(cell_px)
    y0 = fy.astype(np.int64)
    x0 = fx.astype(np.int64)
    wy = (fy - y0)[:, None]
    wx = fx - x0
    # separable: along x on the coarse rows (cheap), then along y with whole-row gathers
    rows = grid[:, x0] + (grid[:, x0 + 1] - grid[:, x0]) * wx
    top = rows[y0]
    return top + (rows[y0 + 1] - top) * wy


def _grain(rng: np.random.Generator, shape: tuple[int, ...], sd: float) -> np.ndarray:
    """Zero-mean uniform noise with standard deviation ``sd`` (float32; uniform because it
    is several times faster to draw than Gaussian and looks the same at pixel scale)."""
    u = rng.random(shape, dtype=np.float32)
    u -= np.float32(0.5)
    u *= np.float32(sd * np.sqrt(12.0))
    return u


def _place(
    rng: np.random.Generator,
    n: int,
    h: int,
    w: int,
    margin: float,
    min_dist: float,
    taken: np.ndarray,
) -> np.ndarray:
    """``n`` centres (x, y) at least ``margin`` from the border and ``min_dist`` apart (and
    from ``taken``). Raises when the scene is too small for them."""
    out = [taken.reshape(-1, 2)]
    placed = 0
    tries = 0
    while placed < n:
        if tries > 200 * (n + 1):
            raise ValueError(
                f"could not place {n} special objects {min_dist:.0f} px apart in a {h}x{w} "
                "scene; ask for fewer mitoses/look-alikes or a larger size"
            )
        tries += 1
        cand = rng.uniform([margin, margin], [w - margin, h - margin])
        prev = np.concatenate(out)
        if len(prev) and np.min(np.hypot(*(prev - cand).T)) < min_dist:
            continue
        out.append(cand[None])
        placed += 1
    return np.concatenate(out)[len(taken) :]


def _stamp(dst: np.ndarray, patch: np.ndarray, x0: int, y0: int, op=np.maximum) -> None:
    """Combine ``patch`` into ``dst`` at top-left (x0, y0), clipped to the canvas."""
    h, w = dst.shape
    ph, pw = patch.shape
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + ph, h), min(x0 + pw, w)
    if ya >= yb or xa >= xb:
        return
    sub = patch[ya - y0 : yb - y0, xa - x0 : xb - x0]
    dst[ya:yb, xa:xb] = op(dst[ya:yb, xa:xb], sub)


def _local_grid(cx: float, cy: float, half: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    x0 = int(np.floor(cx)) - half
    y0 = int(np.floor(cy)) - half
    yy, xx = np.mgrid[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1].astype(np.float32)
    return x0, y0, xx - np.float32(cx), yy - np.float32(cy)


def _soft(inside: np.ndarray, edge_px: float) -> np.ndarray:
    """Map a signed 'radius fraction' field (1 at the boundary) to a soft 0..1 mask."""
    return np.clip((1.0 - inside) * (1.0 / max(edge_px, 1e-3)) + 0.5, 0.0, 1.0)


def synthetic_scene(
    size: tuple[int, int] = (512, 512),
    n_mitoses: int = 3,
    n_lookalikes: int = 3,
    mpp: float = 0.25,
    seed: int = 0,
    *,
    nuclei_per_mm2: float = 5000.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one SYNTHETIC H&E-like field (never real data; never for reported accuracy).

    Args:
        size: (height, width) in pixels.
        n_mitoses: number of mitosis-like dark clumped figures (label 1).
        n_lookalikes: number of hard-negative look-alikes (label 0).
        mpp: micrometres per pixel; object sizes are physical (um), so they scale with it.
        seed: random seed; the same arguments give the same scene, bit for bit.
        nuclei_per_mm2: density of ordinary nuclei.

    Returns:
        ``(image, points, labels)``: uint8 (H, W, 3) RGB; float64 (N, 2) centres (x, y) in
        pixels, N = n_mitoses + n_lookalikes, mitoses first, all inside the image; int64 (N,)
        labels, 1 = mitosis, 0 = look-alike.

    Raises:
        ValueError: on a bad size, mpp or count, or when the objects do not fit.
    """
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least 16x16 pixels, got {size!r}")
    if not (np.isfinite(mpp) and 0.05 <= mpp <= 10.0):
        raise ValueError(f"mpp must be in [0.05, 10] um/px, got {mpp!r}")
    if n_mitoses < 0 or n_lookalikes < 0:
        raise ValueError(f"counts must be >= 0, got {n_mitoses}, {n_lookalikes}")
    rng = np.random.default_rng(seed)
    um = 1.0 / mpp  # pixels per micrometre

    # Eosin: smooth pink stroma, pale lumen-like gaps, fine fibrous grain.
    e_od = 0.28 + 0.30 * _smooth_noise(rng, h, w, 30 * um)
    gaps = _smooth_noise(rng, h, w, 45 * um)
    e_od *= np.clip((0.82 - gaps) * 8.0, 0.12, 1.0)
    e_od += _grain(rng, (h, w), 0.03)
    h_od = 0.04 + 0.04 * _smooth_noise(rng, h, w, 12 * um)

    # Special objects first so that ordinary nuclei can avoid them.
    margin = 7.0 * um
    centres = _place(
        rng,
        n_mitoses + n_lookalikes,
        h,
        w,
        min(margin, min(h, w) / 2 - 1),
        16.0 * um,
        np.zeros((0, 2)),
    )

    # Ordinary nuclei: purple ellipses with grainy chromatin.
    n_nuc = rng.poisson(nuclei_per_mm2 * (h * mpp / 1000.0) * (w * mpp / 1000.0))
    nuc = rng.uniform([0, 0], [w, h], (n_nuc, 2))
    if len(centres):
        d = np.hypot(nuc[:, None, 0] - centres[None, :, 0], nuc[:, None, 1] - centres[None, :, 1])
        nuc = nuc[d.min(axis=1) > 9.0 * um]
    half = int(np.ceil(5.5 * um)) + 2
    radii = rng.uniform(3.0, 5.0, (len(nuc), 2)) * um
    angles = rng.uniform(0, np.pi, len(nuc))
    dens = rng.uniform(0.35, 0.65, len(nuc))
    # a few chromatin textures shared by all nuclei: bounded memory for large scenes
    grains = 1.0 + _grain(rng, (min(len(nuc), 32), 2 * half + 1, 2 * half + 1), 0.18)
    for k, (cx, cy) in enumerate(nuc):
        x0, y0, dx, dy = _local_grid(cx, cy, half)
        c, s = np.cos(angles[k]), np.sin(angles[k])
        u = (dx * c + dy * s) / radii[k, 0]
        v = (-dx * s + dy * c) / radii[k, 1]
        mask = _soft(np.sqrt(u * u + v * v), 0.15)
        _stamp(h_od, mask * (dens[k] * grains[k % len(grains)]), x0, y0)

    # Mitoses: dark clumped chromatin (a band of small blobs, 8-12 um long) in a pale halo.
    half = int(np.ceil(8.0 * um)) + 2
    for cx, cy in centres[:n_mitoses]:
        x0, y0, dx, dy = _local_grid(cx, cy, half)
        length = rng.uniform(8.0, 12.0) * um
        width = rng.uniform(2.5, 4.5) * um
        ang = rng.uniform(0, np.pi)
        k = int(rng.integers(7, 13))
        t = rng.uniform(-0.5, 0.5, k) * length
        n = rng.normal(0.0, 0.25, k) * width
        bx = t * np.cos(ang) - n * np.sin(ang)
        by = t * np.sin(ang) + n * np.cos(ang)
        br = rng.uniform(1.0, 2.0, k) * um
        r2 = (dx[None] - bx[:, None, None]) ** 2 + (dy[None] - by[:, None, None]) ** 2
        blobs = np.exp(-r2 / (2.0 * br[:, None, None] ** 2)).max(axis=0)
        clump = np.clip(blobs * 1.6, 0.0, 1.0) * rng.uniform(1.6, 2.2)
        halo = _soft(np.sqrt(dx * dx + dy * dy) / (7.5 * um), 0.2)
        _stamp(e_od, 1.0 - 0.55 * halo, x0, y0, op=np.multiply)
        _stamp(h_od, clump.astype(np.float32), x0, y0)

    # Look-alikes: smooth dark round bodies with a bright eosinophilic rim.
    half = int(np.ceil(6.0 * um)) + 2
    for cx, cy in centres[n_mitoses:]:
        x0, y0, dx, dy = _local_grid(cx, cy, half)
        rad = rng.uniform(2.5, 4.0) * um
        rr = np.sqrt(dx * dx + dy * dy) / rad
        body = _soft(rr, 0.1) * rng.uniform(1.2, 1.7)
        rim = _soft(rr / 1.5, 0.1) * 0.45
        _stamp(e_od, rim.astype(np.float32), x0, y0, op=np.add)
        _stamp(h_od, body.astype(np.float32), x0, y0)

    np.maximum(e_od, 0.0, out=e_od)
    noise = _grain(rng, (h, w), 2.5)
    image = np.empty((h, w, 3), dtype=np.uint8)
    for c in range(3):  # per channel keeps the temporaries small
        od = h_od * _H_VEC[c] + e_od * _E_VEC[c]
        np.exp(-od, out=od)
        od *= np.float32(255.0)
        od += noise
        np.clip(od, 0, 255, out=od)
        image[..., c] = od
    points = centres.astype(np.float64).reshape(-1, 2)
    labels = np.concatenate([np.ones(n_mitoses), np.zeros(n_lookalikes)]).astype(np.int64)
    return image, points, labels


def _halve(img: np.ndarray) -> np.ndarray:
    """2x2 mean downsampling of an (H, W, C) uint8 image (odd edges dropped)."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    x = img[:h, :w].astype(np.uint16)
    s = x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8)


def synthetic_pyramidal_tiff(
    path: str | Path,
    size: tuple[int, int] = (2048, 2048),
    mpp: float = 0.25,
    *,
    levels: int = 3,
    tile: int = 256,
    n_mitoses: int = 12,
    n_lookalikes: int = 12,
    seed: int = 0,
    compression: str | None = "zlib",
    layout: Literal["subifds", "pages"] = "subifds",
) -> tuple[np.ndarray, np.ndarray]:
    """Write a SYNTHETIC scene as a small tiled pyramidal TIFF (a stand-in whole-slide image).

    Level 0 is :func:`synthetic_scene` at ``size``; each further level halves it (2x2 mean).
    The whole level-0 scene is drawn in memory (about 20 bytes per pixel while drawing), so
    keep ``size`` to a few thousand pixels a side: it is a test fixture, not a slide.
    Every level carries XResolution/YResolution in pixels per centimetre
    (ResolutionUnit = CENTIMETER), so ``mpp = 1e4 / resolution`` recovers the pixel size.

    Args:
        path: output ``.tif``/``.tiff`` path (parent folder must exist).
        size: level-0 (height, width) in pixels.
        mpp: level-0 micrometres per pixel.
        levels: number of pyramid levels (>= 1).
        tile: tile edge in pixels (a multiple of 16).
        n_mitoses, n_lookalikes, seed: as for :func:`synthetic_scene`.
        compression: a tifffile compression name (``"zlib"`` needs no extra codec) or None.
        layout: ``"subifds"`` (reduced levels as SubIFDs of level 0: tifffile's
            ``series[0].levels``) or ``"pages"`` (one top-level tiled page per level, the
            layout OpenSlide's generic-TIFF reader expects).

    Returns:
        ``(points, labels)`` of the scene in level-0 pixels, as :func:`synthetic_scene`.
    """
    import tifffile

    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if tile < 16 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile}")
    if layout not in ("subifds", "pages"):
        raise ValueError(f"layout must be 'subifds' or 'pages', got {layout!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{path.parent}: folder does not exist; create it first")
    image, points, labels = synthetic_scene(size, n_mitoses, n_lookalikes, mpp, seed)
    common = dict(
        tile=(tile, tile),
        photometric="rgb",
        compression=compression,
        resolutionunit="CENTIMETER",
        metadata=None,
    )
    with tifffile.TiffWriter(path) as tif:
        level = image
        for k in range(levels):
            res = 1e4 / (mpp * 2**k)  # pixels per centimetre
            extra = {}
            if k == 0:
                extra["description"] = f"mitodet SYNTHETIC test slide (not real data); mpp={mpp}"
                if layout == "subifds" and levels > 1:
                    extra["subifds"] = levels - 1
            else:
                extra["subfiletype"] = 1  # reduced-resolution image
            tif.write(level, resolution=(res, res), **common, **extra)
            if k + 1 < levels:
                level = _halve(level)
    return points, labels
