"""RPN and RoI heads: torchvision's, with the focal loss of eq. 7 as an option.

With the focal loss the box classifier is trained with per-class sigmoids, so inference
scores with the same sigmoid (not softmax): the score a user thresholds is the probability
the loss was trained to produce.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import boxes as box_ops

from mitodet.models.losses import fastrcnn_focal_loss, focal_loss


class FocalRPN(RegionProposalNetwork):
    """torchvision's RPN whose objectness loss is optionally the focal loss."""

    def __init__(self, *args, focal_alpha: float | None = None, focal_gamma: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        if self.focal_alpha is None:
            return super().compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        sampled_pos = torch.where(torch.cat(sampled_pos, dim=0))[0]
        sampled_neg = torch.where(torch.cat(sampled_neg, dim=0))[0]
        sampled = torch.cat([sampled_pos, sampled_neg], dim=0)
        objectness = objectness.flatten()
        labels_t = torch.cat(labels, dim=0)
        targets_t = torch.cat(regression_targets, dim=0)
        box_loss = F.smooth_l1_loss(
            pred_bbox_deltas[sampled_pos], targets_t[sampled_pos], beta=1 / 9, reduction="sum"
        ) / max(1, sampled.numel())
        obj_loss = focal_loss(
            objectness[sampled], labels_t[sampled], self.focal_alpha, self.focal_gamma, reduction="sum"
        ) / max(1, sampled.numel())
        return obj_loss, box_loss


class FocalRoIHeads(RoIHeads):
    """Box-only RoI heads; focal-loss classifier with sigmoid scoring when ``focal_alpha`` is set."""

    def __init__(
        self, *args, focal_alpha: float | None = None, focal_gamma: float | None = None, prior: float = 0.01, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        if focal_alpha is not None:
            # Rare positives: start the foreground sigmoids at the prior, background at 1 - prior.
            b = -math.log((1 - prior) / prior)
            with torch.no_grad():
                self.box_predictor.cls_score.bias.fill_(b)
                self.box_predictor.cls_score.bias[0] = -b

    @property
    def uses_sigmoid(self) -> bool:
        return self.focal_alpha is not None

    def class_scores(self, class_logits: torch.Tensor) -> torch.Tensor:
        """Per-class probabilities consistent with the training loss."""
        return torch.sigmoid(class_logits) if self.uses_sigmoid else F.softmax(class_logits, -1)

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        result: list[dict[str, torch.Tensor]] = []
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            if self.uses_sigmoid:
                cls, box = fastrcnn_focal_loss(
                    class_logits, box_regression, labels, regression_targets, self.focal_alpha, self.focal_gamma
                )
            else:
                cls, box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            losses = {"loss_classifier": cls, "loss_box_reg": box}
        else:
            boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
            result = [{"boxes": b, "labels": lab, "scores": s} for b, s, lab in zip(boxes, scores, labels)]
        return result, losses

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """torchvision's post-processing with :meth:`class_scores` in place of softmax."""
        num_classes = class_logits.shape[-1]
        boxes_per_image = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(boxes_per_image, 0)
        pred_scores = self.class_scores(class_logits).split(boxes_per_image, 0)
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = torch.arange(num_classes, device=boxes.device).view(1, -1).expand_as(scores)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels
