"""Crop (patch) sets: AMi-Br, the AMi-Br benchmark sets (atnorm_br / atnorm_md) and the
MITOS-ATYPIA-14 Hamamatsu H03 crops.

Coordinates are (x, y) = (column, row) in crop pixels with the pixel-centre convention of
every reader (pixel ``(i, j)`` has its centre at ``(i, j)``; a ``w x h`` crop's geometric
centre is ``((w - 1) / 2, (h - 1) / 2)``).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from mitodet.data.readers._common import (
    check_dir,
    format_error,
    image_size,
    parse_coordinate,
    points_array,
)
from mitodet.data.readers.mitos_atypia14 import SCANNERS as MITOS14_SCANNERS
from mitodet.data.records import LABEL_MITOSIS, ImageRecord

__all__ = ["read_amibr", "read_atnorm", "read_mitos_atypia14_patches", "AMIBR_MPP"]

#: AMi-Br mixes MIDOG21 (0.23-0.25 um/px scanners) and TUPAC16 (0.25 um/px); 0.25 is used.
AMIBR_MPP = 0.25
ATNORM_MPP = 0.25
_AMIBR_COLUMNS = ("file", "label", "dataset", "slide", "x", "y")
_AMIBR_LABELS = {"normal": False, "atypical": True}
_ATNORM_CLASSES = {"normal": False, "atypical": True}
_MITOS14_PATCH_RE = re.compile(r"^(([AH]\d{2})_[0-9A-Za-z]+)_\d+$")


def read_amibr(root: str | Path, *, crop_size: int = 128, require_images: bool = True) -> list[ImageRecord]:
    """Read AMi-Br (Bertram et al. 2025): one record per crop with ALL its mitoses.

    ``amibr.csv`` has one row per crop (``file,label,dataset,slide,x,y,...``); ``x, y`` is
    the mitosis centre in the original slide image. Each crop is
    ``slide[y - 64 : y + 64, x - 64 : x + 64]`` (zero-padded beyond the slide border, as the
    black margins of border crops show), so slide pixel ``(X, Y)`` is crop pixel
    ``(X - x + 64, Y - y + 64)`` and the crop's own mitosis sits at crop pixel (64, 64).
    Every mitosis of the same ``(dataset, slide)`` whose crop pixel lies inside the crop
    (``-0.5 <= cx < 127.5``, same for y) is a label of that crop, so labels are complete.

    Args:
        root: the ``amibr/`` folder (``amibr.csv``, ``normal/``, ``atypical/``).
        crop_size: crop side in pixels (128).
        require_images: raise if a listed crop file is missing (a cheap ``stat``, no
            decoding).

    Returns:
        One record per CSV row, in CSV order. ``points`` (N, 2) float64 (x, y) in crop
        pixels, the crop's own mitosis first; labels all 1 (no hard negatives are given);
        ``mpp`` 0.25; ``slide`` ``f"{dataset}:{slide}"`` (``"MIDOG21:002.tiff"``);
        ``domain`` the dataset (``"MIDOG21"``/``"TUPAC16"``); ``extra`` holds
        ``"atypical"`` (N,) bools (the ``label`` column of each mitosis: the consensus of
        three experts), ``"origin"`` (x, y) of crop pixel (0, 0) in slide pixels, and
        ``"experts"``: the crop's own mitosis as two experts labelled it (``expert1_label``,
        ``expert2_label``: ``"AMF segregation"``, ``"NMF metaphase"``...; empty without the
        columns).

    Raises:
        ValueError: ``crop_size`` < 2.
        DataFormatError: missing CSV or columns, a bad row (file and line named), a
            duplicate file, or a missing crop with ``require_images``.
    """
    if crop_size < 2:
        raise ValueError(f"crop_size must be >= 2, got {crop_size!r}")
    root = check_dir(root, "AMi-Br root", "Pass the amibr/ folder that holds amibr.csv")
    csv_path = root / "amibr.csv"
    try:
        handle = open(csv_path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise format_error(csv_path, None, "file not found", "Restore amibr.csv from AMi-Br") from None
    half = crop_size // 2
    rows: list[tuple[int, Path, str, str, float, float, bool, tuple[str, ...]]] = []
    with handle:
        reader = csv.reader(handle)
        header = [c.strip() for c in next(reader, [])]
        missing = [c for c in _AMIBR_COLUMNS if c not in header]
        if missing:
            raise format_error(
                csv_path,
                1,
                f"header {header!r} lacks column(s) {missing}",
                f"amibr.csv needs the columns {list(_AMIBR_COLUMNS)}",
            )
        col = {name: header.index(name) for name in _AMIBR_COLUMNS}
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise format_error(
                    csv_path,
                    line,
                    f"{len(row)} fields, the header has {len(header)}",
                    "Give every row one value per header column",
                )
            file, label, dataset, slide = (row[col[c]].strip() for c in _AMIBR_COLUMNS[:4])
            if label not in _AMIBR_LABELS:
                raise format_error(csv_path, line, f"label {label!r}", "label must be 'normal' or 'atypical'")
            if not file or not dataset or not slide:
                raise format_error(csv_path, line, "empty file, dataset or slide", "Fill in every row")
            if file in seen:
                raise format_error(
                    csv_path,
                    line,
                    f"file {file!r} already listed on line {seen[file]}",
                    "List every crop once",
                )
            seen[file] = line
            x = parse_coordinate(row[col["x"]].strip(), csv_path, line, "x")
            y = parse_coordinate(row[col["y"]].strip(), csv_path, line, "y")
            image = root / file
            if require_images and not image.is_file():
                raise format_error(
                    csv_path,
                    line,
                    f"crop {image} not found",
                    "Restore the crop, or pass require_images=False",
                )
            experts = tuple(row[header.index(c)].strip() for c in ("expert1_label", "expert2_label") if c in header)
            rows.append((line, image, dataset, slide, x, y, _AMIBR_LABELS[label], experts))
    by_slide: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        by_slide.setdefault((r[2], r[3]), []).append(i)
    records: list[ImageRecord | None] = [None] * len(rows)
    for (dataset, slide), members in by_slide.items():
        xy = np.asarray([(rows[i][4], rows[i][5]) for i in members], dtype=np.float64)
        atypical = np.asarray([rows[i][6] for i in members], dtype=bool)
        for k, i in enumerate(members):
            origin = xy[k] - half
            local = xy - origin
            inside = np.all((local >= -0.5) & (local < crop_size - 0.5), axis=1)
            inside[k] = False
            order = np.concatenate([[k], np.flatnonzero(inside)])
            records[i] = ImageRecord(
                image=rows[i][1],
                points=local[order],
                labels=np.full(len(order), LABEL_MITOSIS, dtype=np.int64),
                mpp=AMIBR_MPP,
                slide=f"{dataset}:{slide}",
                domain=dataset,
                source="amibr",
                extra={"atypical": atypical[order], "origin": tuple(origin.tolist()), "experts": rows[i][7]},
            )
    return records  # type: ignore[return-value]


def read_atnorm(root: str | Path, *, domain: str | None = None) -> list[ImageRecord]:
    """Read an AMi-Br benchmark crop set (``atnorm_br`` from TCGA, ``atnorm_md`` from MIDOG++).

    Every crop in ``normal/`` and ``atypical/`` holds one mitosis at its centre. The file
    names are bare indices (``103.jpg``) that do not name the source slide, so each crop is
    its own slide id ``f"{domain}:{stem}"``: splits by slide cannot keep crops of one source
    slide together for these sets. Sizes come from the image headers (no decoding).

    Args:
        root: folder holding ``normal/`` and ``atypical/`` (and, for atnorm_md,
            ``expert_votes.csv``).
        domain: domain label; default the folder name (``"atnorm_br"``).

    Returns:
        One record per crop (``normal/`` then ``atypical/``, sorted by name), each with one
        point at the geometric centre ``((w - 1) / 2, (h - 1) / 2)`` (63.5, 63.5 for 128 px),
        label 1; ``mpp`` 0.25; ``extra["atypical"]`` (1,) bool from the folder, and, when
        ``expert_votes.csv`` is present, ``extra["expert_votes"]`` (the five experts' classes)
        matched by file stem.

    Raises:
        DataFormatError: a class folder is missing, an unreadable image header, a
            malformed ``expert_votes.csv`` or a crop it does not list.
    """
    root = check_dir(root, "AMi-Br benchmark root", "Pass the folder holding normal/ and atypical/")
    domain = domain if domain is not None else root.name
    votes = _read_votes(root / "expert_votes.csv") if (root / "expert_votes.csv").exists() else None
    records: list[ImageRecord] = []
    for folder_name, is_atypical in _ATNORM_CLASSES.items():
        folder = check_dir(root / folder_name, folder_name, f"Put the {folder_name} crops in <root>/{folder_name}/")
        for path in sorted((p for p in folder.iterdir() if p.is_file()), key=_natural_key):
            width, height = image_size(path)
            extra: dict = {"atypical": np.array([is_atypical])}
            if votes is not None:
                if path.stem not in votes:
                    raise format_error(
                        root / "expert_votes.csv",
                        None,
                        f"no row for crop {path.name!r}",
                        "Restore expert_votes.csv from the benchmark",
                    )
                extra["expert_votes"] = votes[path.stem]
            records.append(
                ImageRecord(
                    image=path,
                    points=[((width - 1) / 2, (height - 1) / 2)],
                    labels=[LABEL_MITOSIS],
                    mpp=ATNORM_MPP,
                    slide=f"{domain}:{path.stem}",
                    domain=domain,
                    source="atnorm",
                    extra=extra,
                )
            )
    return records


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def _read_votes(path: Path) -> dict[str, tuple[str, ...]]:
    """``expert_votes.csv`` (``Filename,Expert_1..Expert_5,Majority``) -> stem -> votes."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [c.strip() for c in next(reader, [])]
        experts = [i for i, c in enumerate(header) if c.lower().startswith("expert")]
        if not header or header[0].lower() != "filename" or not experts:
            raise format_error(path, 1, f"header {header!r}", "Expected 'Filename,Expert_1,...,Majority'")
        votes: dict[str, tuple[str, ...]] = {}
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise format_error(
                    path,
                    reader.line_num,
                    f"{len(row)} fields, the header has {len(header)}",
                    "Give every row one value per header column",
                )
            votes[Path(row[0].strip()).stem] = tuple(row[i].strip() for i in experts)
    return votes


def read_mitos_atypia14_patches(root: str | Path) -> list[ImageRecord]:
    """Read the MITOS-ATYPIA-14 crops of ``mitosis/`` and ``non_mitosis/`` (H03 Hamamatsu).

    The set gives a class per crop but not where the mitosis is inside a ``mitosis/`` crop.
    So every record has zero points: ``non_mitosis/`` crops are usable as all-negative
    images, while ``mitosis/`` crops carry ``extra["position_unknown"] = True`` (and
    ``extra["contains_mitosis"] = True``) so a point-based sampler must skip them (they would
    otherwise teach "no mitosis here").

    Args:
        root: folder holding ``mitosis/`` and ``non_mitosis/``; names ``<FRAME>_<index>``.

    Returns:
        One record per crop (``mitosis/`` then ``non_mitosis/``, sorted by name), points
        (0, 2); ``slide`` the MITOS-ATYPIA-14 slide (``"H03"`` -- the same glass slide as
        ``A03``), ``extra["frame"]`` (``"H03_00Aa"``); ``mpp`` 0.2273 and ``domain``
        ``"hamamatsu"`` for H frames (0.2455 / ``"aperio"`` for A frames).

    Raises:
        DataFormatError: a class folder is missing or a name is not ``<FRAME>_<index>``.
    """
    root = check_dir(root, "MITOS-ATYPIA-14 patches root", "Pass the folder holding mitosis/ and non_mitosis/")
    records: list[ImageRecord] = []
    for folder_name, contains in (("mitosis", True), ("non_mitosis", False)):
        folder = check_dir(root / folder_name, folder_name, f"Put the {folder_name} crops in <root>/{folder_name}/")
        for path in sorted((p for p in folder.iterdir() if p.is_file()), key=_natural_key):
            match = _MITOS14_PATCH_RE.match(path.stem)
            if match is None:
                raise format_error(
                    path,
                    None,
                    f"name {path.stem!r} is not of the form <FRAME>_<index>",
                    "Keep the original crop names (e.g. H03_00Aa_4.jpg)",
                )
            frame, slide = match.group(1), match.group(2)
            domain, mpp = MITOS14_SCANNERS[slide[0]]
            records.append(
                ImageRecord(
                    image=path,
                    points=points_array([]),
                    labels=np.zeros(0, dtype=np.int64),
                    mpp=mpp,
                    slide=slide,
                    domain=domain,
                    source="mitos_atypia14_patches",
                    extra={
                        "frame": frame,
                        "position_unknown": contains,
                        "contains_mitosis": contains,
                    },
                )
            )
    return records
