"""Visual outputs: detection overlays, TP/FP/FN overlays and heat-maps (paper eq. 9).

Every function takes an image as ``(H, W, 3)`` RGB or ``(H, W)`` grey, ``uint8`` or float in
[0, 1], never modifies it, and returns a new ``(H, W, 3)`` ``uint8`` array. Points are
``(N, 2)`` (x, y) = (column, row) in the image's pixels. :func:`save_image` writes an array
headlessly with Pillow (atomically); nothing here needs a display or matplotlib.

Colours (Okabe & Ito's colour-blind-safe palette) and marker shapes, so the categories do
not rely on colour alone:

* detections / true positives (TP): bluish green ``(0, 158, 115)``, circle;
* false positives (FP): orange ``(230, 159, 0)``, square;
* false negatives (FN, missed ground truth): vermillion ``(213, 94, 0)``, diamond.

:func:`draw_evaluation` draws a legend with these markers and the counts in the top-left
corner.

Heat-map (eq. 9): ``HM = alpha * A + (1 - alpha) * Image`` with ``A`` the activation
min-max normalised to [0, 1], resized bilinearly to the image and colour-mapped with a
jet or viridis look-up table (256 entries, built in numpy).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mitodet.points import as_points
from mitodet.report.outputs import atomic_write_bytes

Color = tuple[int, int, int]

DETECTION_COLOR: Color = (0, 158, 115)
TP_COLOR: Color = (0, 158, 115)
FP_COLOR: Color = (230, 159, 0)
FN_COLOR: Color = (213, 94, 0)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """A new ``(H, W, 3)`` uint8 copy of ``image`` (grey, RGB, RGBA; uint8 or float in [0, 1])."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {np.asarray(image).shape}")
    if a.dtype == np.uint8:
        return a.copy()
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError("image contains non-finite values")
        if a.min() < 0 or a.max() > 1:
            raise ValueError(f"float images must lie in [0, 1], got range [{a.min():g}, {a.max():g}]")
        return np.round(a * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        if a.min() < 0 or a.max() > 255:
            raise ValueError(f"integer images must lie in [0, 255], got range [{a.min()}, {a.max()}]")
        return a.astype(np.uint8)
    raise ValueError(f"unsupported image dtype {a.dtype}")


def _points(points: object) -> np.ndarray:
    return as_points(points, "points")


def _marker(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, shape: str, color: Color, width: int) -> None:
    if shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], outline=color, width=width)
    elif shape == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], outline=color, width=width)
    elif shape == "diamond":
        pts = [(x, y - r), (x + r, y), (x, y + r), (x - r, y), (x, y - r)]
        draw.line(pts, fill=color, width=width, joint="curve")
    else:
        raise ValueError(f"unknown marker shape {shape!r}; use circle, square or diamond")


def draw_detections(
    image: np.ndarray,
    points: np.ndarray,
    scores: np.ndarray | None = None,
    *,
    radius_px: float = 12.0,
    color: Sequence[int] = DETECTION_COLOR,
    width: int = 2,
    shape: str = "circle",
    show_scores: bool = False,
) -> np.ndarray:
    """Draw one marker per detection.

    Args:
        image: the image (not modified).
        points: ``(N, 2)`` (x, y) centres in pixels.
        scores: optional ``(N,)`` scores, written next to each marker when ``show_scores``.
        radius_px: marker radius in pixels (about half a mitotic figure).
        color: marker colour (r, g, b).
        width: line width in pixels.
        shape: ``"circle"``, ``"square"`` or ``"diamond"``.
        show_scores: write the score (two decimals) to the right of each marker.

    Returns:
        A new ``(H, W, 3)`` uint8 array.
    """
    rgb = to_rgb_uint8(image)
    pts = _points(points)
    sc = None
    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(sc) != len(pts):
            raise ValueError(f"{len(pts)} points but {len(sc)} scores")
    col = tuple(int(c) for c in color)
    pil = Image.fromarray(rgb)
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default() if show_scores and sc is not None else None
    for i, (x, y) in enumerate(pts.tolist()):
        _marker(draw, x, y, radius_px, shape, col, width)  # type: ignore[arg-type]
        if font is not None and sc is not None:
            draw.text((x + radius_px + 2, y - radius_px), f"{sc[i]:.2f}", fill=col, font=font)
    return np.asarray(pil, dtype=np.uint8).copy()


HOTSPOT_COLOR = (0, 114, 178)  # Okabe-Ito blue
ATYPICAL_COLOR = (204, 121, 167)  # Okabe-Ito reddish purple: a mitosis called atypical


def draw_box(
    image: np.ndarray, box_xyxy: Sequence[float], label: str = "", color: Sequence[int] = HOTSPOT_COLOR, width: int = 2
) -> np.ndarray:
    """A rectangle (x0, y0, x1, y1 in pixels) with an optional label above its top-left corner,
    on a copy of ``image`` (the hotspot on the overlay)."""
    pil = Image.fromarray(to_rgb_uint8(image))
    draw = ImageDraw.Draw(pil)
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    col = tuple(int(c) for c in color)
    draw.rectangle([x0, y0, x1, y1], outline=col, width=max(1, int(width)))
    if label:
        size = _font_px(pil)
        font = ImageFont.load_default(size=size)
        # above the box, or inside its bottom edge when it starts at the top (the legend's corner)
        ty = y0 - size - 4 if y0 >= size + 4 else y1 - size - 6
        tw = draw.textlength(label, font=font)
        draw.rectangle([x0, ty, x0 + tw + 6, ty + size + 4], fill=(255, 255, 255))
        draw.text((x0 + 3, ty + 1), label, fill=col, font=font)
    return np.asarray(pil, dtype=np.uint8).copy()


def _font_px(pil: Image.Image) -> int:
    """Text size for labels and the legend: readable on the picture at its own size (about
    1.8 % of its shorter side, 14-40 px)."""
    return int(min(40, max(14, round(0.018 * min(pil.size)))))


def _legend(pil: Image.Image, entries: list[tuple[str, str, Color]], width: int) -> None:
    draw = ImageDraw.Draw(pil)
    size = _font_px(pil)
    font = ImageFont.load_default(size=size)
    pad, r, line = size // 3, size // 2, size + size // 2
    text_w = max(int(draw.textlength(t, font=font)) for t, _, _ in entries)
    w_box = pad * 3 + 2 * r + text_w
    h_box = pad * 2 + line * len(entries)
    draw.rectangle([0, 0, w_box, h_box], fill=(255, 255, 255), outline=(0, 0, 0))
    for k, (text, shape, color) in enumerate(entries):
        cy = pad + line * k + line / 2
        _marker(draw, pad + r, cy, r, shape, color, max(1, min(width, 2)))
        draw.text((pad * 2 + 2 * r, cy - size / 2 - 1), text, fill=(0, 0, 0), font=font)


def draw_evaluation(
    image: np.ndarray,
    tp_points: np.ndarray,
    fp_points: np.ndarray,
    fn_points: np.ndarray,
    *,
    radius_px: float = 12.0,
    width: int = 2,
    legend: bool = True,
    atypical_points: np.ndarray | None = None,
) -> np.ndarray:
    """Draw matched (TP), spurious (FP) and missed (FN) mitoses in distinct colours and shapes.

    Args:
        image: the image (not modified).
        tp_points: ``(N_tp, 2)`` true-positive detections (x, y); bluish-green circles.
        fp_points: ``(N_fp, 2)`` false-positive detections; orange squares.
        fn_points: ``(N_fn, 2)`` missed ground-truth points; vermillion diamonds.
        radius_px: marker radius in pixels.
        width: line width in pixels.
        legend: draw a legend (marker, category and count) in the top-left corner.
        atypical_points: detections called atypical (TP or FP): a reddish-purple diamond
            around their marker, and a legend entry (None: no such entry).

    Returns:
        A new ``(H, W, 3)`` uint8 array.
    """
    out = to_rgb_uint8(image)
    groups = [
        (tp_points, "TP", "circle", TP_COLOR),
        (fp_points, "FP", "square", FP_COLOR),
        (fn_points, "FN", "diamond", FN_COLOR),
    ]
    entries = []
    for pts, label, shape, color in groups:
        p = _points(pts)
        out = draw_detections(out, p, radius_px=radius_px, color=color, width=width, shape=shape)
        entries.append((f"{label} {len(p)}", shape, color))
    if atypical_points is not None:
        p = _points(atypical_points)
        out = draw_detections(
            out, p, radius_px=radius_px + 2 * width, color=ATYPICAL_COLOR, width=width, shape="diamond"
        )
        entries.append((f"atypical {len(p)}", "diamond", ATYPICAL_COLOR))
    if legend:
        pil = Image.fromarray(out)
        _legend(pil, entries, width)
        out = np.asarray(pil, dtype=np.uint8).copy()
    return out


def _jet(t: np.ndarray) -> np.ndarray:
    r = np.clip(1.5 - np.abs(4.0 * t - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * t - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * t - 1.0), 0.0, 1.0)
    return np.stack([r, g, b], axis=-1)


# Viridis anchors (matplotlib's values at 0, 1/8, ..., 1), linearly interpolated.
_VIRIDIS_ANCHORS = (
    np.array(
        [
            [68, 1, 84],
            [71, 44, 122],
            [59, 81, 139],
            [44, 113, 142],
            [33, 144, 141],
            [39, 173, 129],
            [92, 200, 99],
            [170, 220, 50],
            [253, 231, 37],
        ],
        dtype=np.float64,
    )
    / 255.0
)


def _viridis(t: np.ndarray) -> np.ndarray:
    xs = np.linspace(0.0, 1.0, len(_VIRIDIS_ANCHORS))
    return np.stack([np.interp(t, xs, _VIRIDIS_ANCHORS[:, c]) for c in range(3)], axis=-1)


def colormap_lut(name: str = "jet") -> np.ndarray:
    """A ``(256, 3)`` uint8 look-up table: ``"jet"`` (blue -> red) or ``"viridis"``."""
    t = np.linspace(0.0, 1.0, 256)
    if name == "jet":
        lut = _jet(t)
    elif name == "viridis":
        lut = _viridis(t)
    else:
        raise ValueError(f"unknown colormap {name!r}; use 'jet' or 'viridis'")
    return np.round(lut * 255.0).astype(np.uint8)


def normalize_activation(activation: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Min-max normalise a 2-D activation to [0, 1] and optionally resize it bilinearly.

    Args:
        activation: ``(h, w)`` float map (e.g. a channel-mean of the vault or a gain layer).
            Non-finite values count as the minimum; a constant map becomes all zeros.
        shape: target ``(H, W)``; None keeps the size.

    Returns:
        ``(H, W)`` float64 array in [0, 1].
    """
    a = np.asarray(activation, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"activation must be a non-empty 2-D (h, w) array, got shape {a.shape}")
    finite = np.isfinite(a)
    if not finite.any():
        raise ValueError("activation has no finite values")
    lo, hi = float(a[finite].min()), float(a[finite].max())
    a = np.where(finite, a, lo)
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if shape is not None and tuple(shape) != a.shape:
        h, w = int(shape[0]), int(shape[1])
        a = np.asarray(
            Image.fromarray(a.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float64
        )
        a = np.clip(a, 0.0, 1.0)
    return a


def heatmap_overlay(image: np.ndarray, activation: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Eq. 9: ``HM = alpha * A + (1 - alpha) * Image``.

    Args:
        image: the image (not modified), ``(H, W[, 3])``.
        activation: ``(h, w)`` activation map of any size and range; it is min-max
            normalised, resized to ``(H, W)`` and colour-mapped to give ``A``.
        alpha: weight of the heat-map in [0, 1] (the paper uses 0.5).
        colormap: ``"jet"`` or ``"viridis"``.

    Returns:
        A new ``(H, W, 3)`` uint8 array, rounded to the nearest integer.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}; the paper uses 0.5")
    rgb = to_rgb_uint8(image)
    norm = normalize_activation(activation, rgb.shape[:2])
    lut = colormap_lut(colormap)
    heat = lut[np.clip(np.round(norm * 255.0), 0, 255).astype(np.int64)].astype(np.float64)
    hm = float(alpha) * heat + (1.0 - float(alpha)) * rgb.astype(np.float64)
    return np.clip(np.round(hm), 0, 255).astype(np.uint8)


def save_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Save an array as an image file (format from the extension, e.g. .png, .jpg), atomically."""
    target = Path(path)
    rgb = to_rgb_uint8(image)
    ext = target.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise ValueError(f"cannot tell the image format from {str(target)!r}; use a .png, .jpg or .tif name")
    buf = io.BytesIO()
    # JPEG at quality 85: with the overlay at 0.5 um/px, an HPF in about 0.4 MB (its PNG: about 8 MB)
    Image.fromarray(rgb).save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return atomic_write_bytes(target, buf.getvalue())


__all__ = [
    "DETECTION_COLOR",
    "TP_COLOR",
    "FP_COLOR",
    "FN_COLOR",
    "to_rgb_uint8",
    "draw_detections",
    "draw_evaluation",
    "colormap_lut",
    "normalize_activation",
    "heatmap_overlay",
    "save_image",
]
