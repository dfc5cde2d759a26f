"""Overlays: colours at drawn positions, shapes/dtypes, eq. 9 blend arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mitodet.report.viz import (
    DETECTION_COLOR,
    FN_COLOR,
    FP_COLOR,
    TP_COLOR,
    colormap_lut,
    draw_detections,
    draw_evaluation,
    heatmap_overlay,
    normalize_activation,
    save_image,
    to_rgb_uint8,
)


def _near(arr, x, y, color, r=1):
    patch = arr[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].reshape(-1, 3)
    return bool(np.any(np.all(patch == np.array(color, dtype=np.uint8), axis=1)))


def test_draw_detections_marks_the_ring_not_the_centre():
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    out = draw_detections(img, np.array([[32.0, 20.0]]), radius_px=10, width=2)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert _near(out, 42, 20, DETECTION_COLOR)  # right of the circle
    assert _near(out, 32, 10, DETECTION_COLOR)  # top
    assert tuple(out[20, 32]) == (0, 0, 0)  # centre left visible
    assert img.max() == 0  # input untouched
    assert draw_detections(img, np.zeros((0, 2))).tolist() == img.tolist()


def test_draw_detections_colour_shape_and_scores():
    img = np.full((40, 80), 128, dtype=np.uint8)  # grey input -> RGB output
    out = draw_detections(img, [[20, 20]], [0.87], radius_px=6, color=(255, 0, 0), shape="square", show_scores=True)
    assert out.shape == (40, 80, 3)
    assert tuple(out[20, 26]) == (255, 0, 0) and tuple(out[14, 20]) == (255, 0, 0)
    text = out[:, 28:].astype(int)  # the score text (anti-aliased): reddish pixels right of the marker
    assert np.any((text[..., 0] > 160) & (text[..., 1] < 100))
    with pytest.raises(ValueError, match="1 points but 2 scores"):
        draw_detections(img, [[1, 1]], [0.1, 0.2])
    with pytest.raises(ValueError, match="marker shape"):
        draw_detections(img, [[1, 1]], shape="star")


def test_evaluation_colours_are_distinct_and_at_their_points():
    assert len({TP_COLOR, FP_COLOR, FN_COLOR}) == 3
    img = np.full((80, 160, 3), 255, dtype=np.uint8)
    tp, fp, fn = np.array([[30.0, 50.0]]), np.array([[80.0, 50.0]]), np.array([[130.0, 50.0]])
    out = draw_evaluation(img, tp, fp, fn, radius_px=10, legend=False)
    assert _near(out, 40, 50, TP_COLOR)  # circle edge
    assert _near(out, 90, 50, FP_COLOR) and _near(out, 90, 41, FP_COLOR)  # square side and corner
    assert _near(out, 140, 50, FN_COLOR) and _near(out, 130, 40, FN_COLOR)  # diamond vertices
    assert not _near(out, 40, 50, FP_COLOR) and not _near(out, 90, 50, TP_COLOR)
    assert tuple(out[5, 5]) == (255, 255, 255)  # no legend


def test_evaluation_rings_the_detections_called_atypical_and_names_them_in_the_legend():
    from mitodet.report.viz import ATYPICAL_COLOR

    img = np.full((160, 200, 3), 200, dtype=np.uint8)
    tp, fp, fn = np.array([[80.0, 120.0]]), np.array([[150.0, 120.0]]), np.zeros((0, 2))
    plain = draw_evaluation(img, tp, fp, fn, radius_px=10, width=2)
    assert not np.any(np.all(plain == ATYPICAL_COLOR, axis=-1))
    out = draw_evaluation(img, tp, fp, fn, radius_px=10, width=2, atypical_points=tp)
    assert _near(out, 94, 120, ATYPICAL_COLOR) and _near(out, 80, 106, ATYPICAL_COLOR)  # the diamond around the TP
    assert not _near(out, 164, 120, ATYPICAL_COLOR)  # the FP is not called atypical
    assert np.any(np.all(out[:95, :90] == ATYPICAL_COLOR, axis=-1))  # its legend entry (4th row)


def test_evaluation_legend_is_drawn_top_left():
    img = np.full((100, 200, 3), 200, dtype=np.uint8)
    out = draw_evaluation(img, [[150, 80]], np.zeros((0, 2)), [[100, 80]], legend=True)
    corner = out[:50, :60]
    assert np.any(np.all(corner == (255, 255, 255), axis=-1))  # legend background
    assert np.any(np.all(corner == (0, 0, 0), axis=-1))  # frame/text
    for c in (TP_COLOR, FP_COLOR, FN_COLOR):
        assert np.any(np.all(corner == c, axis=-1))  # each marker in the legend
    assert tuple(out[90, 190]) == (200, 200, 200)


def test_colormap_luts():
    jet = colormap_lut("jet")
    assert jet.shape == (256, 3) and jet.dtype == np.uint8
    assert tuple(jet[0]) == (0, 0, 128) and tuple(jet[255]) == (128, 0, 0)
    assert jet[128, 1] == 255  # green peak in the middle
    vir = colormap_lut("viridis")
    assert tuple(vir[0]) == (68, 1, 84) and tuple(vir[255]) == (253, 231, 37)
    with pytest.raises(ValueError, match="colormap"):
        colormap_lut("rainbow")


def test_heatmap_is_eq9_blend():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    act = rng.normal(size=(16, 24)) * 7 + 3  # any range; same size -> no resize
    alpha = 0.3
    out = heatmap_overlay(img, act, alpha=alpha)
    a = (act - act.min()) / (act.max() - act.min())
    heat = colormap_lut("jet")[np.round(a * 255).astype(int)].astype(float)
    expected = np.clip(np.round(alpha * heat + (1 - alpha) * img), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(heatmap_overlay(img, act, alpha=0.0), img)
    np.testing.assert_array_equal(heatmap_overlay(img, act, alpha=1.0), heat.astype(np.uint8))


def test_heatmap_resizes_and_handles_constant_maps():
    img = np.full((40, 60, 3), 100, dtype=np.uint8)
    out = heatmap_overlay(img, np.array([[0.0, 1.0], [2.0, 3.0]]), alpha=0.5)
    assert out.shape == (40, 60, 3)
    # min at the top-left, max at the bottom-right after bilinear resize
    jet = colormap_lut("jet").astype(float)
    np.testing.assert_array_equal(out[0, 0], np.round(0.5 * jet[0] + 50).astype(np.uint8))
    np.testing.assert_array_equal(out[-1, -1], np.round(0.5 * jet[255] + 50).astype(np.uint8))
    flat = heatmap_overlay(img, np.full((5, 5), 7.0))
    assert np.all(flat == np.round(0.5 * jet[0] + 50).astype(np.uint8))
    n = normalize_activation(np.array([[np.nan, 1.0], [2.0, 3.0]]), (4, 4))
    assert n.shape == (4, 4) and n.min() >= 0 and n.max() <= 1
    with pytest.raises(ValueError, match="alpha"):
        heatmap_overlay(img, np.ones((2, 2)), alpha=1.5)
    with pytest.raises(ValueError, match="2-D"):
        heatmap_overlay(img, np.ones((2, 2, 2)))


def test_to_rgb_and_save_image(tmp_path):
    f = np.linspace(0, 1, 12).reshape(3, 4)
    rgb = to_rgb_uint8(f)
    assert rgb.shape == (3, 4, 3) and rgb[0, 0, 0] == 0 and rgb[-1, -1, 2] == 255
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_rgb_uint8(f * 2)
    img = np.random.default_rng(0).integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    p = save_image(tmp_path / "o.png", img)
    with Image.open(p) as im:
        np.testing.assert_array_equal(np.asarray(im), img)
    assert [x.name for x in tmp_path.iterdir()] == ["o.png"]
    with pytest.raises(ValueError, match="format"):
        save_image(tmp_path / "o.unknown", img)
