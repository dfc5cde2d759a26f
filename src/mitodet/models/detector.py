"""The detector assembly: torchvision's GeneralizedRCNN built from injected parts."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from mitodet.config import ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NoResizeTransform(GeneralizedRCNNTransform):
    """Normalise and batch, but never resize.

    torchvision resizes every input to ``min_size``; mitodet instead resamples inputs to
    the model's working resolution (``ModelConfig.mpp``) before they reach the network, so
    a pixel always means the same physical size.
    """

    def __init__(self, size_divisible: int = 32) -> None:
        super().__init__(
            min_size=1,
            max_size=1,
            image_mean=list(IMAGENET_MEAN),
            image_std=list(IMAGENET_STD),
            size_divisible=size_divisible,
        )

    def resize(self, image, target=None):
        return image, target


class MitosisDetector(GeneralizedRCNN):
    """Faster R-CNN (RPN + RoI heads) over an encoder/neck backbone, with its config attached.

    Input: a list of float tensors (3, H, W) in [0, 1] at ``config.mpp``. Output (eval):
    torchvision's list of dicts with ``boxes`` (x1, y1, x2, y2 pixels), ``scores``, ``labels``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        rpn: nn.Module,
        roi_heads: nn.Module,
        transform: GeneralizedRCNNTransform,
        config: ModelConfig,
    ) -> None:
        super().__init__(backbone, rpn, roi_heads, transform)
        self.config = config

    @torch.no_grad()
    def glb_activation(self, image: torch.Tensor, layer: str = "vault") -> torch.Tensor:
        """Channel-mean activation of the GLB vault layer (or gain ``"gain0"``..) for eq. 9.

        Args:
            image: (3, H, W) float in [0, 1] at the working resolution.
            layer: ``"vault"`` or ``"gainN"`` (N indexes the FPN level, 0 = stride 4).

        Returns:
            (h, w) float tensor (stride-4 map for the vault). Raises if the model has no GLB.
        """
        glb = self.backbone.neck.glb
        if glb is None:
            raise ValueError(f"preset {self.config.preset!r} has no GLB neck, so there is no vault layer to show")
        images, _ = self.transform([image])
        feats = self.backbone.body(images.tensors)
        vl = glb.vault_layer(list(feats.values()))
        act = vl if layer == "vault" else glb.gains[int(layer.removeprefix("gain"))](vl)
        return act.abs().mean(dim=1)[0]

    def encoder_features(self, images: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.backbone.body(images)
