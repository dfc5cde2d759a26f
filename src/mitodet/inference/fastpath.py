"""Opt-in CPU speed-ups for inference, each with a check against the plain path.

None of these is on by default. ``benchmarks/speed.py`` measures each step's gain and
checks that detections above the operating threshold stay the same (within the stated
tolerance) on its test tiles; ``docs/benchmarks/speed.md`` has the numbers.

* :func:`set_test_proposals`: fewer RPN proposals at test time. Mitotic figures are
  sparse (a handful per high-power field), so a tile rarely needs the 150-1000 proposals
  the presets keep; the RoI head and RoIAlign cost scale with the count.
* :func:`to_channels_last`: NHWC convolution weights and inputs (oneDNN's native layout).
* :class:`OnnxBackbone` / :func:`with_onnx_backbone`: run the encoder + neck (nearly all of
  the FLOPs) in ONNX Runtime; the RPN and RoI heads stay in torch, where torchvision's
  detection post-processing is simple to keep exact. Needs the ``onnx`` extra.
"""

from __future__ import annotations

import copy
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Names of the neck's output levels, in order (see mitodet.models.glb.PyramidNeck).
_LEVELS = ("0", "1", "2", "3", "pool")


def set_test_proposals(
    model: nn.Module, pre_nms_top_n: int | None = None, post_nms_top_n: int | None = None
) -> nn.Module:
    """Change the RPN's test-time proposal counts in place; returns ``model``.

    Args:
        model: a torchvision-style detector with an ``rpn`` (a
            :class:`~mitodet.models.detector.MitosisDetector`).
        pre_nms_top_n: proposals kept per feature level before NMS (``None``: unchanged).
        post_nms_top_n: proposals kept per image after NMS (``None``: unchanged).
    """
    for name, value in (("pre_nms_top_n", pre_nms_top_n), ("post_nms_top_n", post_nms_top_n)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    if not hasattr(model, "rpn"):
        raise ValueError(f"{type(model).__name__} has no rpn; pass a Faster R-CNN detector")
    if pre_nms_top_n is not None:
        model.rpn._pre_nms_top_n["testing"] = int(pre_nms_top_n)
    if post_nms_top_n is not None:
        model.rpn._post_nms_top_n["testing"] = int(post_nms_top_n)
    return model


def _to_channels_last_hook(module, args):
    x = args[0]
    return (x.contiguous(memory_format=torch.channels_last),) + tuple(args[1:])


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put conv weights and the backbone's input in channels-last (NHWC) layout, in place.

    Results are the same up to float rounding (a different summation order inside the
    convolutions). The state dict keeps its keys, so the model can still be saved.
    """
    model.to(memory_format=torch.channels_last)
    backbone = getattr(model, "backbone", model)
    if not getattr(backbone, "_mitodet_channels_last", False):
        backbone.register_forward_pre_hook(_to_channels_last_hook)
        backbone._mitodet_channels_last = True
    return model


class _TupleBackbone(nn.Module):
    """Export helper: the backbone with a tuple output (ONNX needs plain outputs)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor):
        out = self.backbone(x)
        return tuple(out[k] for k in _LEVELS)


def export_backbone_onnx(model: nn.Module, path: str | Path, opset: int = 17) -> Path:
    """Export ``model.backbone`` (encoder + neck) to ONNX with dynamic batch and size.

    The input is the normalised, padded batch the detector's transform makes:
    (N, 3, H, W) float32 with H, W multiples of 32. Outputs are the five neck levels.
    """
    import warnings

    path = Path(path)
    module = _TupleBackbone(model.backbone).eval()
    x = torch.zeros(1, 3, 256, 256)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=[f"level_{k}" for k in _LEVELS],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}},
        )
    return path


class OnnxBackbone(nn.Module):
    """A drop-in ``backbone`` that runs an exported encoder + neck in ONNX Runtime.

    Args:
        onnx_path: file written by :func:`export_backbone_onnx`.
        out_channels: the neck's channel count (torchvision's heads read it).
        threads: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``).
    """

    def __init__(self, onnx_path: str | Path, out_channels: int, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the ONNX Runtime path needs onnxruntime: pip install 'mitodet[onnx]'") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        outs = self.session.run(None, {"images": arr})
        return OrderedDict((k, torch.from_numpy(o)) for k, o in zip(_LEVELS, outs))


def with_onnx_backbone(model: nn.Module, onnx_path: str | Path | None = None, threads: int | None = None) -> nn.Module:
    """A copy of ``model`` whose backbone runs in ONNX Runtime (for inference only).

    The original model is left unchanged; the copy shares its RPN and RoI heads. Exports
    the backbone to ``onnx_path`` first when that file does not exist; with ``onnx_path=None``
    the export goes to a temporary file that is removed once ONNX Runtime has loaded it
    (an export takes a few seconds; pass a path to reuse one).
    """
    if onnx_path is None:
        with tempfile.TemporaryDirectory(prefix="mitodet-onnx-") as tmp:
            path = export_backbone_onnx(model, Path(tmp) / "backbone.onnx")
            backbone = OnnxBackbone(path, model.backbone.out_channels, threads)
    else:
        if not Path(onnx_path).is_file():
            export_backbone_onnx(model, onnx_path)
        backbone = OnnxBackbone(onnx_path, model.backbone.out_channels, threads)
    fast = copy.copy(model)
    fast._modules = OrderedDict(model._modules)  # do not let the copy share the module dict
    fast.backbone = backbone
    return fast.eval()


@torch.inference_mode()
def backbone_parity(model: nn.Module, fast: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """How far two models' neck outputs are apart on ``images`` (N, 3, H, W), normalised input.

    Returns:
        ``(max_abs, max_rel)``: the largest absolute difference over all levels, and the
        largest per-level ratio of that difference to the level's largest magnitude.
    """
    a, b = model.backbone(images), fast.backbone(images)
    diffs = [float((a[k] - b[k]).abs().max()) for k in a]
    rel = [d / max(float(a[k].abs().max()), 1e-30) for d, k in zip(diffs, a)]
    return max(diffs), max(rel)


__all__ = [
    "set_test_proposals",
    "to_channels_last",
    "export_backbone_onnx",
    "OnnxBackbone",
    "with_onnx_backbone",
    "backbone_parity",
]
