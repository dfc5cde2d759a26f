"""MITOS-ATYPIA-14 (Roux et al. 2014) in its official layout.

Layout under ``root``::

    <SLIDE>/frames/x40/<FRAME>.tiff
    <SLIDE>/mitosis/<FRAME>_mitosis.csv        # rows x,y,confidence (no header)
    <SLIDE>/mitosis/<FRAME>_not_mitosis.csv    # same format, hard negatives

``SLIDE`` is ``A03``, ``H14``, ...: ``A`` slides come from the Aperio ScanScope XT
(0.2455 um/px), ``H`` slides from the Hamamatsu NanoZoomer 2.0-HT (0.2273 um/px); an ``A``
and an ``H`` slide with the same number are the same glass slide scanned twice.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mitodet.data.readers._common import (
    check_dir,
    format_error,
    iter_data_lines,
    parse_coordinate,
    parse_number,
    points_array,
)
from mitodet.data.records import LABEL_HARD_NEGATIVE, LABEL_MITOSIS, ImageRecord

__all__ = ["read_mitos_atypia14", "read_frame_csv", "SCANNERS", "frame_scanner"]

#: scanner letter -> (domain, um per pixel at x40)
SCANNERS: dict[str, tuple[str, float]] = {"A": ("aperio", 0.2455), "H": ("hamamatsu", 0.2273)}

_SLIDE_RE = re.compile(r"^[AH]\d{2}$")
_MITOSIS_SUFFIX = "_mitosis.csv"
_NOT_MITOSIS_SUFFIX = "_not_mitosis.csv"


def frame_scanner(frame: str) -> tuple[str, float] | None:
    """(domain, um per pixel) of a frame or slide name by its scanner letter (``A03_00Ab`` ->
    Aperio), or None when the name does not start with a known letter."""
    return SCANNERS.get(frame[:1].upper())


def read_frame_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one ``x,y,confidence`` CSV: ``(N, 2)`` points (x = column) and ``(N,)`` confidences."""
    points: list[tuple[float, float]] = []
    scores: list[float] = []
    for line, text in iter_data_lines(path):
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 3:
            raise format_error(
                path,
                line,
                f"{len(fields)} columns in {text!r}, expected 3 (x,y,confidence)",
                "Write one 'x,y,confidence' row per object with no header",
            )
        x = parse_coordinate(fields[0], path, line, "x")
        y = parse_coordinate(fields[1], path, line, "y")
        conf = parse_number(fields[2], path, line, "confidence")
        if not 0.0 <= conf <= 1.0:
            raise format_error(
                path,
                line,
                f"confidence is {fields[2]!r}, outside [0, 1]",
                "MITOS-ATYPIA-14 confidences are 0, 0.2, 0.65, 0.8 or 1; fix the value",
            )
        points.append((x, y))
        scores.append(conf)
    return points_array(points), np.asarray(scores, dtype=np.float64)


def read_mitos_atypia14(
    root: str | Path,
    *,
    positive_min_confidence: float | None = None,
    require_images: bool = False,
) -> list[ImageRecord]:
    """Read every x40 frame of a MITOS-ATYPIA-14 folder into records.

    Frames are discovered from the images (``frames/x40/*.tiff``) and from the label CSVs, so
    a label-only copy (images not distributed) still gives one record per frame, with
    ``image`` set to where the official layout puts the frame.

    Labels follow the challenge: every row of ``<FRAME>_mitosis.csv`` is a mitosis (1),
    every row of ``<FRAME>_not_mitosis.csv`` a hard negative (0). An empty CSV means no
    objects.

    Args:
        root: folder holding the slide folders (``A03/``, ``H14/``, ...).
        positive_min_confidence: if given (in [0, 1]), mitosis rows with a confidence below
            it are demoted to hard negatives (the challenge's own rule is ``None``: keep all).
        require_images: raise if a frame's ``.tiff`` is missing (default: allow label-only
            roots).

    Returns:
        One record per frame, sorted by slide then frame. ``points`` (N, 2) float64 are
        (x, y) = (column, row) in x40 pixels (pixel-centre convention: pixel indices as given
        in the CSV), mitoses first then hard negatives; ``scores`` (N,) are the CSV
        confidences; ``slide`` is the slide folder name (``"A03"``); ``domain`` is
        ``"aperio"`` or ``"hamamatsu"``; ``mpp`` 0.2455 (A) or 0.2273 (H);
        ``extra["frame"]`` is the frame name (``"A03_00Ab"``).

    Raises:
        ValueError: ``positive_min_confidence`` outside [0, 1].
        DataFormatError: no slide folders, a frame with only one of its two CSVs or with no
            CSV at all, a malformed row (message names file and line), or a missing image
            when ``require_images`` is set.
    """
    if positive_min_confidence is not None and not 0.0 <= positive_min_confidence <= 1.0:
        raise ValueError(f"positive_min_confidence must be in [0, 1] or None, got {positive_min_confidence!r}")
    root = check_dir(root, "MITOS-ATYPIA-14 root", "Pass the folder that holds A03/, H03/, ...")
    slide_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _SLIDE_RE.match(p.name))
    if not slide_dirs:
        raise format_error(
            root,
            None,
            "no slide folders (A03, H14, ...) found",
            "Pass the MITOS-ATYPIA-14 folder that directly contains the slide folders",
        )
    records: list[ImageRecord] = []
    for slide_dir in slide_dirs:
        slide = slide_dir.name
        domain, mpp = SCANNERS[slide[0]]
        frames_dir = slide_dir / "frames" / "x40"
        labels_dir = slide_dir / "mitosis"
        images = {}
        if frames_dir.is_dir():
            images = {p.stem: p for p in frames_dir.iterdir() if p.suffix.lower() in (".tiff", ".tif")}
        positives: dict[str, Path] = {}
        negatives: dict[str, Path] = {}
        if labels_dir.is_dir():
            for p in labels_dir.iterdir():
                if p.name.endswith(_NOT_MITOSIS_SUFFIX):
                    negatives[p.name[: -len(_NOT_MITOSIS_SUFFIX)]] = p
                elif p.name.endswith(_MITOSIS_SUFFIX):
                    positives[p.name[: -len(_MITOSIS_SUFFIX)]] = p
        for frame in sorted(set(images) | set(positives) | set(negatives)):
            if not frame.startswith(slide + "_"):
                where = images.get(frame) or positives.get(frame) or negatives.get(frame)
                raise format_error(
                    where,
                    None,
                    f"frame {frame!r} is not named after its slide folder {slide!r}",
                    f"Move it to the folder of its slide or rename it '{slide}_...'",
                )
            image = images.get(frame, frames_dir / f"{frame}.tiff")
            if require_images and not image.is_file():
                raise format_error(
                    image,
                    None,
                    "frame image not found",
                    "Add the x40 frames, or call with require_images=False for label-only use",
                )
            for table, suffix in ((positives, _MITOSIS_SUFFIX), (negatives, _NOT_MITOSIS_SUFFIX)):
                if frame not in table:
                    raise format_error(
                        labels_dir / f"{frame}{suffix}",
                        None,
                        f"label file missing for frame {frame!r}",
                        "Every frame needs both _mitosis.csv and _not_mitosis.csv (empty if it "
                        "has no objects); restore it from the dataset",
                    )
            pos, pos_conf = read_frame_csv(positives[frame])
            neg, neg_conf = read_frame_csv(negatives[frame])
            pos_labels = np.full(len(pos), LABEL_MITOSIS, dtype=np.int64)
            if positive_min_confidence is not None:
                pos_labels[pos_conf < positive_min_confidence] = LABEL_HARD_NEGATIVE
            records.append(
                ImageRecord(
                    image=image,
                    points=np.concatenate([pos, neg]),
                    labels=np.concatenate([pos_labels, np.full(len(neg), LABEL_HARD_NEGATIVE, dtype=np.int64)]),
                    mpp=mpp,
                    slide=slide,
                    domain=domain,
                    scores=np.concatenate([pos_conf, neg_conf]),
                    source="mitos_atypia14",
                    extra={"frame": frame},
                )
            )
    return records
