"""Training crops for the detector: resampled to the working um/px, with boxes from points.

The patch sets we train on (AMi-Br, TUPAC16, ...) put one object at the centre of every
crop. Fed as they are, a detector learns "the object is in the middle". The
:class:`MosaicSampler` prevents that:

* the canvas starts as a random window of an exhaustively labelled larger image
  (ICPR 2012 crops, MITOS-ATYPIA-14 non-mitosis crops, ...) or, when none is large enough,
  a random-phase mosaic of small patches;
* 1-4 *pieces* are pasted at uniformly random positions; each piece is a random window
  (random size and offset) of a patch, so the object inside a piece sits anywhere in it;
  pieces are chosen as positives (window holds a labelled mitosis), hard negatives (window
  holds a labelled look-alike) or random windows, so a pasted edge says nothing about the
  label; edges are feathered;
* then flips, 90-degree rotations, scale jitter, HED stain jitter, brightness/contrast and
  blur.

The test ``test_sampler_box_centres_uniform`` checks that box centres over many crops are
spread uniformly over the canvas (no centre bias, no grid).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mitodet.config import SamplerConfig  # noqa: F401  (defined there; re-exported)
from mitodet.data import transforms as T
from mitodet.data.images import read_rgb
from mitodet.data.records import LABEL_MITOSIS, ImageRecord


@dataclass
class Source:
    """One image held in memory at the working resolution."""

    image: np.ndarray  # (H, W, 3) uint8
    points: np.ndarray  # (N, 2) x, y at the working resolution
    labels: np.ndarray  # (N,)
    slide: str
    name: str


def load_sources(records: Sequence[ImageRecord], mpp: float, progress: bool = False) -> list[Source]:
    """Read every record's image and resample it (and its points) to ``mpp``."""
    it = records
    if progress:
        from tqdm import tqdm

        it = tqdm(records, desc="loading images", unit="img")
    out = []
    for r in it:
        img = read_rgb(r.image)
        img, pts = T.resample(img, r.points, r.mpp / mpp)
        out.append(Source(img, pts, r.labels.copy(), r.slide, Path(r.image).name))
    return out


def split_by_slide(
    records: Sequence[ImageRecord], val_fraction: float, seed: int = 0
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Slide-disjoint split: a slide goes to validation when a hash of (seed, slide) falls
    below ``val_fraction``; deterministic, independent of order, never splits a slide."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")

    def to_val(slide: str) -> bool:
        h = hashlib.sha1(f"{seed}:{slide}".encode()).hexdigest()
        return int(h[:8], 16) / 0xFFFFFFFF < val_fraction

    train, val = [], []
    for r in records:
        (val if to_val(r.slide) else train).append(r)
    return train, val


def points_to_boxes(points: np.ndarray, box_px: float, size: tuple[int, int]) -> np.ndarray:
    """Square boxes of side ``box_px`` centred on points, clipped to the image (H, W).

    Returns float32 (N, 4) x1, y1, x2, y2 in torchvision's continuous coordinates, where
    pixel centre x is at x + 0.5.
    """
    h, w = size
    c = points.astype(np.float32) + 0.5
    half = box_px / 2
    boxes = np.concatenate([c - half, c + half], axis=1)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return boxes.reshape(-1, 4)


def boxes_to_points(boxes: np.ndarray) -> np.ndarray:
    """Box centres back to pixel-centre (x, y) points (inverse of :func:`points_to_boxes`)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2 - 0.5, (boxes[:, 1] + boxes[:, 3]) / 2 - 0.5], axis=1)


def _inside(points: np.ndarray, x0: float, y0: float, x1: float, y1: float, margin: float) -> np.ndarray:
    """Points whose centre lies in the window [x0, x1) x [y0, y1) at least ``margin`` from its edges."""
    return (
        (points[:, 0] >= x0 - 0.5 + margin)
        & (points[:, 0] < x1 - 0.5 - margin)
        & (points[:, 1] >= y0 - 0.5 + margin)
        & (points[:, 1] < y1 - 0.5 - margin)
    )


class MosaicSampler:
    """Makes one training crop per (seed, epoch, index) deterministically. See module doc."""

    def __init__(self, sources: Sequence[Source], cfg: SamplerConfig, box_px: float, seed: int = 0) -> None:
        if not sources:
            raise ValueError("the sampler needs at least one source image")
        self.sources = list(sources)
        self.cfg = cfg
        self.box_px = float(box_px)
        self.seed = seed
        side = cfg.crop_px
        self.large = [i for i, s in enumerate(self.sources) if min(s.image.shape[:2]) >= side]
        self.with_mitosis = [
            (i, j) for i, s in enumerate(self.sources) for j in np.flatnonzero(s.labels == LABEL_MITOSIS)
        ]
        self.with_hard_neg = [
            (i, j) for i, s in enumerate(self.sources) for j in np.flatnonzero(s.labels != LABEL_MITOSIS)
        ]

    def sample(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (image (C, C, 3) uint8, mitosis points (N, 2) x, y)."""
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, epoch, index])
        scale = rng.uniform(1 - cfg.scale_jitter, 1 + cfg.scale_jitter) if cfg.augment else 1.0
        side = int(round(cfg.crop_px / scale))
        canvas, pts = self._background(rng, side)
        for _ in range(rng.integers(cfg.pieces[0], cfg.pieces[1] + 1)):
            canvas, pts = self._paste(rng, canvas, pts)
        if canvas.shape[0] != cfg.crop_px or canvas.shape[1] != cfg.crop_px:
            h, w = canvas.shape[:2]
            canvas, pts = T.resample(canvas, pts, cfg.crop_px / w)
            if canvas.shape[:2] != (cfg.crop_px, cfg.crop_px):  # rounding: force the exact size
                from PIL import Image

                canvas = np.asarray(Image.fromarray(canvas).resize((cfg.crop_px, cfg.crop_px), Image.BILINEAR))
        if cfg.augment:
            if rng.random() < 0.5:
                canvas, pts = T.hflip(canvas, pts)
            canvas, pts = T.rot90(canvas, pts, int(rng.integers(4)))
            canvas = T.hed_jitter(canvas, rng, cfg.hed_sigma, cfg.hed_bias)
            canvas = T.brightness_contrast(canvas, rng, cfg.brightness, cfg.contrast)
            if rng.random() < cfg.p_blur:
                canvas = T.gaussian_blur(canvas, float(rng.uniform(0.5, 1.2)))
        return canvas, pts

    def _window(self, rng, src: Source, wh: tuple[int, int], must_hold: np.ndarray | None = None):
        h, w = src.image.shape[:2]
        ww, wh_ = min(wh[0], w), min(wh[1], h)
        if must_hold is not None:
            m = self.cfg.edge_margin_px
            lo_x = int(np.clip(np.ceil(must_hold[0] + 0.5 + m - ww), 0, w - ww))
            hi_x = int(np.clip(np.floor(must_hold[0] + 0.5 - m), lo_x, w - ww))
            lo_y = int(np.clip(np.ceil(must_hold[1] + 0.5 + m - wh_), 0, h - wh_))
            hi_y = int(np.clip(np.floor(must_hold[1] + 0.5 - m), lo_y, h - wh_))
            x0, y0 = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
        else:
            x0, y0 = int(rng.integers(0, w - ww + 1)), int(rng.integers(0, h - wh_ + 1))
        img = src.image[y0 : y0 + wh_, x0 : x0 + ww]
        keep = _inside(src.points, x0, y0, x0 + ww, y0 + wh_, 0.0) & (src.labels == LABEL_MITOSIS)
        return img, src.points[keep] - [x0, y0], keep.sum()

    def _background(self, rng, side: int) -> tuple[np.ndarray, np.ndarray]:
        if self.large and rng.random() >= self.cfg.p_mosaic_background:
            src = self.sources[self.large[rng.integers(len(self.large))]]
            side = min(side, *src.image.shape[:2])
            img, pts, _ = self._window(rng, src, (side, side))
            return img.copy(), pts
        # Random-phase mosaic of small patches: seams land anywhere, not on a fixed grid.
        # Gaps left where patches of different sizes meet show a large image underneath
        # (or mid-grey when there is none), never a black hole.
        if self.large:
            src = self.sources[self.large[rng.integers(len(self.large))]]
            under, _, _ = self._window(rng, src, (side, side))
            canvas = np.empty((side, side, 3), np.uint8)
            canvas[:] = 200
            canvas[: under.shape[0], : under.shape[1]] = under
        else:
            canvas = np.full((side, side, 3), 200, np.uint8)
        pts_all = [np.zeros((0, 2))]
        y = -int(rng.integers(0, 32))
        while y < side:
            x, row_h = -int(rng.integers(0, 32)), 0
            while x < side:
                src = self.sources[rng.integers(len(self.sources))]
                ph, pw = src.image.shape[:2]
                ys, xs = max(0, -y), max(0, -x)
                ye, xe = min(ph, side - y), min(pw, side - x)
                canvas[y + ys : y + ye, x + xs : x + xe] = src.image[ys:ye, xs:xe]
                m = src.labels == LABEL_MITOSIS
                p = src.points[m] + [x, y]
                pts_all.append(p[_inside(p, max(x, 0), max(y, 0), x + pw, y + ph, 0.0)])
                x += pw
                row_h = max(row_h, ph)
            y += row_h
        pts = np.concatenate(pts_all)
        return canvas, pts[_inside(pts, 0, 0, side, side, 0.0)]

    def _paste(self, rng, canvas: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        side_h, side_w = canvas.shape[:2]
        size = int(rng.integers(cfg.piece_px[0], cfg.piece_px[1] + 1))
        size = min(size, side_h, side_w)
        u = rng.random()
        if u < cfg.p_positive and self.with_mitosis:
            i, j = self.with_mitosis[rng.integers(len(self.with_mitosis))]
            src = self.sources[i]
            piece, ppts, _ = self._window(rng, src, (size, size), src.points[j])
        elif u < cfg.p_positive + cfg.p_hard_negative and self.with_hard_neg:
            i, j = self.with_hard_neg[rng.integers(len(self.with_hard_neg))]
            src = self.sources[i]
            piece, ppts, _ = self._window(rng, src, (size, size), src.points[j])
        else:
            src = self.sources[rng.integers(len(self.sources))]
            piece, ppts, _ = self._window(rng, src, (size, size))
        if cfg.augment and cfg.piece_hed_sigma > 0:
            piece = T.hed_jitter(piece, rng, cfg.piece_hed_sigma, cfg.piece_hed_sigma)
        ph, pw = piece.shape[:2]
        x0, y0 = int(rng.integers(0, side_w - pw + 1)), int(rng.integers(0, side_h - ph + 1))
        # Feathered alpha: 1 inside, linear ramp over feather_px at the edges.
        f = max(1, cfg.feather_px)
        ry = np.minimum(np.arange(ph) + 1, ph - np.arange(ph)) / f
        rx = np.minimum(np.arange(pw) + 1, pw - np.arange(pw)) / f
        alpha = np.clip(np.minimum(ry[:, None], rx[None, :]), 0, 1)[:, :, None]
        region = canvas[y0 : y0 + ph, x0 : x0 + pw].astype(np.float32)
        canvas = canvas.copy()
        canvas[y0 : y0 + ph, x0 : x0 + pw] = (alpha * piece + (1 - alpha) * region + 0.5).astype(np.uint8)
        # Old labels now covered by the piece are gone; the piece's own labels come in
        # when they are not cut by its edge.
        covered = _inside(pts, x0, y0, x0 + pw, y0 + ph, -cfg.edge_margin_px) if len(pts) else np.zeros(0, bool)
        ppts = ppts[_inside(ppts, 0, 0, pw, ph, cfg.edge_margin_px)] + [x0, y0]
        return canvas, np.concatenate([pts[~covered], ppts])


class MosaicDataset(torch.utils.data.Dataset):
    """torch Dataset of ``length`` sampler crops per epoch: (image (3, C, C) float in [0, 1], target)."""

    def __init__(self, sampler: MosaicSampler, length: int) -> None:
        self.sampler = sampler
        self.length = length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        img, pts = self.sampler.sample(self.epoch, index)
        boxes = points_to_boxes(pts, self.sampler.box_px, img.shape[:2])
        target = {
            "boxes": torch.from_numpy(boxes).float().reshape(-1, 4),
            "labels": torch.ones(len(boxes), dtype=torch.int64),
            "points": torch.from_numpy(pts).float().reshape(-1, 2),
        }
        return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float().div(255.0), target


def collate(batch):
    return tuple(zip(*batch))
