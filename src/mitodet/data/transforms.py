"""Geometric and photometric transforms. Geometric ones move image and points together
and never mutate their inputs.

Coordinates: points are (x, y) = (column, row) with the pixel-centre convention: pixel
(r, c) covers [c - 0.5, c + 0.5) x [r - 0.5, r + 0.5), so an image of width W spans
x in [-0.5, W - 0.5).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# Ruifrok & Johnston (2001) H&E-DAB stain vectors, as in scikit-image's ``rgb2hed``.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
RGB_FROM_HED = RGB_FROM_HED / np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)


def resample(image: np.ndarray, points: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize by ``scale`` (new = old * scale) with antialiasing; points follow.

    Args:
        image: (H, W, 3) uint8.
        points: (N, 2) x, y in pixels.
        scale: > 0, e.g. ``source_mpp / working_mpp``.
    """
    if scale == 1.0:
        return image, points.copy()
    h, w = image.shape[:2]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    sx, sy = nw / w, nh / h
    pts = np.empty_like(points, dtype=np.float64)
    pts[:, 0] = (points[:, 0] + 0.5) * sx - 0.5
    pts[:, 1] = (points[:, 1] + 0.5) * sy - 0.5
    return out, pts


def hflip(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = image.shape[1]
    pts = points.copy()
    pts[:, 0] = w - 1 - pts[:, 0]
    return image[:, ::-1].copy(), pts


def vflip(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = image.shape[0]
    pts = points.copy()
    pts[:, 1] = h - 1 - pts[:, 1]
    return image[::-1].copy(), pts


def rot90(image: np.ndarray, points: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by k * 90 degrees counter-clockwise (as ``np.rot90``)."""
    img, pts = image, points.copy()
    for _ in range(k % 4):
        w = img.shape[1]
        pts = np.stack([pts[:, 1], w - 1 - pts[:, 0]], axis=1) if len(pts) else pts
        img = np.rot90(img)
    return np.ascontiguousarray(img), pts


def hed_jitter(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.05, bias: float = 0.05) -> np.ndarray:
    """H&E stain augmentation in HED optical-density space (Tellez et al. 2018 style).

    Each stain channel c becomes ``hed_c * a_c + b_c`` with a_c ~ U(1 - sigma, 1 + sigma),
    b_c ~ U(-bias, bias), then back to RGB.
    """
    rgb = np.maximum(image.astype(np.float32) / 255.0, 1e-6)
    od = -np.log(rgb)
    hed = od @ HED_FROM_RGB.astype(np.float32)
    a = rng.uniform(1 - sigma, 1 + sigma, size=3).astype(np.float32)
    b = rng.uniform(-bias, bias, size=3).astype(np.float32)
    hed = hed * a + b
    out = np.exp(-(hed @ RGB_FROM_HED.astype(np.float32)))
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def stain_matrix_jitter(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.05) -> np.ndarray:
    """Random stain matrix: unmix with the Ruifrok-Johnston H&E-DAB vectors, remix with each
    stain vector perturbed by N(0, sigma) per RGB component (kept non-negative, unit length).

    Unlike :func:`hed_jitter` (which scales each stain's amount) this changes the stains'
    *colours*, as a different haematoxylin or eosin batch or scanner colour profile does.
    """
    rgb = np.maximum(image.astype(np.float32) / 255.0, 1e-6)
    hed = -np.log(rgb) @ HED_FROM_RGB.astype(np.float32)
    m = np.abs(RGB_FROM_HED + rng.normal(0.0, sigma, size=(3, 3)))
    m = (m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-6)).astype(np.float32)
    out = np.exp(-(hed @ m))
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def hsv_jitter(image: np.ndarray, rng: np.random.Generator, hue: float = 0.03, saturation: float = 0.2) -> np.ndarray:
    """Hue shift by U(-hue, hue) of the colour circle and saturation scale U(1 - s, 1 + s)
    (PIL's HSV conversion)."""
    hsv = np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("HSV")).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(round(rng.uniform(-hue, hue) * 255))) % 256
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - saturation, 1 + saturation), 0, 255)
    return np.asarray(Image.fromarray(hsv.astype(np.uint8), mode="HSV").convert("RGB"))


def fourier_amplitude_mix(
    image: np.ndarray, other: np.ndarray, rng: np.random.Generator, beta: float = 0.1
) -> np.ndarray:
    """Fourier-domain amplitude mixing (FDA, Yang & Soatto 2020; Jahanifar et al.'s MIDOG
    2021 entry): the low-frequency amplitude spectrum of ``image`` (a centred square of side
    ``2 * beta * size``) is blended with ``other``'s by a ratio U(0, 1); the phase (the
    structure) is kept. ``other`` of the same shape, typically from another lab or scanner."""
    if image.shape != other.shape:
        raise ValueError(f"fourier_amplitude_mix needs equal shapes, got {image.shape} and {other.shape}")
    x = image.astype(np.float32)
    f = np.fft.fftshift(np.fft.fft2(x, axes=(0, 1)), axes=(0, 1))
    fo = np.fft.fftshift(np.fft.fft2(other.astype(np.float32), axes=(0, 1)), axes=(0, 1))
    amp, phase = np.abs(f), np.angle(f)
    h, w = x.shape[:2]
    b = max(1, int(min(h, w) * beta))
    cy, cx = h // 2, w // 2
    lam = rng.uniform(0.0, 1.0)
    sl = (slice(cy - b, cy + b + 1), slice(cx - b, cx + b + 1))
    amp[sl] = lam * np.abs(fo[sl]) + (1 - lam) * amp[sl]
    out = np.fft.ifft2(np.fft.ifftshift(amp * np.exp(1j * phase), axes=(0, 1)), axes=(0, 1)).real
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def brightness_contrast(
    image: np.ndarray, rng: np.random.Generator, brightness: float = 0.1, contrast: float = 0.1
) -> np.ndarray:
    x = image.astype(np.float32)
    c = rng.uniform(1 - contrast, 1 + contrast)
    b = rng.uniform(-brightness, brightness) * 255.0
    mean = x.mean()
    return np.clip((x - mean) * c + mean + b, 0, 255).astype(np.uint8)


def gaussian_blur(image: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
