"""The tiled detection path, network-free: a blob-finding stand-in for the network checks that
objects on tile seams count once, pyramid levels are chosen and resampled right, reads stay
tile-sized (memory bounded) and background tiles are skipped."""

from __future__ import annotations

import numpy as np
import pytest

from mitodet.inference.slide import open_image, openslide_available
from mitodet.inference.tiling import make_tiles

needs_openslide = pytest.mark.skipif(not openslide_available(), reason="openslide not installed (wsi extra)")


def _seam_discs(h: int, w: int, tile: int, overlap: int) -> np.ndarray:
    """Disc centres (x, y) on every vertical and horizontal core seam, on seam crossings,
    half a pixel either side of a seam, and a few in tile interiors."""
    tiles = make_tiles(h, w, tile, overlap)
    xs = sorted({t.core[2] for t in tiles if t.core[2] < w})
    ys = sorted({t.core[3] for t in tiles if t.core[3] < h})
    pts = []
    for x in xs:
        pts += [(x, 30.0), (x - 0.5, h / 2 + 7), (x + 0.5, h - 40.0)]
    for y in ys:
        pts += [(25.0, y), (w / 2 + 11, y - 0.5), (w - 30.0, y + 0.5)]
    pts += [(x, y) for x in xs for y in ys]  # crossings: four tiles meet
    pts += [(60.0, 60.0), (w - 60.0, h - 60.0)]
    pts = np.asarray(pts, dtype=np.float64)
    # keep discs apart so blobs never merge
    keep = []
    for p in pts:
        if all(np.hypot(*(p - q)) > 30 for q in keep):
            keep.append(p)
    return np.asarray(keep)


def _assert_same_points(found: np.ndarray, truth: np.ndarray, tol: float) -> None:
    assert len(found) == len(truth), f"{len(found)} detections for {len(truth)} objects"
    d = np.hypot(found[:, None, 0] - truth[None, :, 0], found[:, None, 1] - truth[None, :, 1])
    assert np.all(d.min(axis=0) <= tol), d.min(axis=0).max()
    assert len(set(d.argmin(axis=1).tolist())) == len(truth)  # one detection per object


def test_objects_on_seams_are_counted_once_in_an_array(dh):
    det = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    h, w = 400, 520
    truth = _seam_discs(h, w, 128, 40)
    img = dh.disc_image((h, w), truth, radius=6)
    found = det.detect_array(img, 0.5, threshold=0)
    assert found.info["tiles"] == len(make_tiles(h, w, 128, 40)) > 9
    _assert_same_points(found.points, truth, tol=0.01)
    assert found.image_shape == (h, w) and found.tissue is None


@pytest.mark.parametrize("reader", ["tifffile", pytest.param("openslide", marks=needs_openslide)])
def test_seams_through_a_pyramidal_tiff(tmp_path, dh, reader):
    """Level 0 at 0.25 um/px, level 1 at 0.5 = the working mpp: level 1 is read, no resampling."""
    det = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    h, w = 360, 440  # working grid
    truth_w = _seam_discs(h, w, 128, 40)
    truth0 = (truth_w + 0.5) * 2 - 0.5  # the same places in level-0 pixels (pixel-centre rule)
    img = dh.disc_image((2 * h, 2 * w), truth0, radius=12)
    p = dh.write_pyramid(tmp_path / "slide.tif", img, 0.25, levels=3, tile=64, layout="pages")
    with open_image(p, reader=reader) as src:
        found = det.detect_source(src, 0.25, threshold=0, tissue="off")
    assert found.info["level"] == 1 and found.info["level_mpp"] == pytest.approx(0.5)
    _assert_same_points(found.points, truth0, tol=1.0)


def test_level_choice_not_coarser_than_working_and_resampling(tmp_path, dh):
    """Levels at 0.2 / 0.4 / 0.8 um/px, working 0.5: level 1 (0.4) is read and resampled."""
    det = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    truth = _seam_discs(300, 350, 128, 40) * 2.5  # level-0 px at 0.2 um/px
    img = dh.disc_image((750, 875), truth, radius=15)
    p = dh.write_pyramid(tmp_path / "s.tif", img, 0.2, levels=3, tile=64)
    found = det.detect_path(p, threshold=0, tissue="off", reader="tifffile")
    assert found.info["level"] == 1 and found.info["level_mpp"] == pytest.approx(0.4, rel=0.01)
    assert found.info["working_shape"] == [300, 350]
    _assert_same_points(found.points, truth, tol=2.5)  # one working pixel


def test_reads_stay_tile_sized_on_a_slide_without_pyramid(tmp_path, dh):
    """Memory bound: no read ever covers more than one tile (plus the resampling margin)."""
    det = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    truth = np.array([[200.0, 300.0], [900.0, 700.0]])
    img = dh.disc_image((1000, 1200), truth, radius=12)
    p = dh.write_pyramid(tmp_path / "flat.tif", img, 0.25, levels=1, tile=64)
    with open_image(p, reader="tifffile") as src:
        areas = []
        orig = src.read_region
        src.read_region = lambda level, box: (areas.append((box[2] - box[0]) * (box[3] - box[1])), orig(level, box))[1]
        found = det.detect_source(src, 0.25, threshold=0, tissue="off")
    side = 128 * 2 + 2 * (2 + 2)  # tile at 2 level px per working px + margin
    assert max(areas) <= side * side < 1000 * 1200 / 10
    _assert_same_points(found.points, truth, tol=1.0)


@pytest.mark.parametrize("reader", ["tifffile", pytest.param("openslide", marks=needs_openslide)])
def test_background_tiles_are_skipped_and_off_tissue_blobs_dropped(tmp_path, dh, reader):
    det = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    on_tissue = np.array([[150.0, 150.0], [300.0, 220.0], [380.0, 120.0]])
    # dark specks on glass: two in background tiles, one 40 um off the tissue edge (x = 416)
    # but in a tile that holds tissue, so it is run and then dropped
    dust = np.array([[250.0, 620.0], [900.0, 650.0], [496.0, 150.0]])
    img = dh.disc_image((720, 1000), np.concatenate([on_tissue, dust]), radius=6, tissue_boxes=[(60, 60, 416, 300)])
    p = dh.write_pyramid(tmp_path / "t.tif", img, 0.5, levels=2, tile=64)
    found = det.detect_path(p, threshold=0, reader=reader)  # a slide: tissue detection is on by default
    assert found.info["source"]["reader"] == reader
    assert found.tissue is not None
    assert found.info["tiles_skipped"] > found.info["tiles"] / 2
    assert len(det.crop_shapes) == found.info["tiles_run"]
    _assert_same_points(found.points, on_tissue, tol=0.5)
    assert found.info["n_off_tissue"] == 1
    assert found.tissue.area_mm2(0.5) == pytest.approx(356 * 240 * 0.25 / 1e6, rel=0.08)
    # the same image with tissue detection off: every tile runs and every blob is found
    det2 = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    all_found = det2.detect_path(p, threshold=0, tissue="off", reader=reader)
    assert all_found.info["tiles_skipped"] == 0 and len(all_found) == 6
