"""Reading inputs for detect: pixel-size rules, the bad-input corpus, pyramidal TIFFs through
tifffile and OpenSlide, bounded thumbnails and tissue detection. No network runs here."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile
from PIL import Image

from mitodet.data.images import ImageReadError
from mitodet.inference.slide import (
    MPP_RANGE,
    ArraySource,
    MissingMppError,
    PixelSize,
    best_level,
    mpp_from_resolution,
    open_image,
    openslide_available,
    read_thumbnail,
    resize_region,
    resolve_mpp,
)
from mitodet.inference.tissue import detect_tissue, otsu_threshold
from mitodet.synthetic import synthetic_pyramidal_tiff, synthetic_scene

needs_openslide = pytest.mark.skipif(not openslide_available(), reason="openslide not installed (wsi extra)")


# ----------------------------------------------------------------------------- pixel size


def test_mpp_from_resolution_units_and_screen_rule():
    assert mpp_from_resolution(40000, "centimeter").mpp == pytest.approx(0.25)
    assert mpp_from_resolution(101600, "inch").mpp == pytest.approx(0.25)
    for dpi in (72, 96, 300, 2400):  # screen / print / flatbed values are not scan resolutions
        ps = mpp_from_resolution(dpi, "inch")
        assert ps.mpp is None and "screen" in ps.note
    assert mpp_from_resolution(1, "none").mpp is None  # ResolutionUnit NONE: no physical size
    # the range edges: 5 um/px is the coarsest accepted
    assert mpp_from_resolution(25400 / MPP_RANGE[1], "inch").mpp == pytest.approx(MPP_RANGE[1])
    assert mpp_from_resolution(25400 / 5.5, "inch").mpp is None


def test_resolve_mpp_override_wins_and_missing_refuses(tmp_path):
    assert resolve_mpp("x.png", PixelSize(0.25, "tag"), 0.5) == (0.5, "--mpp")
    assert resolve_mpp("x.png", PixelSize(0.25, "tag"), None) == (0.25, "tag")
    with pytest.raises(MissingMppError, match=r"x\.png.*--mpp"):
        resolve_mpp("x.png", PixelSize(None, "none", "72 dpi"), None)
    with pytest.raises(ValueError, match="plausible range"):
        resolve_mpp("x.png", PixelSize(None, "none"), 250.0)


@pytest.mark.parametrize("fmt,suffix,mpp", [("PNG", ".png", 0.25), ("JPEG", ".jpg", 0.5), ("BMP", ".bmp", 0.25)])
def test_png_jpeg_dpi_metadata(tmp_path, fmt, suffix, mpp):
    img, _, _ = synthetic_scene((64, 80), mpp=0.5, n_mitoses=0, n_lookalikes=0)
    p = tmp_path / f"f{suffix}"
    Image.fromarray(img).save(p, fmt, dpi=(25400 / mpp, 25400 / mpp))
    with open_image(p) as src:
        assert src.kind == "hpf" and src.shape == (64, 80)
        assert src.pixel_size.mpp == pytest.approx(mpp, rel=1e-3)
    q = tmp_path / f"screen{suffix}"
    Image.fromarray(img).save(q, fmt, dpi=(96, 96))
    with open_image(q) as src, pytest.raises(MissingMppError, match=r"screen\w*\.\w+.*96.*dpi.*--mpp"):
        resolve_mpp(q, src.pixel_size)


def test_rgba_and_grey_inputs_become_rgb(tmp_path):
    img, _, _ = synthetic_scene((64, 80), mpp=0.5, n_mitoses=0, n_lookalikes=0)
    rgba = np.concatenate([img, np.full((64, 80, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png", dpi=(50800, 50800))
    Image.fromarray(img[:, :, 1]).save(tmp_path / "grey.png", dpi=(50800, 50800))
    grey_pyr = np.ascontiguousarray(img[:, :, 1])
    with tifffile.TiffWriter(tmp_path / "grey.tif") as t:
        t.write(grey_pyr, tile=(32, 32), subifds=1, resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
        t.write(grey_pyr[::2, ::2], tile=(32, 32), subfiletype=1)
    with open_image(tmp_path / "rgba.png") as s:
        np.testing.assert_array_equal(s.read_region(0, (0, 0, 80, 64)), img)
    with open_image(tmp_path / "grey.png") as s:
        r = s.read_region(0, (0, 0, 80, 64))
        assert r.shape == (64, 80, 3) and (r[:, :, 0] == img[:, :, 1]).all() and (r[:, :, 2] == img[:, :, 1]).all()
    with open_image(tmp_path / "grey.tif") as s:
        assert s.kind == "wsi" and s.pixel_size.mpp == pytest.approx(0.5)
        r = s.read_region(0, (5, 3, 70, 60))
        assert r.shape == (57, 65, 3) and (r[:, :, 1] == img[3:60, 5:70, 1]).all()


def test_tiff_resolution_tags(tmp_path):
    img, _, _ = synthetic_scene((64, 64), mpp=0.5, n_mitoses=0, n_lookalikes=0)
    tifffile.imwrite(tmp_path / "cm.tif", img, resolution=(1e4 / 0.2455, 1e4 / 0.2455), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "dpi72.tif", img, resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "none.tif", img)
    with open_image(tmp_path / "cm.tif") as s:
        assert s.pixel_size.mpp == pytest.approx(0.2455)
    for name in ("dpi72.tif", "none.tif"):
        with open_image(tmp_path / name) as s, pytest.raises(MissingMppError, match=name):
            resolve_mpp(tmp_path / name, s.pixel_size)


# ----------------------------------------------------------------------------- bad inputs


def test_bad_input_corpus_gives_clear_errors_naming_the_file(tmp_path, dh):
    expected = dh.write_bad_corpus(tmp_path)
    for name, pattern in expected.items():
        path = tmp_path / name
        with pytest.raises((ImageReadError, MissingMppError)) as err:
            with open_image(path) as src:
                resolve_mpp(path, src.pixel_size)
        msg = str(err.value)
        assert str(path) in msg, (name, msg)
        assert re.search(pattern, msg), (name, msg)


def test_sixteen_bit_pyramid_refused(tmp_path):
    img = np.zeros((128, 128, 3), np.uint16)
    with tifffile.TiffWriter(tmp_path / "p16.tif") as t:
        t.write(img, tile=(64, 64), subifds=1, photometric="rgb")
        t.write(img[::2, ::2], tile=(64, 64), subfiletype=1, photometric="rgb")
    with pytest.raises(ImageReadError, match=r"p16\.tif.*uint16"):
        open_image(tmp_path / "p16.tif")


# ----------------------------------------------------------------------------- pyramids


@pytest.mark.parametrize("layout", ["subifds", "pages"])
def test_pyramidal_tiff_through_tifffile(tmp_path, layout):
    p = tmp_path / f"{layout}.tif"
    synthetic_pyramidal_tiff(p, (300, 420), mpp=0.25, levels=3, tile=64, layout=layout, n_mitoses=2, n_lookalikes=2)
    with tifffile.TiffFile(p) as t:
        ref = [lvl.asarray() for lvl in t.series[0].levels]
    with open_image(p) as src:
        assert src.kind == "wsi" and src.reader == "tifffile"
        assert src.pixel_size.mpp == pytest.approx(0.25)
        assert src.level_dimensions == ((420, 300), (210, 150), (105, 75))
        for k, arr in enumerate(ref):
            # an unaligned window crossing tile borders, and one hanging over the edge (white)
            np.testing.assert_array_equal(src.read_region(k, (10, 7, 90, 70)), arr[7:70, 10:90])
            w, h = src.level_dimensions[k]
            r = src.read_region(k, (w - 5, h - 4, w + 6, h + 3))
            np.testing.assert_array_equal(r[:4, :5], arr[h - 4 :, w - 5 :])
            assert (r[4:] == 255).all() and (r[:, 5:] == 255).all()
        assert best_level(src, 2.0) == 1 and best_level(src, 1.9) == 0 and best_level(src, 100) == 2


@needs_openslide
def test_pyramidal_tiff_through_openslide(tmp_path):
    p = tmp_path / "pages.tif"
    synthetic_pyramidal_tiff(p, (300, 420), mpp=0.25, levels=3, tile=64, layout="pages", n_mitoses=2, n_lookalikes=2)
    with tifffile.TiffFile(p) as t:
        ref = [lvl.asarray() for lvl in t.series[0].levels]
    with open_image(p, reader="openslide") as src:
        assert src.reader == "openslide" and src.kind == "wsi"
        assert src.pixel_size.mpp == pytest.approx(0.25)
        assert src.level_dimensions == ((420, 300), (210, 150), (105, 75))
        for k, arr in enumerate(ref):
            np.testing.assert_array_equal(src.read_region(k, (8, 4, 72, 68)), arr[4:68, 8:72])


def test_thumbnail_is_bounded_and_band_reads_match_one_read(tmp_path, dh):
    img = dh.disc_image((700, 900), [(100, 100), (450, 350)], 20, tissue_boxes=[(50, 50, 600, 500)])
    p = dh.write_pyramid(tmp_path / "s.tif", img, 0.5, levels=1, tile=64)  # no pyramid: worst case
    with open_image(p, reader="tifffile") as src:
        reads = []
        orig = src.read_region
        src.read_region = lambda level, box: (reads.append(box), orig(level, box))[1]
        th, d = read_thumbnail(src, max_side=225, chunk_bytes=40_000)
        assert th.shape == (175, 225, 3) and d == pytest.approx((4.0, 4.0))
        assert len(reads) > 3  # read in bands
        assert max((b[2] - b[0]) * (b[3] - b[1]) for b in reads) < 700 * 900 / 3
        one, _ = read_thumbnail(src, max_side=225, chunk_bytes=10**9)
        assert np.abs(th.astype(int) - one).max() <= 1
    ref = np.asarray(Image.fromarray(img).resize((225, 175), Image.Resampling.BOX))
    assert np.abs(th.astype(int) - ref).mean() < 1.0


def test_resize_region_matches_whole_image_resampling():
    img, _, _ = synthetic_scene((301, 333), mpp=0.25, n_mitoses=0, n_lookalikes=0)
    src = ArraySource(img)
    nw, nh = 150, 140
    whole = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR))
    fx, fy = 333 / nw, 301 / nh
    for x0, y0, x1, y1 in [(0, 0, 64, 64), (40, 37, 110, 140), (100, 90, 150, 140)]:
        tile = resize_region(src, 0, (x0 * fx, y0 * fy, x1 * fx, y1 * fy), (x1 - x0, y1 - y0))
        assert np.abs(tile.astype(int) - whole[y0:y1, x0:x1]).max() <= 1


# ----------------------------------------------------------------------------- tissue


def test_otsu_on_two_modes():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.1, 0.02, 1000), rng.normal(0.6, 0.05, 1000)]).clip(0, 1)
    assert 0.2 < otsu_threshold(v) < 0.5
    assert otsu_threshold(np.full(10, 0.3)) == 0.0


def test_tissue_mask_finds_tissue_and_drops_specks(dh):
    from mitodet.inference.predictor import tissue_from_thumbnail

    img = dh.disc_image((400, 600), [], 0, tissue_boxes=[(100, 80, 400, 300)])
    img[350:356, 500:506] = dh.PINK  # a 3 um speck of 'tissue' on the glass: removed
    m = tissue_from_thumbnail(img, 0.5, (400, 600))  # as detect does it: on >= 4 um cells
    assert m.cell == (8.0, 8.0) and m.image_shape == (400, 600)
    inside = np.array([[110.0, 90.0], [250.0, 200.0], [390.0, 290.0]])
    glass = np.array([[50.0, 50.0], [503.0, 353.0], [590.0, 390.0], [250.0, 330.0]])
    assert m.contains(inside).all() and not m.contains(glass).any()
    assert m.contains(np.array([[420.0, 200.0]]), margin_px=32).all()  # 10 um off the edge, 16 um margin
    assert m.area_mm2(0.5) == pytest.approx(300 * 220 * 0.25 / 1e6, rel=0.05)
    assert m.fraction((0, 0, 90, 70)) == 0.0 and m.fraction((150, 100, 300, 250)) == 1.0
    # all-tissue and all-glass fields
    assert detect_tissue(dh.disc_image((100, 100), [], 0), 1.0, (100, 100)).mask.all()
    glass_only = dh.disc_image((100, 100), [], 0, tissue_boxes=[])
    assert not detect_tissue(glass_only, 1.0, (100, 100)).mask.any()
