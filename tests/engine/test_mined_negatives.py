"""Hard-negative mining for the detector: the first stage's own candidates away from every
labelled object on label-complete training images become look-alike centres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mitodet.data.records import ImageRecord
from mitodet.engine.rescorer_train import _save_cache, read_candidates
from mitodet.engine.train import TrainConfig, add_mined_negatives


def _rec(name, source, points, labels=None):
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    lab = np.ones(len(pts), np.int64) if labels is None else np.asarray(labels, np.int64)
    return ImageRecord(Path(name), pts, lab, 0.25, "MIDOG21:001" if source == "amibr" else name, source=source)


def test_mined_candidates_join_the_look_alikes_of_label_complete_images(tmp_path):
    crop = _rec("crop.jpg", "amibr", [[64, 64]])
    other = _rec("mitosis_only.jpg", "atnorm", [[64, 64]])  # only its centre is labelled: not label-complete
    # scores descending are not assumed: 0.95 far, 0.9 next to the mitosis (4 um), 0.7 far, 0.6 far, 0.3 far
    pts = np.array([[10, 10], [70, 70], [120, 10], [10, 120], [120, 120]], np.float32)
    sc = np.array([0.95, 0.9, 0.7, 0.6, 0.3], np.float32)
    path = tmp_path / "candidates.npz"
    _save_cache(path, "k", {"crop.jpg": (pts, sc), "mitosis_only.jpg": (pts, sc)})
    assert read_candidates(path)[0] == "k"
    cfg = TrainConfig(mined_negatives=str(path), mined_min_score=0.5, mined_per_image=2)
    out, n = add_mined_negatives([crop, other], cfg)
    assert n == 2
    got = out[0]
    assert got.labels.tolist() == [1, 0, 0]  # the mitosis, then the two best far candidates
    np.testing.assert_allclose(got.points[1:], [[10, 10], [120, 10]])
    assert out[1] is other
    cfg = TrainConfig(mined_negatives=str(path), mined_min_score=0.0, mined_per_image=10)
    assert add_mined_negatives([crop], cfg)[1] == 4  # all but the one 4 um from the mitosis


def test_a_missing_or_foreign_candidates_file_is_a_clear_error(tmp_path):
    crop = _rec("crop.jpg", "amibr", [[64, 64]])
    with pytest.raises(ValueError, match="no such file.*train-rescorer"):
        add_mined_negatives([crop], TrainConfig(mined_negatives=str(tmp_path / "nope.npz")))
    _save_cache(tmp_path / "c.npz", "k", {"elsewhere.jpg": (np.zeros((0, 2), np.float32), np.zeros(0, np.float32))})
    with pytest.raises(ValueError, match="none of the label-complete training images"):
        add_mined_negatives([crop], TrainConfig(mined_negatives=str(tmp_path / "c.npz")))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz: not a candidates file"):
        add_mined_negatives([crop], TrainConfig(mined_negatives=str(tmp_path / "bad.npz")))
    with pytest.raises(ValueError, match="mined_min_score"):
        TrainConfig(mined_min_score=1.5)
