"""Run a detector on an image of any size at the model's working resolution.

Images are resampled once from their own mpp to the model's, cut into overlapping tiles
(:mod:`mitodet.inference.tiling`), run in batches, and each detection is kept only by the
tile whose core holds its centre. Points come back in the input image's level-0 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from mitodet.data import transforms as T
from mitodet.data.sampler import boxes_to_points
from mitodet.inference.tiling import Tile, make_tiles, merge_tile_detections

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "weights" / "rdlm-cpu"


@dataclass(frozen=True)
class Detections:
    """Detections on one image.

    Attributes:
        points: (N, 2) float64 x, y in the input image's level-0 pixels, by descending score.
        scores: (N,) float64 in [0, 1].
        mpp: micrometres per pixel of the input image.
        image_shape: (H, W) of the input image.
        threshold: the threshold already applied (0 when every candidate is kept).
    """

    points: np.ndarray
    scores: np.ndarray
    mpp: float
    image_shape: tuple[int, int]
    threshold: float

    def above(self, threshold: float) -> "Detections":
        keep = self.scores >= threshold
        return Detections(self.points[keep], self.scores[keep], self.mpp, self.image_shape, max(threshold, self.threshold))

    @property
    def points_um(self) -> np.ndarray:
        return self.points * self.mpp


def resolve_model_dir(model: str | Path | None) -> Path:
    """``None`` / ``"default"`` -> the bundled model; anything else must be a model folder."""
    if model is None or str(model) == "default":
        if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
            raise FileNotFoundError(f"the bundled default model is missing from {DEFAULT_MODEL_DIR}; "
                                    "reinstall mitodet or pass --model DIR of a model trained with `mitodet train`")
        return DEFAULT_MODEL_DIR
    path = Path(model)
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist; pass 'default' or a folder holding "
                                "model.safetensors and config.json")
    return path


class Detector:
    """A loaded model plus how to run it on large images.

    Args:
        model: a :class:`~mitodet.models.detector.MitosisDetector` (eval mode is set).
        threshold: operating score threshold; ``None`` uses the one stored with the model.
        tile_px: tile side at the working resolution.
        overlap_px: tile overlap at the working resolution (default: 2.5x the box size, at
            least 32 px); must exceed the object size.
        batch_size: tiles per forward pass.
        flip_tta: also run the horizontally flipped tile and average the two score maps
            by matching detections (test-time augmentation; ~2x slower).
    """

    def __init__(self, model, threshold: float | None = None, tile_px: int = 512, overlap_px: int | None = None,
                 batch_size: int = 4, flip_tta: bool = False) -> None:
        self.model = model.eval()
        self.config = model.config
        self.threshold = float(self.config.score_threshold if threshold is None else threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
        self.tile_px = int(tile_px)
        box = self.config.box_size_px
        self.overlap_px = int(overlap_px if overlap_px is not None else max(32, round(2.5 * box)))
        self.batch_size = int(batch_size)
        self.flip_tta = flip_tta

    @classmethod
    def load(cls, model: str | Path | None = "default", **kwargs) -> "Detector":
        """Load the bundled model (``"default"``) or a model folder written by ``mitodet train``."""
        from mitodet.models.io import load_detector

        return cls(load_detector(resolve_model_dir(model)), **kwargs)

    @property
    def mpp(self) -> float:
        return float(self.config.mpp)

    @torch.inference_mode()
    def predict_working(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Run the network on images already at the working resolution.

        Returns, per image, (points (N, 2) x, y in that image's pixels, scores (N,)).
        """
        tensors = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float().div_(255.0) for im in images]
        outs = self.model(tensors)
        res = [(boxes_to_points(o["boxes"].numpy()), o["scores"].numpy().astype(np.float64)) for o in outs]
        if self.flip_tta:
            flipped = self.model([t.flip(-1) for t in tensors])
            res = [_merge_flip(r, o, im.shape[1], self.config.box_size_px / 2)
                   for r, o, im in zip(res, flipped, images)]
        return res

    def detect_array(self, image: np.ndarray, mpp: float, threshold: float | None = None,
                     progress: bool = False) -> Detections:
        """Detect mitoses in an (H, W, 3) uint8 RGB image of pixel size ``mpp`` (um/px)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        if not (np.isfinite(mpp) and mpp > 0):
            raise ValueError(f"mpp must be a positive number of micrometres per pixel, got {mpp!r}")
        thr = self.threshold if threshold is None else float(threshold)
        scale = mpp / self.mpp
        work, _ = T.resample(image, np.zeros((0, 2)), scale)
        h, w = work.shape[:2]
        tiles = make_tiles(h, w, self.tile_px, self.overlap_px, min_overlap=int(np.ceil(self.config.box_size_px)))
        results = []
        for batch in _batches(tiles, self.batch_size, progress):
            crops = [work[t.read[1]:t.read[3], t.read[0]:t.read[2]] for t in batch]
            for t, (pts, sc) in zip(batch, self.predict_working(crops)):
                results.append((t, t.to_image(pts), sc))
        pts, sc = merge_tile_detections(results)
        # Back to the input's level-0 pixels (pixel-centre convention).
        sx, sy = w / image.shape[1], h / image.shape[0]
        pts = np.stack([(pts[:, 0] + 0.5) / sx - 0.5, (pts[:, 1] + 0.5) / sy - 0.5], axis=1) if len(pts) else pts
        order = np.argsort(-sc, kind="stable")
        det = Detections(pts[order].reshape(-1, 2), sc[order], float(mpp), image.shape[:2], 0.0)
        return det.above(thr)


def _batches(tiles: list[Tile], n: int, progress: bool) -> Iterable[list[Tile]]:
    chunks = [tiles[i:i + n] for i in range(0, len(tiles), n)]
    if progress and len(chunks) > 1:
        from tqdm import tqdm

        return tqdm(chunks, desc="tiles", unit="batch", leave=False)
    return chunks


def _merge_flip(res, flipped_out, width: int, radius: float):
    """Average scores of the plain and the h-flipped pass; unmatched detections keep half."""
    from mitodet.evaluation.matching import match_points

    p1, s1 = res
    p2 = boxes_to_points(flipped_out["boxes"].numpy())
    s2 = flipped_out["scores"].numpy().astype(np.float64)
    if len(p2):
        p2[:, 0] = width - 1 - p2[:, 0]
    m = match_points(p1, p2, radius)
    pts, sc = [], []
    used2 = np.zeros(len(p2), bool)
    partner = {int(g): int(p) for g, p in m.pairs}
    for i in range(len(p1)):
        j = partner.get(i)
        if j is None:
            pts.append(p1[i]); sc.append(s1[i] / 2)
        else:
            used2[j] = True
            pts.append((p1[i] + p2[j]) / 2); sc.append((s1[i] + s2[j]) / 2)
    for j in np.flatnonzero(~used2):
        pts.append(p2[j]); sc.append(s2[j] / 2)
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2), np.asarray(sc, dtype=np.float64)
