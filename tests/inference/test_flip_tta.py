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
    # a stand-in network whose answers are known: one box on the brightest pixel, scored 0.9
    # when that pixel is in the left half of its input and 0.5 in the right half; on a
    # right-half input (the mirrored pass here) also a box at (5, 5) scored 0.4
    torch.manual_seed(0)
    model = build_detector("rdlm-cpu").eval()
    width, height = 64, 48

    def network(tensors):
        outs = []
        for t in tensors:
            y, x = divmod(int(t.sum(0).argmax()), t.shape[-1])
            right = x >= t.shape[-1] / 2
            pts, sc = [[x, y]] + ([[5.0, 5.0]] if right else []), [0.5 if right else 0.9] + ([0.4] if right else [])
            outs.append(
                {"boxes": _boxes(pts), "scores": torch.tensor(sc), "labels": torch.ones(len(sc), dtype=torch.int64)}
            )
        return outs

    model.forward = network
    img = np.zeros((height, width, 3), np.uint8)
    img[20, 10] = 255  # the object, in the left half: the mirrored pass sees it at x = 53
    plain_pts, plain_sc = Detector(model, threshold=0.0).predict_working([img])[0]
    assert np.allclose(plain_pts, [[10, 20]]) and np.allclose(plain_sc, [0.9])
    got_pts, got_sc = Detector(model, threshold=0.0, flip_tta=True).predict_working([img])[0]
    order = np.argsort(got_pts[:, 0])
    # the object found by both passes: mirrored back onto (10, 20), scores averaged (0.9 + 0.5) / 2;
    # the box only the mirrored pass gave: mirrored back to (64 - 1 - 5, 5) = (58, 5), half its 0.4
    assert np.allclose(got_pts[order], [[10, 20], [58, 5]], atol=1e-4)
    assert np.allclose(got_sc[order], [0.7, 0.2])
    img = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    del model.forward
    tta = Detector(model, threshold=0.0, flip_tta=True)
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
