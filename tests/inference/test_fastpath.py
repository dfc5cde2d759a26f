"""The opt-in inference speed-ups give the plain path's results (within float rounding)."""

from __future__ import annotations

import pytest
import torch

from mitodet.inference.fastpath import backbone_parity, set_test_proposals, to_channels_last, with_onnx_backbone
from mitodet.models import build_detector


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_detector("rdlm-cpu").eval()


def _image(seed: int = 1, size: int = 160) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, size, size, generator=g)


def test_set_test_proposals_changes_only_testing_counts():
    m = build_detector("rdlm-cpu")
    train_pre, train_post = m.rpn._pre_nms_top_n["training"], m.rpn._post_nms_top_n["training"]
    set_test_proposals(m, 300, 50)
    assert m.rpn._pre_nms_top_n == {"training": train_pre, "testing": 300}
    assert m.rpn._post_nms_top_n == {"training": train_post, "testing": 50}
    set_test_proposals(m, post_nms_top_n=20)  # None leaves the other unchanged
    assert (m.rpn._pre_nms_top_n["testing"], m.rpn._post_nms_top_n["testing"]) == (300, 20)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "100"])
def test_set_test_proposals_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="positive integer"):
        set_test_proposals(build_detector("rdlm-cpu"), pre_nms_top_n=bad)


def test_set_test_proposals_needs_an_rpn():
    with pytest.raises(ValueError, match="no rpn"):
        set_test_proposals(torch.nn.Linear(2, 2), 10, 10)


def test_fewer_proposals_rescore_nothing(model):
    # The RoI head scores each proposal on its own, so a box that survives with fewer
    # proposals keeps its score exactly; fewer proposals only drop candidates (and a box
    # that the final NMS suppressed may then survive, so "same detections" needs the check
    # that benchmarks/speed.py runs on real tiles).
    import copy

    x = [_image()]
    with torch.inference_mode():
        full = model(x)[0]
        few = set_test_proposals(copy.deepcopy(model), 600, 20)(x)[0]
    assert 0 < len(few["scores"]) < len(full["scores"])
    matched = 0
    for box, score in zip(few["boxes"], few["scores"]):
        d = (full["boxes"] - box).abs().max(dim=1).values
        if d.min() < 1e-4:
            matched += 1
            assert abs(float(full["scores"][d.argmin()] - score)) < 1e-6
    assert matched >= len(few["scores"]) // 2


def test_channels_last_same_detections_and_state_dict(model):
    import copy

    x = [_image(2)]
    fast = to_channels_last(copy.deepcopy(model))
    to_channels_last(fast)  # idempotent: one hook only
    assert list(fast.state_dict()) == list(model.state_dict())
    with torch.inference_mode():
        a, b = model(x)[0], fast(x)[0]
    assert torch.equal(a["labels"], b["labels"])
    torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a["boxes"], b["boxes"], rtol=1e-4, atol=1e-3)


def test_onnx_backbone_parity_and_original_untouched(model, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    backbone = model.backbone
    fast = with_onnx_backbone(model, tmp_path / "bb.onnx", threads=1)
    assert model.backbone is backbone  # the original keeps its torch backbone
    assert fast.rpn is model.rpn and fast.roi_heads is model.roi_heads
    abs_diff, rel_diff = backbone_parity(model, fast, torch.randn(2, 3, 128, 160))
    assert rel_diff < 1e-4, (abs_diff, rel_diff)
    x = [_image(3, 192)]
    with torch.inference_mode():
        a, b = model(x)[0], fast(x)[0]
    assert a["scores"].shape == b["scores"].shape
    torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-5)
    # an existing export is reused, not rewritten
    mtime = (tmp_path / "bb.onnx").stat().st_mtime_ns
    with_onnx_backbone(model, tmp_path / "bb.onnx", threads=1)
    assert (tmp_path / "bb.onnx").stat().st_mtime_ns == mtime
    # without a path the export goes to a temporary file, removed once loaded
    tmp_fast = with_onnx_backbone(model, threads=1)
    with torch.inference_mode():
        c = tmp_fast(x)[0]
    torch.testing.assert_close(b["scores"], c["scores"])
