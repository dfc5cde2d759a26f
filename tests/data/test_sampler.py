"""The mosaic sampler: no centre bias, no grid, labels follow pixels, slide-disjoint splits."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitodet.data.records import ImageRecord
from mitodet.data.sampler import (
    MosaicDataset,
    MosaicSampler,
    SamplerConfig,
    Source,
    boxes_to_points,
    load_sources,
    points_to_boxes,
    split_by_slide,
)


def centred_patches(n=60, size=64, seed=0):
    """Patch-set-like sources: one dark 'object' exactly at the centre of every patch."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.integers(180, 230, (size, size, 3), dtype=np.uint8)
        c = (size - 1) / 2
        img[int(c) - 3 : int(c) + 5, int(c) - 3 : int(c) + 5] = 20
        label = 1 if i % 3 else 0
        out.append(Source(img, np.array([[c, c]]), np.array([label]), f"s{i % 7}", f"p{i}"))
    return out


def test_box_centres_spread_uniformly_over_the_crop():
    """Every source puts its object at the centre; sampled crops must not."""
    cfg = SamplerConfig(crop_px=96)
    s = MosaicSampler(centred_patches(), cfg, box_px=20, seed=0)
    pts = np.concatenate([s.sample(0, i)[1] for i in range(600)])
    assert len(pts) > 600
    # Coarse uniformity: 4x4 grid of cells, every cell gets a fair share.
    hist, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=4, range=[[-0.5, 95.5], [-0.5, 95.5]])
    frac = hist / hist.sum()
    assert frac.min() > 0.25 / 16 and frac.max() < 2.5 / 16, frac
    # Centre bias: the fraction in the central quarter area is about a quarter.
    central = (np.abs(pts - 47.5) < 24).all(axis=1).mean()
    assert 0.15 < central < 0.4
    # No grid: positions modulo the patch size are spread out, not concentrated.
    mod = np.histogram(np.mod(pts[:, 0], 64), bins=8, range=(0, 64))[0]
    assert mod.min() > 0.3 * mod.mean()


def test_labels_follow_the_object_pixels():
    cfg = SamplerConfig(crop_px=96, augment=True)
    s = MosaicSampler(centred_patches(), cfg, box_px=20, seed=1)
    for i in range(40):
        img, pts = s.sample(0, i)
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        for x, y in pts:
            xi, yi = int(round(x)), int(round(y))
            patch = img[max(0, yi - 2) : yi + 3, max(0, xi - 2) : xi + 3].astype(int)
            assert patch.mean() < 140, (i, x, y)  # a labelled point sits on a dark object


def test_deterministic_per_epoch_and_index():
    s = MosaicSampler(centred_patches(), SamplerConfig(crop_px=64), box_px=20, seed=3)
    a, b = s.sample(2, 5), s.sample(2, 5)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert not (s.sample(3, 5)[0] == a[0]).all()


def test_dataset_targets_and_box_round_trip():
    ds = MosaicDataset(MosaicSampler(centred_patches(), SamplerConfig(crop_px=64), box_px=20), length=4)
    img, tgt = ds[0]
    assert img.shape == (3, 64, 64) and 0 <= img.min() and img.max() <= 1
    assert tgt["boxes"].shape[1] == 4 and (tgt["labels"] == 1).all()
    pts = np.array([[10.0, 20.0], [30.5, 40.25]])
    assert np.allclose(boxes_to_points(points_to_boxes(pts, 12, (64, 64))), pts)


def test_split_is_slide_disjoint_and_deterministic():
    recs = [
        ImageRecord(Path(f"i{i}.png"), np.zeros((0, 2)), np.zeros(0), 0.25, slide=f"slide{i % 23}") for i in range(300)
    ]
    tr, va = split_by_slide(recs, 0.2, seed=0)
    assert {r.slide for r in tr}.isdisjoint({r.slide for r in va})
    assert len(tr) + len(va) == 300 and 0 < len(va) < 150
    tr2, va2 = split_by_slide(list(reversed(recs)), 0.2, seed=0)
    assert {r.slide for r in va2} == {r.slide for r in va}
    with pytest.raises(ValueError, match="1.5"):
        split_by_slide(recs, 1.5)


def test_load_sources_resamples_to_working_mpp(tmp_path):
    img = np.zeros((80, 80, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    rec = ImageRecord(tmp_path / "a.png", np.array([[39.5, 39.5]]), np.array([1]), 0.25, slide="a")
    (src,) = load_sources([rec], mpp=0.5)
    assert src.image.shape == (40, 40, 3)
    assert src.points[0] == pytest.approx([19.5, 19.5])


def test_bad_sampler_config():
    with pytest.raises(ValueError, match="crop_px"):
        SamplerConfig(crop_px=8)
    with pytest.raises(ValueError, match="source image"):
        MosaicSampler([], SamplerConfig(), 20)


@pytest.mark.data
def test_shared_spec_reads_and_samples(shared_data, monkeypatch):
    monkeypatch.setenv("MITODET_DATA", str(shared_data))
    from mitodet.data.spec import load_spec, read_sources

    spec = load_spec("shared")
    recs = read_sources(spec.sources, spec.base)
    assert len(recs) == 3720 + 243 + 60  # amibr, tupac16, h03 (icpr12 withdrawn)
    assert not [r for r in recs if "icpr12" in r.source]
    tr, va = split_by_slide([r for r in recs if not r.extra.get("position_unknown")], spec.val_fraction)
    assert {r.slide for r in tr}.isdisjoint({r.slide for r in va})
