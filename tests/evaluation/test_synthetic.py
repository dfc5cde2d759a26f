"""The SYNTHETIC scene generator (test fixture only, never real data) and its pyramidal TIFF."""

from __future__ import annotations

import numpy as np
import pytest

from mitodet.synthetic import synthetic_pyramidal_tiff, synthetic_scene


def test_shapes_dtypes_and_points_inside():
    img, pts, lab = synthetic_scene((300, 400), n_mitoses=4, n_lookalikes=2, mpp=0.25, seed=1)
    assert img.shape == (300, 400, 3) and img.dtype == np.uint8
    assert pts.shape == (6, 2) and pts.dtype == np.float64
    assert lab.tolist() == [1, 1, 1, 1, 0, 0] and lab.dtype == np.int64
    assert np.all(pts[:, 0] >= 0) and np.all(pts[:, 0] < 400)  # x = column
    assert np.all(pts[:, 1] >= 0) and np.all(pts[:, 1] < 300)  # y = row
    img, pts, lab = synthetic_scene((64, 64), n_mitoses=0, n_lookalikes=0, seed=2)
    assert pts.shape == (0, 2) and lab.shape == (0,)


def test_deterministic_by_seed():
    a = synthetic_scene((256, 256), 3, 3, 0.25, seed=7)
    b = synthetic_scene((256, 256), 3, 3, 0.25, seed=7)
    c = synthetic_scene((256, 256), 3, 3, 0.25, seed=8)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


def test_objects_are_drawn_where_the_points_say():
    # Mitoses are dark and compact: the 2 um disc around each centre is much darker than
    # the scene on average; and the figures scale with mpp (physical size).
    img, pts, lab = synthetic_scene((512, 512), n_mitoses=4, n_lookalikes=4, mpp=0.25, seed=3)
    gray = img.astype(float).mean(axis=2)
    yy, xx = np.mgrid[:512, :512]
    for (x, y), label in zip(pts, lab):
        disc = (xx - x) ** 2 + (yy - y) ** 2 <= (2.0 / 0.25) ** 2
        assert gray[disc].mean() < gray.mean() - 40, (x, y, label)


def test_bad_arguments():
    with pytest.raises(ValueError, match="fewer mitoses"):
        synthetic_scene((64, 64), n_mitoses=30, n_lookalikes=30, mpp=0.25)
    with pytest.raises(ValueError, match="at least 16x16"):
        synthetic_scene((8, 8))
    with pytest.raises(ValueError, match="mpp"):
        synthetic_scene((64, 64), mpp=0.0)


@pytest.mark.parametrize("layout", ["subifds", "pages"])
def test_pyramidal_tiff_is_readable_with_the_right_mpp(tmp_path, layout):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "synthetic.tif"
    pts, lab = synthetic_pyramidal_tiff(
        path,
        (600, 520),
        mpp=0.25,
        levels=3,
        tile=128,
        n_mitoses=3,
        n_lookalikes=2,
        seed=4,
        layout=layout,
    )
    img0, pts0, lab0 = synthetic_scene((600, 520), 3, 2, 0.25, seed=4)
    assert np.array_equal(pts, pts0) and np.array_equal(lab, lab0)
    with tifffile.TiffFile(path) as tf:
        if layout == "subifds":
            levels = [lvl.pages[0] for lvl in tf.series[0].levels]
        else:
            levels = list(tf.pages)
        assert [p.shape for p in levels] == [(600, 520, 3), (300, 260, 3), (150, 130, 3)]
        for k, page in enumerate(levels):
            assert page.is_tiled and page.tilewidth == 128
            assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            num, den = page.tags["XResolution"].value
            assert 1e4 / (num / den) == pytest.approx(0.25 * 2**k, rel=1e-6)
        assert np.array_equal(levels[0].asarray(), img0)  # lossless level 0
        assert "SYNTHETIC" in levels[0].description
