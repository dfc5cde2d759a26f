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
    flipped = {
        "boxes": _boxes([[width - 1 - 11.0, 20.0], [width - 1 - 80.0, 30.0]]),
        "scores": torch.tensor([0.7, 0.8]),
    }
    pts, sc = _merge_flip(plain, flipped, width, radius=6.0)
    order = np.argsort(pts[:, 0])
    pts, sc = pts[order], sc[order]
    assert np.allclose(pts, [[10.5, 20.0], [50.0, 50.0], [80.0, 30.0]])
    assert np.allclose(sc, [(0.9 + 0.7) / 2, 0.6 / 2, 0.8 / 2])


def test_detector_with_flip_tta_merges_the_plain_and_the_mirrored_pass():
    torch.manual_seed(0)
    model = build_detector("rdlm-cpu").eval()
    img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    plain = Detector(model, threshold=0.0)
    tta = Detector(model, threshold=0.0, flip_tta=True)
    # what the TTA pass must be: the plain pass merged with the network's output on the mirror image
    p_plain = plain.predict_working([img])[0]
    with torch.inference_mode():
        mirrored = model([torch.tensor(img).permute(2, 0, 1).float().div(255.0).flip(-1)])[0]
    assert len(p_plain[1]) > 0 and len(mirrored["scores"]) > 0, "a random model still proposes candidates"
    want_pts, want_sc = _merge_flip(p_plain, mirrored, img.shape[1], plain.config.box_size_px / 2)
    got_pts, got_sc = tta.predict_working([img])[0]
    a, b = np.lexsort((want_pts[:, 1], want_pts[:, 0])), np.lexsort((got_pts[:, 1], got_pts[:, 0]))
    assert np.allclose(got_pts[b], want_pts[a], atol=1e-4) and np.allclose(got_sc[b], want_sc[a], atol=1e-6)
    assert not (len(got_sc) == len(p_plain[1]) and np.allclose(np.sort(got_sc), np.sort(p_plain[1])))
    # and through the public path: sorted, in [0, 1]
    out = tta.detect_array(img, mpp=0.5)
    assert len(out.scores) > 0 and ((out.scores >= 0) & (out.scores <= 1)).all()
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
