"""Small named builders that compose the detector from its parts (constructor injection)."""

from __future__ import annotations

from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from mitodet.config import ModelConfig
from mitodet.models.detector import MitosisDetector, NoResizeTransform
from mitodet.models.encoder import build_encoder, load_backbone_weights
from mitodet.models.glb import EncoderWithNeck, PyramidNeck
from mitodet.models.heads import FocalRoIHeads, FocalRPN

NUM_CLASSES = 2  # background + mitotic figure
# Candidates below this never leave the RoI head; the operating threshold is applied later,
# so ``--threshold 0`` and threshold sweeps still see (almost) every candidate.
CANDIDATE_SCORE_THRESH = 0.001


def build_backbone(cfg: ModelConfig) -> EncoderWithNeck:
    encoder = build_encoder(cfg.encoder, cfg.norm)
    if cfg.weights_backbone:
        load_backbone_weights(encoder, cfg.weights_backbone)
    glb = cfg.glb
    neck = PyramidNeck(encoder.levels, cfg.fpn_channels, glb.k if glb else None, glb.m if glb else None)
    return EncoderWithNeck(encoder, neck)


def build_rpn(cfg: ModelConfig, in_channels: int) -> FocalRPN:
    anchors = AnchorGenerator(tuple((s,) for s in cfg.anchor_sizes), (tuple(cfg.aspect_ratios),) * 5)
    head = RPNHead(in_channels, anchors.num_anchors_per_location()[0])
    use_focal = cfg.focal is not None and cfg.focal.rpn
    return FocalRPN(
        anchors,
        head,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=cfg.rpn_batch_size_per_image,
        positive_fraction=0.5,
        pre_nms_top_n=dict(training=cfg.rpn_pre_nms_top_n_train, testing=cfg.rpn_pre_nms_top_n_test),
        post_nms_top_n=dict(training=cfg.rpn_post_nms_top_n_train, testing=cfg.rpn_post_nms_top_n_test),
        nms_thresh=0.7,
        focal_alpha=cfg.focal.alpha if use_focal else None,
        focal_gamma=cfg.focal.gamma if use_focal else None,
    )


def build_roi_heads(cfg: ModelConfig, in_channels: int) -> FocalRoIHeads:
    pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
    head = TwoMLPHead(in_channels * 7 * 7, cfg.box_head_dim)
    predictor = FastRCNNPredictor(cfg.box_head_dim, NUM_CLASSES)
    return FocalRoIHeads(
        pool,
        head,
        predictor,
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=cfg.box_batch_size_per_image,
        positive_fraction=cfg.box_positive_fraction,
        bbox_reg_weights=None,
        score_thresh=CANDIDATE_SCORE_THRESH,
        nms_thresh=cfg.box_nms_thresh,
        detections_per_img=cfg.box_detections_per_img,
        focal_alpha=cfg.focal.alpha if cfg.focal else None,
        focal_gamma=cfg.focal.gamma if cfg.focal else None,
        prior=cfg.focal.prior if cfg.focal else 0.01,
    )


def build_detector(cfg: ModelConfig | str) -> MitosisDetector:
    """Build a detector from a config or a preset name. Never downloads anything unless
    ``cfg.weights_backbone == "imagenet"`` was asked for explicitly."""
    if isinstance(cfg, str):
        from mitodet.models.presets import get_preset

        cfg = get_preset(cfg)
    backbone = build_backbone(cfg)
    c = backbone.out_channels
    return MitosisDetector(backbone, build_rpn(cfg, c), build_roi_heads(cfg, c), NoResizeTransform(), cfg)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
