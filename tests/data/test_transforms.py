"""Geometric transforms move image and points together; photometric ones keep shape."""

import numpy as np
import pytest

from mitodet.data import transforms as T


def _dot_image(h=20, w=30, x=7, y=3):
    img = np.zeros((h, w, 3), np.uint8)
    img[y, x] = 255
    return img, np.array([[x, y]], dtype=np.float64)


@pytest.mark.parametrize(
    "fn",
    [T.hflip, T.vflip, lambda i, p: T.rot90(i, p, 1), lambda i, p: T.rot90(i, p, 3), lambda i, p: T.rot90(i, p, 2)],
)
def test_geometric_transforms_follow_the_pixel(fn):
    img, pts = _dot_image()
    img0, pts0 = img.copy(), pts.copy()
    out, opts = fn(img, pts)
    y, x = np.argwhere(out[:, :, 0] == 255)[0]
    assert (opts[0] == [x, y]).all()
    assert (img == img0).all() and (pts == pts0).all()  # inputs never mutated


def test_resample_keeps_pixel_centres():
    img, pts = _dot_image(40, 40, 10, 30)
    out, opts = T.resample(img, pts, 0.5)
    assert out.shape == (20, 20, 3)
    assert opts[0] == pytest.approx([4.75, 14.75])  # (10 + .5) * .5 - .5
    same, spts = T.resample(img, pts, 1.0)
    assert same is img and (spts == pts).all() and spts is not pts


def test_hed_jitter_identity_and_range():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).integers(30, 250, (16, 16, 3), dtype=np.uint8)
    same = T.hed_jitter(img, rng, sigma=0.0, bias=0.0)
    assert np.abs(same.astype(int) - img).max() <= 1  # HED round trip is lossless
    out = T.hed_jitter(img, rng, sigma=0.2, bias=0.1)
    assert out.dtype == np.uint8 and out.shape == img.shape and (out != img).any()


def test_stain_matrix_jitter_identity_and_colour_change():
    img = np.random.default_rng(1).integers(30, 250, (16, 16, 3), dtype=np.uint8)
    same = T.stain_matrix_jitter(img, np.random.default_rng(0), sigma=0.0)
    assert np.abs(same.astype(int) - img).max() <= 1  # the unperturbed matrix round-trips
    out = T.stain_matrix_jitter(img, np.random.default_rng(0), sigma=0.2)
    assert out.dtype == np.uint8 and out.shape == img.shape and np.abs(out.astype(int) - img).mean() > 2


def test_hsv_jitter_shifts_hue_only_within_bounds():
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    img[..., 0] = 200  # pure red: hue 0
    out = T.hsv_jitter(img, np.random.default_rng(0), hue=0.1, saturation=0.0)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out != img).any()  # a hue shift moves a saturated colour off red
    assert abs(int(out[..., :].max()) - 200) <= 2  # value (brightness) kept


def test_fourier_amplitude_mix_keeps_structure_takes_colour():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.abs(T.fourier_amplitude_mix(img, img, rng).astype(int) - img).max() <= 1  # own spectrum: identity
    flat = np.full_like(img, (220, 120, 180))
    mixed = T.fourier_amplitude_mix(img, flat, np.random.default_rng(3), beta=0.1)
    # the mean colour (the DC amplitude) moves towards the other image's ...
    assert np.abs(mixed.mean((0, 1)) - flat.mean((0, 1))).sum() < np.abs(img.mean((0, 1)) - flat.mean((0, 1))).sum()
    # ... while the high-frequency structure (the phase) stays: strongly correlated with the input
    d_in = np.diff(img.astype(float), axis=1).ravel()
    d_out = np.diff(mixed.astype(float), axis=1).ravel()
    assert np.corrcoef(d_in, d_out)[0, 1] > 0.8
    with pytest.raises(ValueError, match="equal shapes"):
        T.fourier_amplitude_mix(img, img[:8], rng)
