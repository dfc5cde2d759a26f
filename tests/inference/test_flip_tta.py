"""Flip test-time augmentation: merging of the plain and the mirrored pass."""

import numpy as np
import torch

from mitodet.inference.predictor import Detector, _merge_flip
from mitodet.models import build_detector


def _boxes(points, half=5.0):
    p = np.asarray(points, dtype=np.float32).reshape(-1, 2) + 0.5
    return torch.from_numpy(np.concatenate([p - half, p + half], axis=1))


def test_merge_flip_averages_matches_and_halves_singletons():
    width = 100
    plain = (np.array([[10.0, 20.0], [50.0, 50.0]]), np.array([0.9, 0.6]))
    # Mirrored pass (in mirrored coordinates): the first object again, plus a new one.
    flipped = {"boxes": _boxes([[width - 1 - 11.0, 20.0], [width - 1 - 80.0, 30.0]]),
               "scores": torch.tensor([0.7, 0.8])}
    pts, sc = _merge_flip(plain, flipped, width, radius=6.0)
    order = np.argsort(pts[:, 0])
    pts, sc = pts[order], sc[order]
    assert np.allclose(pts, [[10.5, 20.0], [50.0, 50.0], [80.0, 30.0]])
    assert np.allclose(sc, [(0.9 + 0.7) / 2, 0.6 / 2, 0.8 / 2])


def test_detector_with_flip_tta_runs_end_to_end():
    torch.manual_seed(0)
    det = Detector(build_detector("rdlm-cpu"), threshold=0.0, flip_tta=True)
    img = (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)
    out = det.detect_array(img, mpp=0.5)
    assert out.points.shape[1] == 2 and len(out.points) == len(out.scores)
    assert ((out.scores >= 0) & (out.scores <= 1)).all()
    assert (np.diff(out.scores) <= 0).all()


def test_onnx_backend_matches_torch():
    import pytest

    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = build_detector("rdlm-cpu")
    img = (np.random.default_rng(1).random((128, 160, 3)) * 255).astype(np.uint8)
    ref = Detector(model, threshold=0.0).detect_array(img, mpp=0.5)
    fast = Detector(model, threshold=0.0, backend="onnx")
    assert fast.torch_model is model
    out = fast.detect_array(img, mpp=0.5)
    k = min(10, len(ref.scores))
    assert k > 0
    assert np.allclose(out.scores[:k], ref.scores[:k], atol=1e-4)
    assert np.allclose(out.points[:k], ref.points[:k], atol=0.05)
    with pytest.raises(ValueError, match="backend"):
        Detector(model, backend="tensorrt")
