"""Tiling: cores partition the image; detections on seams, corners and edges count once."""

from __future__ import annotations

import numpy as np
import pytest

from mitodet.inference.tiling import (
    Tile,
    assign_to_tiles,
    make_tiles,
    merge_tile_detections,
    owned_mask,
)


def _coverage(tiles: list[Tile], h: int, w: int, box: str) -> np.ndarray:
    cov = np.zeros((h, w), dtype=np.int32)
    for t in tiles:
        x0, y0, x1, y1 = getattr(t, box)
        cov[y0:y1, x0:x1] += 1
    return cov


def test_cores_partition_image_for_many_random_sizes():
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 300, size=2))
        tile = int(rng.integers(2, 130))
        if tile < 16:  # tiny tiles are legal but slow to check on big images
            h, w = min(h, 40), min(w, 40)
        overlap = int(rng.integers(0, tile))
        tiles = make_tiles(h, w, tile, overlap)
        assert np.all(_coverage(tiles, h, w, "core") == 1), (h, w, tile, overlap)
        for t in tiles:
            rx0, ry0, rx1, ry1 = t.read
            cx0, cy0, cx1, cy1 = t.core
            # read contains core, stays in the image, never exceeds tile_size
            assert 0 <= rx0 <= cx0 < cx1 <= rx1 <= w
            assert 0 <= ry0 <= cy0 < cy1 <= ry1 <= h
            assert rx1 - rx0 <= tile and ry1 - ry0 <= tile
            # read = core grown by overlap//2 (left/top) and overlap - overlap//2 (right/bottom), clipped
            lo, hi = overlap // 2, overlap - overlap // 2
            assert (rx0, ry0) == (max(0, cx0 - lo), max(0, cy0 - lo))
            assert (rx1, ry1) == (min(w, cx1 + hi), min(h, cy1 + hi))


def test_interior_read_box_is_exactly_tile_size():
    tiles = make_tiles(1000, 1000, 256, 64)
    interior = [t for t in tiles if t.core[0] > 0 and t.core[1] > 0 and t.core[2] < 1000 and t.core[3] < 1000]
    assert interior
    # cores are near-equal and at most the step (192); interior reads = core + overlap
    for t in interior:
        assert t.read_shape == (t.core[3] - t.core[1] + 64, t.core[2] - t.core[0] + 64)
    exact = make_tiles(192 * 4, 192 * 4, 256, 64)
    assert {t.read_shape for t in exact if 0 < t.row < 3 and 0 < t.col < 3} == {(256, 256)}


def test_small_image_gives_one_tile_covering_everything():
    (t,) = make_tiles(50, 70, 256, 32)
    assert t.core == (0, 0, 70, 50) and t.read == (0, 0, 70, 50)
    assert t.core_in_read == (0, 0, 70, 50)


def _simulate(h: int, w: int, tile: int, overlap: int, objects: np.ndarray):
    """Each tile 'detects' every object whose centre lies in its read box (the worst case
    for duplicates: an object near a seam is seen by up to four tiles)."""
    tiles = make_tiles(h, w, tile, overlap)
    results = []
    for t in tiles:
        rx0, ry0, rx1, ry1 = t.read
        inside = (objects[:, 0] >= rx0) & (objects[:, 0] <= rx1) & (objects[:, 1] >= ry0) & (objects[:, 1] <= ry1)
        # the detector reports read-box coordinates; convert them back
        local = objects[inside] - np.array(t.offset, dtype=float)
        results.append((t, t.to_image(local), np.arange(len(objects))[inside].astype(float)))
    return tiles, merge_tile_detections(results)


def test_objects_on_seams_corners_and_edges_are_counted_exactly_once():
    h, w, tile, overlap = 300, 410, 128, 32
    tiles = make_tiles(h, w, tile, overlap)
    xs = sorted({t.core[0] for t in tiles} | {t.core[2] for t in tiles})  # every column seam + 0 + w
    ys = sorted({t.core[1] for t in tiles} | {t.core[3] for t in tiles})
    pts = []
    for x in xs:
        for y in ys:  # seam x seam = tile corners, plus image corners
            pts.append((x, y))
        pts.append((x, 17.5))  # on a vertical seam / image edge
    for y in ys:
        pts.append((33.25, y))  # on a horizontal seam / image edge
    # last row / column pixels, sub-pixel just before a seam, exactly on the far border
    pts += [(w - 1, h - 1), (w - 0.5, h - 0.5), (w, 5.0), (5.0, h), (0, 0), (xs[1] - 1e-9, ys[1] - 1e-9)]
    objects = np.array(pts, dtype=float)
    objects = np.unique(objects, axis=0)
    tiles, (merged, ids) = _simulate(h, w, tile, overlap, objects)
    # each object survives exactly once: ids are unique and cover all objects
    assert sorted(ids.astype(int).tolist()) == list(range(len(objects)))
    np.testing.assert_array_equal(merged[np.argsort(ids)], objects)
    # and assign_to_tiles agrees with the merge: one owner each
    owner = assign_to_tiles(tiles, objects)
    assert owner.shape == (len(objects),) and owner.min() >= 0


def test_random_objects_counted_once_for_random_tilings():
    rng = np.random.default_rng(1)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(20, 400, size=2))
        tile = int(rng.integers(24, 200))
        overlap = int(rng.integers(0, tile))
        objects = np.column_stack([rng.uniform(0, w, 200), rng.uniform(0, h, 200)])
        # snap a third of them onto integer pixels, where seams lie
        objects[::3] = np.floor(objects[::3])
        _, (merged, ids) = _simulate(h, w, tile, overlap, objects)
        assert sorted(ids.astype(int).tolist()) == list(range(len(objects)))


def test_seam_point_belongs_to_the_right_or_lower_tile():
    tiles = make_tiles(100, 200, 120, 20)  # cols split at x = 100
    left, right = tiles[0], tiles[1]
    assert left.core[2] == right.core[0] == 100
    pts = np.array([[100.0, 10.0], [99.999, 10.0]])
    np.testing.assert_array_equal(owned_mask(left, pts), [False, True])
    np.testing.assert_array_equal(owned_mask(right, pts), [True, False])


def test_border_cores_are_open_outward():
    tiles = make_tiles(100, 100, 64, 16)
    pts = np.array([[-0.3, 50.0], [100.0, 100.0], [50.0, 100.4]])
    owner = assign_to_tiles(tiles, pts)
    assert len(set(owner.tolist())) == 3


def test_empty_inputs():
    tiles = make_tiles(64, 64, 32, 8)
    assert owned_mask(tiles[0], np.zeros((0, 2))).shape == (0,)
    pts, sc = merge_tile_detections([(t, np.zeros((0, 2)), np.zeros(0)) for t in tiles])
    assert pts.shape == (0, 2) and sc.shape == (0,)
    pts, sc = merge_tile_detections([])
    assert pts.shape == (0, 2) and sc.shape == (0,)


def test_overlap_errors_name_the_values():
    with pytest.raises(ValueError, match=r"overlap \(64 px\) must be smaller than tile_size \(64 px\)"):
        make_tiles(100, 100, 64, 64)
    with pytest.raises(ValueError, match=r"overlap \(16 px\) must exceed the object size \(40 px\)"):
        make_tiles(100, 100, 128, 16, min_overlap=40)
    make_tiles(100, 100, 128, 40, min_overlap=40)  # equal is enough to see the object whole


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(height=0, width=10, tile_size=8, overlap=0),
        dict(height=10, width=10, tile_size=0, overlap=0),
        dict(height=10, width=10, tile_size=8, overlap=-1),
        dict(height=10.5, width=10, tile_size=8, overlap=0),
    ],
)
def test_bad_sizes_raise(kwargs):
    with pytest.raises(ValueError):
        make_tiles(**kwargs)


def test_bad_points_and_mismatched_scores_raise():
    (t,) = make_tiles(10, 10, 16, 4)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        owned_mask(t, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2 points but 1 scores"):
        merge_tile_detections([(t, np.zeros((2, 2)), np.zeros(1))])
    with pytest.raises(ValueError, match="tiles is empty"):
        assign_to_tiles([], np.zeros((1, 2)))
