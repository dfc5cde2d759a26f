"""AMIDA13 / TUPAC16 auxiliary mitosis set (Veta et al. 2019) and its centred crops.

Official auxiliary layout under ``root``::

    mitoses_ground_truth/<case>/<image>.csv    # one mitosis per line: row,col (y first!)
    mitoses_image_data/<case>/<image>.tif       # 2000x2000 at 0.25 um/px

Some distributions split the images over ``mitoses_image_data_part_1/``, ``_part_2/``, ...;
every folder whose name starts with ``mitoses_image_data`` is searched. The official set
has more images (656) than ground-truth CSVs (587): an image without a CSV has no annotated
mitosis (see ``missing_csv``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np

from mitodet.data.readers._common import (
    check_dir,
    format_error,
    image_size,
    iter_data_lines,
    parse_coordinate,
    points_array,
)
from mitodet.data.records import LABEL_HARD_NEGATIVE, LABEL_MITOSIS, ImageRecord

__all__ = ["read_tupac16_aux", "read_tupac16_patches", "TUPAC16_MPP"]

TUPAC16_MPP = 0.25
_PATCH_RE = re.compile(r"^(\d+)_(\d+)_(\d+)$")
_PATCH_CLASSES = {"mitosis": LABEL_MITOSIS, "non_mitosis": LABEL_HARD_NEGATIVE}


def _read_row_col(path: Path) -> np.ndarray:
    """Read one ``row,col`` CSV and return ``(N, 2)`` points as (x, y) = (col, row)."""
    points: list[tuple[float, float]] = []
    for line, text in iter_data_lines(path):
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 2:
            raise format_error(
                path,
                line,
                f"{len(fields)} columns in {text!r}, expected 2 (row,col)",
                "Write one 'row,col' line per mitosis (y first) with no header",
            )
        row = parse_coordinate(fields[0], path, line, "row (y)")
        col = parse_coordinate(fields[1], path, line, "col (x)")
        points.append((col, row))
    return points_array(points)


def read_tupac16_aux(
    root: str | Path,
    *,
    missing_csv: Literal["empty", "skip", "error"] = "empty",
    require_images: bool = False,
) -> list[ImageRecord]:
    """Read the AMIDA13 / TUPAC16 auxiliary mitosis set.

    Args:
        root: folder holding ``mitoses_ground_truth/`` (and the image folder(s)).
        missing_csv: what to do with an image that has no ground-truth CSV. ``"empty"``
            (default) reads it as an image without mitoses, which is how the official set
            marks mitosis-free fields; ``"skip"`` leaves it out; ``"error"`` raises.
        require_images: raise if a CSV has no image (default: allow label-only roots; the
            image path is then ``mitoses_image_data/<case>/<image>.tif``).

    Returns:
        One record per image, sorted by case then image. ``points`` (N, 2) float64 are
        (x, y) = (column, row) in level-0 pixels, i.e. the CSV's ``row,col`` swapped
        (pixel-centre convention: pixel indices unchanged); labels all 1 (no hard negatives);
        ``mpp`` 0.25; ``slide`` the case folder (``"01"``); ``domain`` ``"tupac16"``;
        ``extra["image_id"]`` the image stem.

    Raises:
        ValueError: unknown ``missing_csv``.
        DataFormatError: ``mitoses_ground_truth`` missing, a malformed line (file and line
            named), or a missing image/CSV under the strict options.
    """
    if missing_csv not in ("empty", "skip", "error"):
        raise ValueError(f"missing_csv must be 'empty', 'skip' or 'error', got {missing_csv!r}")
    root = check_dir(root, "TUPAC16 auxiliary root", "Pass the folder holding mitoses_ground_truth/")
    gt_dir = check_dir(
        root / "mitoses_ground_truth",
        "mitoses_ground_truth",
        "The auxiliary ground truth goes in <root>/mitoses_ground_truth/<case>/<image>.csv",
    )
    csvs = {(p.parent.name, p.stem): p for p in gt_dir.glob("*/*.csv")}
    images: dict[tuple[str, str], Path] = {}
    for image_dir in sorted(root.glob("mitoses_image_data*")):
        if image_dir.is_dir():
            for p in image_dir.glob("*/*"):
                if p.suffix.lower() in (".tif", ".tiff"):
                    images.setdefault((p.parent.name, p.stem), p)
    records: list[ImageRecord] = []
    for key in sorted(set(csvs) | set(images)):
        case, image_id = key
        image = images.get(key, root / "mitoses_image_data" / case / f"{image_id}.tif")
        if key in csvs:
            if require_images and key not in images:
                raise format_error(
                    image,
                    None,
                    f"image missing for ground truth {csvs[key]}",
                    "Add the image, or call with require_images=False for label-only use",
                )
            points = _read_row_col(csvs[key])
        elif missing_csv == "skip":
            continue
        elif missing_csv == "error":
            raise format_error(
                gt_dir / case / f"{image_id}.csv",
                None,
                f"no ground truth for image {image}",
                "Add the CSV (empty if the image has no mitosis) or pass missing_csv='empty'",
            )
        else:
            points = points_array([])
        records.append(
            ImageRecord(
                image=image,
                points=points,
                labels=np.full(len(points), LABEL_MITOSIS, dtype=np.int64),
                mpp=TUPAC16_MPP,
                slide=case,
                domain="tupac16",
                source="tupac16_aux",
                extra={"image_id": image_id},
            )
        )
    return records


def read_tupac16_patches(root: str | Path) -> list[ImageRecord]:
    """Read TUPAC16 centred crops: ``mitosis/`` (label 1) and ``non_mitosis/`` (label 0).

    Each crop holds one object at its centre. The crop size is read from the image header
    (a few crops are 79 px rather than 80 px on one side); pixels are not decoded.

    Args:
        root: folder holding ``mitosis/`` and ``non_mitosis/``; names ``<case>_<image>_<index>``.

    Returns:
        One record per crop, sorted by class then name, each with one point at the crop's
        geometric centre ``((w - 1) / 2, (h - 1) / 2)`` (x, y) in crop pixels (pixel-centre
        convention; (39.5, 39.5) for 80x80); label 1 in ``mitosis/``, 0 in ``non_mitosis/``;
        ``mpp`` 0.25; ``slide`` the case (``"27"`` for ``27_01_0.jpg``); ``domain``
        ``"tupac16"``; ``extra["image_id"]`` the source image (``"01"``).

    Raises:
        DataFormatError: a class folder is missing, a name is not ``case_image_index``, or
            an image header is unreadable.
    """
    root = check_dir(root, "TUPAC16 patches root", "Pass the folder holding mitosis/ and non_mitosis/")
    records: list[ImageRecord] = []
    for folder_name, label in _PATCH_CLASSES.items():
        folder = check_dir(root / folder_name, folder_name, f"Put the {folder_name} crops in <root>/{folder_name}/")
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            match = _PATCH_RE.match(path.stem)
            if match is None:
                raise format_error(
                    path,
                    None,
                    f"name {path.stem!r} is not of the form <case>_<image>_<index>",
                    "Keep the original crop names (e.g. 27_01_0.jpg)",
                )
            width, height = image_size(path)
            records.append(
                ImageRecord(
                    image=path,
                    points=[((width - 1) / 2, (height - 1) / 2)],
                    labels=[label],
                    mpp=TUPAC16_MPP,
                    slide=match.group(1),
                    domain="tupac16",
                    source="tupac16_patches",
                    extra={"image_id": match.group(2)},
                )
            )
    return records
