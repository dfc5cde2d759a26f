"""Focal loss of the RDLM paper (eq. 7) and the Faster R-CNN box-classifier loss built on it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.5, gamma: float = 0.5, reduction: str = "none"
) -> torch.Tensor:
    """Sigmoid focal loss, eq. 7 of the paper, element-wise over classes.

    FL = -z * alpha * (1-p)^gamma * log(p) - (1-z) * (1-alpha) * p^gamma * log(1-p),
    p = sigmoid(logits), z the one-hot target. The same quantity as
    ``torchvision.ops.sigmoid_focal_loss``, but computed in log space: torchvision's
    ``(1 - p_t) ** gamma`` has an infinite derivative at p_t = 1 for gamma < 1 (the paper's
    0.5), which turns into NaN gradients once a logit saturates.

    Args:
        logits: float tensor of any shape.
        targets: same shape, values in {0, 1} (soft targets in [0, 1] also work).
        alpha: weight of the positive term, in [0, 1].
        gamma: focusing exponent, >= 0; 0 gives alpha-weighted binary cross-entropy.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"focal loss alpha must lie in [0, 1], got {alpha!r}")
    if gamma < 0:
        raise ValueError(f"focal loss gamma must be >= 0, got {gamma!r}")
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    targets = targets.to(logits.dtype)
    log_p = F.logsigmoid(logits)  # log p
    log_1mp = F.logsigmoid(-logits)  # log (1 - p)
    pos = -alpha * torch.exp(gamma * log_1mp) * log_p
    neg = -(1.0 - alpha) * torch.exp(gamma * log_p) * log_1mp
    loss = targets * pos + (1.0 - targets) * neg
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")


def box_regression_loss(
    box_regression: torch.Tensor, regression_targets: torch.Tensor, labels: torch.Tensor, normaliser: int
) -> torch.Tensor:
    """torchvision's Fast R-CNN smooth-L1 box loss over positive RoIs (0 when there are none)."""
    pos = torch.where(labels > 0)[0]
    n = box_regression.shape[0]
    box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    loss = F.smooth_l1_loss(box_regression[pos, labels[pos]], regression_targets[pos], beta=1 / 9, reduction="sum")
    return loss / max(1, normaliser)


def fastrcnn_focal_loss(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: list[torch.Tensor],
    regression_targets: list[torch.Tensor],
    alpha: float,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast R-CNN loss with the focal loss on one-hot targets over (background, classes...).

    The focal term is summed over classes and averaged over the sampled RoIs, so with
    gamma = 0 and alpha = 0.5 it is half the per-class binary cross-entropy; the box term is
    torchvision's smooth-L1 (zero on an image without objects).
    """
    labels_t = torch.cat(labels, dim=0)
    targets_t = torch.cat(regression_targets, dim=0)
    onehot = F.one_hot(labels_t, num_classes=class_logits.shape[-1]).to(class_logits.dtype)
    cls = focal_loss(class_logits, onehot, alpha, gamma, reduction="sum") / max(1, labels_t.numel())
    return cls, box_regression_loss(box_regression, targets_t, labels_t, labels_t.numel())
