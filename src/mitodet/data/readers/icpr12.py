"""ICPR 2012 MITOS contest (Roux et al. 2013): full frames with pixel-list labels, and crops.

Official layout under ``root``::

    A00_v2/A00_01.bmp    # scanner A (Aperio ScanScope XT), 2084x2084, 0.2456 um/px
    A00_v2/A00_01.csv    # one mitosis per line: its full pixel list x1,y1,x2,y2,...
    H00_v2/...           # scanner H (Hamamatsu NanoZoomer), 2252x2250, 0.2273 um/px

``A0k`` is slide ``k`` and ``A0k_yy`` one of its high-power fields; ``A0k`` and ``H0k`` are the
same glass slide scanned twice. The multispectral (``M``) set is not supported. Never use the
official visualisation JPGs as training positives: they paint every mitosis pixel yellow.
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
    points_array,
)
from mitodet.data.records import LABEL_MITOSIS, ImageRecord

__all__ = ["read_icpr12", "read_icpr12_patches", "SCANNERS", "MIN_COMPONENT_PIXELS"]

#: scanner letter -> (domain, um per pixel)
SCANNERS: dict[str, tuple[str, float]] = {"A": ("aperio", 0.2456), "H": ("hamamatsu", 0.2273)}

#: connected components of a JPEG mask smaller than this (pixels) are compression noise, not
#: mitoses (real mitosis masks in the crops cover >= 300 px; 10 px is ~0.6 um^2).
MIN_COMPONENT_PIXELS = 10

_FOLDER_RE = re.compile(r"^([AH]\d{2})_v2$")
_PATCH_RE = re.compile(r"^([AH]\d{2})_(\d{2})(?:_\d+)+$")


def _read_pixel_lists(path: Path) -> tuple[np.ndarray, list[int]]:
    """Read one ICPR 2012 label CSV: ``(N, 2)`` centroids (x, y) and the pixel count of each."""
    centroids: list[np.ndarray] = []
    areas: list[int] = []
    for line, text in iter_data_lines(path):
        fields = [f.strip() for f in text.split(",")]
        if fields[-1] == "":  # one trailing comma is harmless
            fields.pop()
        if len(fields) < 2 or len(fields) % 2:
            raise format_error(
                path,
                line,
                f"{len(fields)} values, expected an even number >= 2",
                "Each line is one mitosis as its pixel list x1,y1,x2,y2,... (x = column)",
            )
        values = [parse_coordinate(v, path, line, f"value {i + 1} ({'xy'[i % 2]})") for i, v in enumerate(fields)]
        pixels = np.asarray(values, dtype=np.float64).reshape(-1, 2)
        centroids.append(pixels.mean(axis=0))
        areas.append(len(pixels))
    return points_array(centroids), areas


def read_icpr12(root: str | Path, *, require_images: bool = False) -> list[ImageRecord]:
    """Read every frame of an ICPR 2012 MITOS folder (scanners A and H).

    Frames are discovered from the ``.bmp`` images and the ``.csv`` labels, so a label-only
    copy gives one record per CSV with ``image`` where the layout puts the ``.bmp``. Each CSV
    line is one mitosis given as its full pixel list; its point is the mean of the pixels.

    Args:
        root: folder holding ``A00_v2/``, ``A01_v2/``, ... (and/or ``H0k_v2/``).
        require_images: raise if a frame's ``.bmp`` is missing.

    Returns:
        One record per frame, sorted. ``points`` (N, 2) float64 are the centroids (x, y) =
        (column, row) in level-0 pixels (pixel-centre convention: the mean of the listed pixel
        indices); all labels 1 (the set has no hard negatives); ``slide`` is the slide
        (``"A00"``; frames of one slide share a slide id so splits keep them together);
        ``domain`` ``"aperio"``/``"hamamatsu"``; ``mpp`` 0.2456 (A) or 0.2273 (H);
        ``extra`` holds ``"frame"`` (``"A00_01"``) and ``"areas_px"`` (pixels per mitosis).

    Raises:
        DataFormatError: no ``A0k_v2``/``H0k_v2`` folder, an image without its CSV, a
            malformed line (file and line named), or a missing image with ``require_images``.
    """
    root = check_dir(root, "ICPR 2012 root", "Pass the folder that holds A00_v2/, A01_v2/, ...")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _FOLDER_RE.match(p.name))
    if not folders:
        raise format_error(
            root,
            None,
            "no scanner folders (A00_v2, H03_v2, ...) found",
            "Pass the ICPR 2012 folder that directly contains the A0k_v2/H0k_v2 folders",
        )
    records: list[ImageRecord] = []
    for folder in folders:
        slide = _FOLDER_RE.match(folder.name).group(1)
        domain, mpp = SCANNERS[slide[0]]
        stems = {p.stem for p in folder.iterdir() if p.suffix.lower() in (".bmp", ".csv")}
        for frame in sorted(stems):
            csv_path = folder / f"{frame}.csv"
            image = folder / f"{frame}.bmp"
            if not csv_path.is_file():
                raise format_error(
                    csv_path,
                    None,
                    f"label file missing for frame image {image.name}",
                    "Every frame needs its CSV (empty when it has no mitosis); restore it",
                )
            if require_images and not image.is_file():
                raise format_error(
                    image,
                    None,
                    "frame image not found",
                    "Add the .bmp frames, or call with require_images=False for label-only use",
                )
            points, areas = _read_pixel_lists(csv_path)
            records.append(
                ImageRecord(
                    image=image,
                    points=points,
                    labels=np.full(len(points), LABEL_MITOSIS, dtype=np.int64),
                    mpp=mpp,
                    slide=slide,
                    domain=domain,
                    source="icpr12",
                    extra={"frame": frame, "areas_px": tuple(areas)},
                )
            )
    return records


def read_icpr12_patches(root: str | Path, *, min_component_pixels: int = MIN_COMPONENT_PIXELS) -> list[ImageRecord]:
    """Read ICPR 2012 scanner-A crops with binary masks (``images/`` + ``masks/``).

    Each mask (same file name as its image; 255 = mitosis pixel) is thresholded at 128,
    because the masks are JPEG and their edges carry compression noise; every 8-connected
    component of at least ``min_component_pixels`` pixels is one mitosis, located at the
    component's centroid. Smaller components are dropped as noise. Crops with an empty mask
    are all-negative images (zero points). Masks are decoded (small, 256x256); images are not.

    Args:
        root: folder holding ``images/`` and ``masks/``.
        min_component_pixels: smallest component (pixels) counted as a mitosis (default 10).

    Returns:
        One record per crop, sorted by name. ``points`` (N, 2) float64 are component centroids
        (x, y) = (column, row) in crop pixels (pixel-centre convention); labels all 1;
        ``mpp`` 0.2456; ``domain`` ``"aperio"``; ``slide`` the ICPR slide (``"A00"`` for
        ``A00_01_0.jpg``, so crops of one slide stay on one side of a split);
        ``extra`` holds ``"frame"`` (``"A00_01"``), ``"mask"`` (mask path) and
        ``"areas_px"``.

    Raises:
        ValueError: ``min_component_pixels`` < 1.
        DataFormatError: missing folders, an image without a mask (or the reverse), a name
            not of the form ``A00_01_<index>``, or an unreadable mask.
    """
    from PIL import Image, UnidentifiedImageError
    from scipy import ndimage

    if min_component_pixels < 1:
        raise ValueError(f"min_component_pixels must be >= 1, got {min_component_pixels!r}")
    root = check_dir(root, "ICPR 2012 patches root", "Pass the folder that holds images/ and masks/")
    images_dir = check_dir(root / "images", "images", "The crops go in <root>/images/")
    masks_dir = check_dir(root / "masks", "masks", "The masks go in <root>/masks/")
    images = {p.name: p for p in images_dir.iterdir() if p.is_file()}
    masks = {p.name: p for p in masks_dir.iterdir() if p.is_file()}
    for name in sorted(set(images) ^ set(masks)):
        missing = (masks_dir if name in images else images_dir) / name
        raise format_error(
            missing,
            None,
            "file missing: every crop needs a mask with the same name",
            "Restore the missing file or remove its partner",
        )
    eight = np.ones((3, 3), dtype=bool)
    records: list[ImageRecord] = []
    for name in sorted(images):
        stem = Path(name).stem
        match = _PATCH_RE.match(stem)
        if match is None:
            raise format_error(
                images[name],
                None,
                f"name {stem!r} is not of the form A00_01_<index>",
                "Keep the original crop names (slide_frame_index)",
            )
        slide = match.group(1)
        try:
            with Image.open(masks[name]) as im:
                mask = np.asarray(im.convert("L"))
        except (UnidentifiedImageError, OSError) as e:
            raise format_error(masks[name], None, f"unreadable mask ({e})", "Replace it with a valid image") from None
        components, n = ndimage.label(mask >= 128, structure=eight)
        centroids: list[tuple[float, float]] = []
        areas: list[int] = []
        if n:
            index = np.arange(1, n + 1)
            sizes = ndimage.sum_labels(np.ones(mask.shape), components, index)
            rows_cols = ndimage.center_of_mass(np.ones(mask.shape), components, index)
            for size, (row, col) in zip(sizes, rows_cols):
                if size >= min_component_pixels:
                    centroids.append((col, row))
                    areas.append(int(size))
        domain, mpp = SCANNERS[slide[0]]
        records.append(
            ImageRecord(
                image=images[name],
                points=points_array(centroids),
                labels=np.full(len(centroids), LABEL_MITOSIS, dtype=np.int64),
                mpp=mpp,
                slide=slide,
                domain=domain,
                source="icpr12_patches",
                extra={
                    "frame": f"{slide}_{match.group(2)}",
                    "mask": masks[name],
                    "areas_px": tuple(areas),
                },
            )
        )
    return records
