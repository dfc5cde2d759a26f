"""Focal loss (eq. 7) against a hand-written closed form."""

import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from mitodet.models.losses import fastrcnn_focal_loss, focal_loss


def closed_form(alpha: float, gamma: float, p: float, z: int) -> float:
    # eq. 7: FL = -z a (1-p)^g log p - (1-z)(1-a) p^g log(1-p)
    return -z * alpha * (1 - p) ** gamma * math.log(p) - (1 - z) * (1 - alpha) * p**gamma * math.log(1 - p)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("p", [0.02, 0.3, 0.5, 0.97])
@pytest.mark.parametrize("z", [0, 1])
def test_matches_closed_form(alpha, gamma, p, z):
    logit = torch.tensor([math.log(p / (1 - p))], dtype=torch.float64)
    got = focal_loss(logit, torch.tensor([float(z)], dtype=torch.float64), alpha, gamma).item()
    assert got == pytest.approx(closed_form(alpha, gamma, p, z), rel=1e-9, abs=1e-12)


def test_gamma0_alpha_half_is_half_bce():
    logits = torch.randn(50, dtype=torch.float64)
    z = (torch.rand(50) > 0.5).double()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, z, reduction="none")
    assert torch.allclose(focal_loss(logits, z, 0.5, 0.0), 0.5 * bce)


def test_agrees_with_torchvision_and_stays_finite_when_saturated():
    logits = torch.randn(100, dtype=torch.float64) * 3
    z = (torch.rand(100) > 0.7).double()
    ref = sigmoid_focal_loss(logits, z, alpha=0.5, gamma=0.5, reduction="none")
    assert torch.allclose(focal_loss(logits, z, 0.5, 0.5), ref, atol=1e-10)
    # Saturated logits: torchvision's (1 - p_t) ** 0.5 has an infinite slope at p_t = 1.
    x = torch.tensor([40.0, -40.0], requires_grad=True)
    focal_loss(x, torch.tensor([1.0, 0.0]), 0.5, 0.5, reduction="sum").backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("bad", [dict(alpha=-0.1), dict(alpha=1.5), dict(gamma=-1.0)])
def test_rejects_bad_arguments(bad):
    kw = dict(alpha=0.5, gamma=0.5) | bad
    with pytest.raises(ValueError, match=str(list(bad.values())[0])):
        focal_loss(torch.zeros(2), torch.zeros(2), **kw)


def test_fastrcnn_focal_loss_without_positives_has_zero_box_loss():
    logits = torch.randn(8, 2, requires_grad=True)
    reg = torch.randn(8, 8, requires_grad=True)
    cls, box = fastrcnn_focal_loss(logits, reg, [torch.zeros(8, dtype=torch.int64)], [torch.zeros(8, 4)], 0.5, 0.5)
    assert torch.isfinite(cls) and cls > 0
    assert box.item() == 0.0
