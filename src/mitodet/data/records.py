"""The plain record every dataset reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LABEL_MITOSIS = 1
LABEL_HARD_NEGATIVE = 0


class DataFormatError(ValueError):
    """A label or image file is missing or malformed. The message names the file (and line)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image (frame, crop or slide) with its point labels.

    Attributes:
        image: path of the image file. For label-only sets (images not distributed) this is
            the path the official layout puts the image at; it may not exist.
        points: float64 array (N, 2) of (x, y) = (column, row) in level-0 pixels.
        labels: int64 array (N,), ``LABEL_MITOSIS`` (1) or ``LABEL_HARD_NEGATIVE`` (0).
        mpp: micrometres per pixel of ``image`` at level 0.
        slide: slide or case id; splits never put one slide on both sides.
        domain: scanner, lab or tumour type (for per-domain tables).
        scores: optional float64 (N,) confidences from the source (e.g. MITOS-ATYPIA-14).
        source: short name of the dataset/reader the record came from.
        labelled: ``False`` for an image that is in the label file but was never annotated
            (MIDOG++'s 50 Leica GT450 scans): its points are unknown, not absent, so it is
            neither a training negative nor an image whose detections are false positives.
            Training (:mod:`mitodet.engine.train`, the second stage) and evaluation
            (``mitodet evaluate``, ``detect --gt``, ``validate``) all skip such records.
        extra: reader-specific details (frame name, annotation ids, ...).
    """

    image: Path
    points: np.ndarray
    labels: np.ndarray
    mpp: float
    slide: str
    domain: str = ""
    scores: np.ndarray | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
    labelled: bool = True

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        lab = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(pts) != len(lab):
            raise ValueError(f"{self.image}: {len(pts)} points but {len(lab)} labels")
        if not self.mpp > 0:
            raise ValueError(f"{self.image}: mpp must be > 0, got {self.mpp!r}")
        object.__setattr__(self, "image", Path(self.image))
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "labels", lab)
        if self.scores is not None:
            sc = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if len(sc) != len(pts):
                raise ValueError(f"{self.image}: {len(pts)} points but {len(sc)} scores")
            object.__setattr__(self, "scores", sc)

    @property
    def mitoses(self) -> np.ndarray:
        """(M, 2) points labelled mitosis."""
        return self.points[self.labels == LABEL_MITOSIS]

    @property
    def hard_negatives(self) -> np.ndarray:
        """(K, 2) points labelled hard negative (mitosis look-alikes)."""
        return self.points[self.labels == LABEL_HARD_NEGATIVE]
