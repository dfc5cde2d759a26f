"""MIDOG 2021 / MIDOG++ (Aubreville et al. 2023) COCO-like annotation JSON.

The JSON holds ``images`` (``file_name``, ``id``, ``width``, ``height`` and, in MIDOG++,
``tumor_type``) and ``annotations`` (``bbox`` [x1, y1, x2, y2] -- corners, not COCO's
width/height -- ``category_id`` 1 = mitotic figure, 2 = hard negative / imposter,
``image_id``). The boxes are 50 px squares around the object centre.

JSON carries no line structure that survives a reformat, so errors name the file and the
JSON path of the bad entry (``annotations[12] (id 13)``); syntax errors name the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mitodet.data.readers._common import format_error, points_array
from mitodet.data.records import LABEL_HARD_NEGATIVE, LABEL_MITOSIS, DataFormatError, ImageRecord

__all__ = ["read_midog", "DEFAULT_MIDOG_MPP", "load_json"]

#: MIDOG scanners are 0.23-0.25 um/px (Hamamatsu XR 0.23, S360 0.23, Aperio CS2 0.25, Leica
#: GT450 0.26); the JSON has no pixel size, so 0.25 (the Aperio CS2 that scanned most
#: MIDOG++ tumour types) is the default. Pass ``mpp`` per file for exact values.
DEFAULT_MIDOG_MPP = 0.25

_CATEGORIES = {1: LABEL_MITOSIS, 2: LABEL_HARD_NEGATIVE}


def load_json(path: Path) -> Any:
    """Parse a JSON file, raising ``DataFormatError`` with the file and line on failure."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except FileNotFoundError:
        raise format_error(path, None, "file not found", "Check the path") from None
    except json.JSONDecodeError as e:
        raise format_error(path, e.lineno, f"invalid JSON ({e.msg}, column {e.colno})", "Fix the JSON syntax") from None
    except UnicodeDecodeError as e:
        raise format_error(path, None, f"not UTF-8 text ({e.reason})", "Save it as UTF-8") from None


def _number(value: Any, path: Path, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise format_error(
            path,
            None,
            f"{where}: {name} is {value!r}, not a finite number",
            "Give a finite number",
        )
    return float(value)


def _size(entry: Mapping[str, Any], path: Path) -> tuple[float, float]:
    """(width, height) of an ``images`` entry; infinite when absent (no right/bottom check)."""
    sizes = []
    for key in ("width", "height"):
        value = entry.get(key)
        if value is None:
            sizes.append(math.inf)
        else:
            value = _number(value, path, f"image {entry.get('id')!r}", key)
            if value <= 0:
                raise format_error(
                    path,
                    None,
                    f"image {entry.get('id')!r}: {key} is {value!r}",
                    "Give the image size in pixels (> 0) or leave it out",
                )
            sizes.append(value)
    return sizes[0], sizes[1]


def read_midog(
    json_path: str | Path,
    image_dir: str | Path,
    *,
    mpp: float | Mapping[str, float] | None = None,
) -> list[ImageRecord]:
    """Read a MIDOG 2021 / MIDOG++ annotation JSON into one record per image.

    Args:
        json_path: the JSON file (e.g. ``MIDOG++.json``).
        image_dir: folder of the images (``001.tiff``, ...); need not exist (label-only use).
        mpp: um per pixel: one float for all images, a mapping ``file_name -> mpp`` (every
            image must be in it), or ``None`` for ``DEFAULT_MIDOG_MPP`` (0.25; the JSON has
            no pixel size, the scanners span 0.23-0.26); an ``images`` entry's own ``mpp``
            field, when present, wins over that default (``extra["mpp_in_file"]``).

    Returns:
        One record per entry of ``images``, in JSON order. ``points`` (N, 2) float64 are box
        centres ((x1 + x2) / 2, (y1 + y2) / 2) = (column, row) in level-0 pixels
        (pixel-centre convention); a centre outside the image (a border object whose box
        sticks out) is moved onto the nearest edge pixel; labels 1 for category 1 (mitotic
        figure), 0 for category 2 (imposter); ``slide`` the file-name stem (``"001"``);
        ``domain`` the ``tumor_type``, else the ``scanner`` (``""`` when both are absent, as
        in MIDOG 2021); ``scores`` the annotations' ``score`` when every annotation of the
        file has one (a prediction file in this layout), else None; ``extra``
        holds ``"width"``, ``"height"``, ``"image_id"``, ``"annotation_ids"`` (N,);
        ``labelled`` is ``False`` for an image without any annotation. Every annotated MIDOG
        image has mitoses or imposters, so such an image is unlabelled (in MIDOG++ the 50
        MIDOG 2021 Leica GT450 scans ``151``-``200``), not mitosis-free: samplers must not
        use it as an all-negative image.

    Raises:
        ValueError: ``mpp`` not positive.
        DataFormatError: malformed JSON or entries (file and JSON path named), unknown
            ``category_id`` or ``image_id``, an inverted box or one entirely outside its
            image, an image missing from an ``mpp`` mapping.
    """
    json_path = Path(json_path)
    image_dir = Path(image_dir)
    mpp_default = mpp is None
    if mpp is None:
        mpp = DEFAULT_MIDOG_MPP
    if not isinstance(mpp, Mapping) and not (isinstance(mpp, (int, float)) and mpp > 0):
        raise ValueError(f"mpp must be a positive float or a file_name -> mpp mapping, got {mpp!r}")
    data = load_json(json_path)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("images"), list)
        or not isinstance(data.get("annotations"), list)
    ):
        raise format_error(
            json_path,
            None,
            "top level is not an object with 'images' and 'annotations' lists",
            "Pass the MIDOG COCO-like annotation JSON",
        )
    images: dict[int, dict] = {}
    order: list[int] = []
    for i, entry in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise format_error(
                json_path,
                None,
                f"{where} lacks 'id' or 'file_name': {str(entry)[:80]}",
                "Every image needs an id and a file_name",
            )
        if entry["id"] in images:
            raise format_error(
                json_path,
                None,
                f"{where}: duplicate image id {entry['id']!r}",
                "Image ids must be unique",
            )
        images[entry["id"]] = entry
        order.append(entry["id"])
    points: dict[int, list[tuple[float, float]]] = {i: [] for i in order}
    labels: dict[int, list[int]] = {i: [] for i in order}
    ann_ids: dict[int, list[Any]] = {i: [] for i in order}
    scores: dict[int, list[float]] = {i: [] for i in order}
    with_score = sum(1 for a in data["annotations"] if isinstance(a, dict) and "score" in a)
    if 0 < with_score < len(data["annotations"]):
        raise format_error(
            json_path,
            None,
            f"{with_score} of {len(data['annotations'])} annotations have a 'score'",
            "Give every annotation a score (a prediction file) or none (ground truth)",
        )
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise format_error(json_path, None, f"annotations[{i}] is not an object", "Fix it")
        where = f"annotations[{i}] (id {ann.get('id')!r})"
        image_id = ann.get("image_id")
        if image_id not in images:
            raise format_error(
                json_path,
                None,
                f"{where}: image_id {image_id!r} is not in 'images'",
                "Add the image or remove the annotation",
            )
        category = ann.get("category_id", 1)  # a prediction file may leave it out
        if category not in _CATEGORIES:
            raise format_error(
                json_path,
                None,
                f"{where}: category_id {category!r}, expected 1 or 2",
                "Use 1 for mitotic figure and 2 for hard negative (imposter)",
            )
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise format_error(
                json_path,
                None,
                f"{where}: bbox {bbox!r} is not a list of 4 numbers",
                "Give bbox as [x1, y1, x2, y2]",
            )
        x1, y1, x2, y2 = (_number(v, json_path, where, "bbox value") for v in bbox)
        if x2 < x1 or y2 < y1:
            raise format_error(
                json_path,
                None,
                f"{where}: bbox {bbox!r} has x2 < x1 or y2 < y1",
                "MIDOG boxes are corners [x1, y1, x2, y2], not [x, y, width, height]",
            )
        width, height = _size(images[image_id], json_path)
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise format_error(
                json_path,
                None,
                f"{where}: bbox {bbox!r} lies outside image {image_id!r} ({width} x {height})",
                "Coordinates are level-0 pixels from the image's top-left corner; fix the box",
            )
        # A border object's box may stick out of the image (MIDOG++ has two, 2 and 5 px):
        # keep it, with its point moved onto the nearest edge pixel.
        cx = min(max((x1 + x2) / 2, 0.0), width - 1)
        cy = min(max((y1 + y2) / 2, 0.0), height - 1)
        points[image_id].append((cx, cy))
        labels[image_id].append(_CATEGORIES[category])
        ann_ids[image_id].append(ann.get("id"))
        if with_score:
            scores[image_id].append(_number(ann["score"], json_path, where, "score"))
    records: list[ImageRecord] = []
    for image_id in order:
        entry = images[image_id]
        file_name = str(entry["file_name"])
        in_file = entry.get("mpp")
        if in_file is not None:
            in_file = _number(in_file, json_path, f"image {image_id!r}", "mpp")
        if isinstance(mpp, Mapping):
            if file_name not in mpp:
                raise format_error(
                    json_path,
                    None,
                    f"image {file_name!r} is not in the mpp mapping",
                    "Give an mpp for every file_name, or one float for all",
                )
            image_mpp = float(mpp[file_name])
        elif in_file is not None and mpp_default:
            image_mpp = in_file
        else:
            image_mpp = float(mpp)
        try:
            record = ImageRecord(
                image=image_dir / file_name,
                points=points_array(points[image_id]),
                labels=np.asarray(labels[image_id], dtype=np.int64),
                mpp=image_mpp,
                slide=Path(file_name).stem,
                domain=str(entry.get("tumor_type") or entry.get("scanner") or ""),
                scores=np.asarray(scores[image_id], dtype=np.float64) if with_score else None,
                source="midog",
                extra={
                    "width": entry.get("width"),
                    "height": entry.get("height"),
                    "image_id": image_id,
                    "annotation_ids": tuple(ann_ids[image_id]),
                    "mpp_in_file": in_file,
                },
                labelled=bool(ann_ids[image_id]),
            )
        except ValueError as e:  # e.g. a non-positive mpp in the mapping
            raise DataFormatError(f"{json_path}: {e}") from None
        records.append(record)
    return records
