"""Generic point formats: a points CSV with a header, and QuPath GeoJSON."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mitodet.data.readers._common import (
    format_error,
    parse_coordinate,
    parse_number,
    points_array,
)
from mitodet.data.readers.midog import load_json
from mitodet.data.records import LABEL_HARD_NEGATIVE, LABEL_MITOSIS, ImageRecord

__all__ = ["read_points_csv", "parse_points_csv", "PointRows", "read_qupath_geojson", "parse_label", "LABEL_NAMES"]

#: column name -> accepted header spellings (case-insensitive); the first is the canonical one
_COLUMNS: dict[str, tuple[str, ...]] = {
    "image": ("image", "image_name", "image_id", "file", "filename", "file_name"),
    "x": ("x",),
    "y": ("y",),
    "score": ("score", "probability", "confidence"),
    "label": ("label", "class"),
    "mpp": ("mpp",),
    "slide": ("slide",),
    "domain": ("domain", "scanner"),
}
#: columns ``mitodet detect`` writes beside x, y, score: read and ignored
IGNORED_COLUMNS = ("x_um", "y_um", "first_stage_score", "atypical_probability")

#: accepted spellings of a label (case-insensitive, surrounding spaces ignored), in every
#: point format mitodet reads (points CSV for training, ``mitodet evaluate``, ``detect --gt``)
LABEL_NAMES: dict[str, int] = {
    **{
        k: LABEL_MITOSIS
        for k in ("1", "1.0", "mitosis", "mitotic", "mitotic figure", "mitotic_figure", "mf", "positive", "true")
    },
    **{
        k: LABEL_HARD_NEGATIVE
        for k in (
            "0",
            "0.0",
            "2",
            "hard_negative",
            "hard negative",
            "hard-negative",
            "negative",
            "non_mitosis",
            "non-mitosis",
            "non mitosis",
            "not mitotic figure",
            "non-mitotic",
            "imposter",
            "impostor",
            "false",
        )
    },
}


def parse_label(text: str) -> int | None:
    """Map a label spelling (``1``/``0``, ``mitosis``, ``hard_negative``, MIDOG's imposter
    category ``2``, ...) to 1/0, else None."""
    return LABEL_NAMES.get(text.strip().lower())


@dataclass
class PointRows:
    """The rows of one image of a points CSV (:func:`parse_points_csv`)."""

    name: str  # the ``image`` cell as written (or the default image)
    image: Path  # resolved against the image root
    points: list[tuple[float, float]]
    labels: list[int]
    scores: list[float] | None  # None when the file has no score column
    mpp: float | None
    slide: str | None
    domain: str | None
    line: int  # where the image first appears


def parse_points_csv(
    path: str | Path, *, image_root: str | Path | None = None, default_image: str | None = None
) -> list[PointRows]:
    """Parse a points CSV into per-image rows: the one set of rules for every caller.

    Columns (header required, any order; spellings in ``_COLUMNS``): ``image``, ``x``, ``y``
    and optionally ``score`` (or ``probability``, ``confidence``), ``label`` (or ``class``),
    ``mpp``, ``slide``, ``domain`` (or ``scanner``); the extra columns ``mitodet detect``
    writes (``IGNORED_COLUMNS``) are ignored. Any other column is refused, so a typo
    (``lable``) cannot silently drop labels. Without an ``image`` column every row belongs
    to ``default_image`` (a single-image file such as ``detect``'s ``<name>.csv``); with no
    default that is an error.

    - ``x``, ``y``: (column, row) in level-0 pixels, finite and >= 0. A row with both empty
      declares an image without objects.
    - ``label``: see :data:`LABEL_NAMES`; empty or no column -> 1 (mitosis).
    - ``mpp``, ``slide``, ``domain``: one value per image (conflicts are errors).

    Raises:
        DataFormatError: missing file, bad header, wrong field count, a bad number, label or
            coordinate, conflicting per-image values (file and line named).
    """
    path = Path(path)
    base = Path(image_root) if image_root is not None else path.parent
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise format_error(path, None, "file not found", "Check the path") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next((row for row in reader if any(c.strip() for c in row)), None)
        except (csv.Error, UnicodeDecodeError) as e:
            raise format_error(path, reader.line_num, f"unreadable CSV ({e})", "Save it as UTF-8 CSV") from None
        if header is None:
            raise format_error(
                path,
                None,
                "empty file: no header",
                "Start with a header line 'image,x,y[,score][,label][,mpp]'",
            )
        header_line = reader.line_num
        columns = [c.strip().lower() for c in header]
        spelling = {alias: name for name, aliases in _COLUMNS.items() for alias in aliases}
        canonical = [spelling.get(c, c) for c in columns]
        required = ["x", "y"] + (["image"] if default_image is None else [])
        missing = [c for c in required if c not in canonical]
        unknown = [c for c in columns if c not in spelling and c not in IGNORED_COLUMNS]
        duplicated = sorted({c for c in canonical if canonical.count(c) > 1 and c in _COLUMNS})
        if missing or unknown or duplicated:
            problems = []
            if missing:
                problems.append(f"missing column(s) {missing}")
            if unknown:
                problems.append(f"unknown column(s) {unknown}")
            if duplicated:
                problems.append(f"duplicated column(s) {duplicated}")
            raise format_error(
                path,
                header_line,
                f"bad header {header!r}: " + "; ".join(problems),
                "Use the columns ['image', 'x', 'y'] plus any of ['score', 'label', 'mpp', 'slide', "
                "'domain'] (x = column, y = row, level-0 pixels)",
            )
        col = {name: i for i, name in enumerate(canonical) if name in _COLUMNS}
        groups: dict[str, PointRows] = {}
        try:
            for row in reader:
                line = reader.line_num
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(columns):
                    raise format_error(
                        path,
                        line,
                        f"{len(row)} fields, the header has {len(columns)}",
                        "Give every row one value per header column (empty for none)",
                    )
                cell = {name: row[i].strip() for name, i in col.items()}
                key = cell["image"] if "image" in cell else str(default_image)
                if not key:
                    raise format_error(path, line, "empty image", "Name the image of every row")
                group = groups.get(key)
                if group is None:
                    image = Path(key)
                    group = groups[key] = PointRows(
                        key,
                        image if image.is_absolute() else base / image,
                        [],
                        [],
                        [] if "score" in col else None,
                        None,
                        None,
                        None,
                        line,
                    )
                for name in ("slide", "domain"):
                    value = cell.get(name, "")
                    if value:
                        if getattr(group, name) not in (None, value):
                            raise format_error(
                                path,
                                line,
                                f"{name} {value!r} differs from {getattr(group, name)!r} "
                                f"given earlier for image {key!r}",
                                f"Give one {name} per image",
                            )
                        setattr(group, name, value)
                if cell.get("mpp", ""):
                    row_mpp = parse_number(cell["mpp"], path, line, "mpp")
                    if not row_mpp > 0:
                        raise format_error(path, line, f"mpp is {cell['mpp']!r}", "mpp must be > 0")
                    if group.mpp is not None and not math.isclose(group.mpp, row_mpp):
                        raise format_error(
                            path,
                            line,
                            f"mpp {row_mpp} differs from {group.mpp} given earlier for image {key!r}",
                            "Give one mpp per image",
                        )
                    group.mpp = row_mpp
                if not cell["x"] and not cell["y"]:
                    continue  # declares an image without objects
                if not cell["x"] or not cell["y"]:
                    raise format_error(
                        path,
                        line,
                        f"only one of x={cell['x']!r}, y={cell['y']!r} is given",
                        "Give both x and y, or leave both empty for an image without objects",
                    )
                group.points.append(
                    (
                        parse_coordinate(cell["x"], path, line, "x"),
                        parse_coordinate(cell["y"], path, line, "y"),
                    )
                )
                label_text = cell.get("label", "")
                label = LABEL_MITOSIS if not label_text else parse_label(label_text)
                if label is None:
                    raise format_error(
                        path,
                        line,
                        f"unknown label {label_text!r}",
                        "Use 1/mitosis for mitotic figures and 0/hard_negative for look-alikes",
                    )
                group.labels.append(label)
                if group.scores is not None:
                    group.scores.append(parse_number(cell["score"], path, line, "score"))
        except (csv.Error, UnicodeDecodeError) as e:
            raise format_error(path, reader.line_num, f"unreadable CSV ({e})", "Save it as UTF-8 CSV") from None
    return list(groups.values())


def read_points_csv(
    path: str | Path,
    *,
    image_root: str | Path | None = None,
    mpp: float | None = None,
) -> list[ImageRecord]:
    """Read a CSV of point labels, one row per object, grouped into one record per image.

    The columns and rules are :func:`parse_points_csv`'s (an ``image`` column is required
    here). ``mpp`` must agree across the rows of one image; without the column (or where
    empty) the ``mpp`` argument is used. ``slide`` defaults to the image file stem,
    ``domain`` to ``""``.

    Args:
        path: the CSV file (UTF-8, comma separated).
        image_root: folder that relative ``image`` paths are resolved against; default the
            CSV's own folder. Absolute paths are kept. Images need not exist.
        mpp: um per pixel for rows without an ``mpp`` value.

    Returns:
        One record per image, in order of first appearance; ``scores`` (N,) when the CSV has a
        ``score`` column, else ``None``; ``source`` ``"points_csv"``.

    Raises:
        ValueError: ``mpp`` given but not positive.
        DataFormatError: as :func:`parse_points_csv`, and an image without a pixel size.
    """
    path = Path(path)
    if mpp is not None and not mpp > 0:
        raise ValueError(f"mpp must be > 0, got {mpp!r}")
    records: list[ImageRecord] = []
    for group in parse_points_csv(path, image_root=image_root):
        image_mpp = group.mpp if group.mpp is not None else mpp
        if image_mpp is None:
            raise format_error(
                path,
                group.line,
                f"no pixel size for image {group.name!r}",
                "Add an 'mpp' column (um per pixel) or pass mpp=... to read_points_csv",
            )
        records.append(
            ImageRecord(
                image=group.image,
                points=points_array(group.points),
                labels=np.asarray(group.labels, dtype=np.int64),
                mpp=image_mpp,
                slide=group.slide or Path(group.name).stem,
                domain=group.domain or "",
                scores=None if group.scores is None else np.asarray(group.scores, dtype=np.float64),
                source="points_csv",
            )
        )
    return records


_NEGATIVE_WORDS = {"non", "not", "negative", "imposter", "impostor", "mimic", "lookalike", "nonmitotic", "nonmitosis"}
_SCORE_NAMES = _COLUMNS["score"]


def _class_label(name: str | None, label_map: Mapping[str, int] | None) -> int | None:
    """QuPath class name -> label (see ``read_qupath_geojson``); None if not recognised."""
    if name is None or not name.strip():
        return LABEL_MITOSIS
    if label_map is not None:
        for key, value in label_map.items():
            if key.strip().lower() == name.strip().lower():
                return int(value)
    lowered = name.lower()
    words = set(re.split(r"[^a-z]+", lowered))
    if words & _NEGATIVE_WORDS or "look alike" in lowered or "look-alike" in lowered:
        return LABEL_HARD_NEGATIVE
    if any(w.startswith(("mitos", "mitotic")) for w in words):
        return LABEL_MITOSIS
    return None


def _class_name(properties: Mapping[str, Any]) -> str | None:
    cls = properties.get("classification")
    if cls is None:
        return None
    if isinstance(cls, str):
        return cls
    if isinstance(cls, Mapping):
        if isinstance(cls.get("name"), str):
            return cls["name"]
        if isinstance(cls.get("names"), list):  # QuPath derived classes: "Mitosis: Atypical"
            return ": ".join(str(n) for n in cls["names"])
    return None


def _score(properties: Mapping[str, Any]) -> float | None:
    measurements = properties.get("measurements")
    items: list[tuple[str, Any]] = []
    if isinstance(measurements, Mapping):
        items = list(measurements.items())
    elif isinstance(measurements, list):
        items = [(m.get("name"), m.get("value")) for m in measurements if isinstance(m, Mapping)]
    for key, value in items:
        if isinstance(key, str) and key.strip().lower() in _SCORE_NAMES:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return None


def _ring_centroid(ring: np.ndarray) -> tuple[np.ndarray, float]:
    """Area-weighted centroid and absolute area of a closed or open ring (M, 2)."""
    x, y = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = cross.sum() / 2
    if abs(area) < 1e-12:  # degenerate (a line or a point): fall back to the vertex mean
        return ring.mean(axis=0), 0.0
    cx = ((x + x1) * cross).sum() / (6 * area)
    cy = ((y + y1) * cross).sum() / (6 * area)
    return np.array([cx, cy]), abs(area)


def _geometry_points(geometry: Any, path: Path, where: str) -> list[np.ndarray]:
    """Points (x, y) an object geometry contributes: one per Point, one centroid per Polygon."""
    if not isinstance(geometry, Mapping):
        raise format_error(path, None, f"{where}: no geometry object", "Give every feature a geometry")
    kind, coords = geometry.get("type"), geometry.get("coordinates")

    def as_array(value: Any, depth_name: str) -> np.ndarray:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.empty(0)
        if arr.ndim == 0 or arr.shape[-1] < 2 or arr.size == 0:
            raise format_error(
                path,
                None,
                f"{where}: {kind} coordinates {str(value)[:60]!r} are not {depth_name}",
                "Write GeoJSON coordinates as [x, y] pairs in level-0 pixels",
            )
        return arr[..., :2]

    if kind == "Point":
        return [as_array(coords, "an [x, y] pair").reshape(2)]
    if kind == "MultiPoint":
        return list(as_array(coords, "a list of [x, y] pairs").reshape(-1, 2))
    if kind in ("Polygon", "MultiPolygon"):
        polygons = [coords] if kind == "Polygon" else coords
        if not isinstance(polygons, list) or not polygons:
            raise format_error(path, None, f"{where}: empty {kind}", "Remove the feature or fix it")
        centres, areas = [], []
        for polygon in polygons:
            if not isinstance(polygon, list) or not polygon:
                raise format_error(path, None, f"{where}: empty polygon", "Fix the geometry")
            # the centroid of the outer ring (holes in a mitosis outline are ignored)
            ring = as_array(polygon[0], "a ring of [x, y] pairs").reshape(-1, 2)
            centre, area = _ring_centroid(ring)
            centres.append(centre)
            areas.append(area)
        weights = np.asarray(areas) if sum(areas) > 0 else np.ones(len(areas))
        return [np.average(np.asarray(centres), axis=0, weights=weights)]
    raise format_error(
        path,
        None,
        f"{where}: geometry type {kind!r} is not supported",
        "Use Point, MultiPoint, Polygon or MultiPolygon objects",
    )


def read_qupath_geojson(
    path: str | Path,
    image: str | Path,
    mpp: float,
    *,
    slide: str | None = None,
    domain: str = "",
    label_map: Mapping[str, int] | None = None,
) -> list[ImageRecord]:
    """Read a QuPath GeoJSON export of point or outline annotations of one image.

    Accepts a ``FeatureCollection``, a bare list of ``Feature`` s, or a single ``Feature``.
    Geometries: ``Point`` (one object), ``MultiPoint`` (one object per point, all with the
    feature's class), ``Polygon`` / ``MultiPolygon`` (one object at the area-weighted
    centroid of the outer ring(s)). Class (``properties.classification.name``), matched
    case-insensitively, after ``label_map`` if given:

    - names with a negating or look-alike word (``Non-mitotic``, ``not mitotic figure``,
      ``Hard negative``, ``Imposter``, ``look-alike``) -> 0 (hard negative);
    - otherwise names containing ``mitosis``/``mitotic`` (``Mitosis``, ``Mitotic figure``,
      ``Atypical mitosis``) -> 1;
    - the class ``Hotspot`` (the rectangle ``mitodet detect`` adds) is skipped;
    - unclassified objects -> 1: a point placed without a class in a mitosis-annotation
      project is a mitosis (pass ``label_map`` to change other classes);
    - any other class -> error naming the class and the ``label_map`` fix.

    A measurement called ``score``/``probability``/``confidence`` (in
    ``properties.measurements``) becomes ``scores`` when every object has one.

    Args:
        path: the ``.geojson``/``.json`` file; coordinates in level-0 pixels of ``image``.
        image: the image the annotations belong to (need not exist).
        mpp: um per pixel of ``image``.
        slide: slide id; default the image file stem.
        domain: scanner/lab/tumour type.
        label_map: extra class name -> label (1/0) entries, checked first.

    Returns:
        A one-element list: the record of ``image`` with ``points`` (N, 2) float64 (x, y) =
        (column, row) in level-0 pixels as QuPath writes them (QuPath's pixel-corner
        coordinates are used unchanged: the half-pixel offset is below annotation precision).

    Raises:
        ValueError: ``mpp`` not positive.
        DataFormatError: invalid JSON (line named), an unsupported structure or geometry, a
            non-finite or negative coordinate, an unknown class (feature index named).
    """
    path = Path(path)
    if not mpp > 0:
        raise ValueError(f"mpp must be > 0, got {mpp!r}")
    data = load_json(path)
    if isinstance(data, Mapping) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, Mapping) and isinstance(data.get("features"), list):
        features = data["features"]
    elif isinstance(data, list):
        features = data
    else:
        raise format_error(
            path,
            None,
            "not a GeoJSON FeatureCollection, Feature or list of Features",
            "Export with QuPath's 'Export objects as GeoJSON'",
        )
    points: list[np.ndarray] = []
    labels: list[int] = []
    scores: list[float | None] = []
    for i, feature in enumerate(features):
        where = f"features[{i}]"
        if not isinstance(feature, Mapping):
            raise format_error(path, None, f"{where} is not an object", "Fix the feature")
        properties = feature.get("properties") or {}
        name = _class_name(properties)
        if name is not None and name.strip().lower() == "hotspot":
            continue  # the hotspot rectangle mitodet writes beside its detections: not an object
        label = _class_label(name, label_map)
        if label is None:
            raise format_error(
                path,
                None,
                f"{where}: unknown class {name!r}",
                f"Pass label_map={{{name!r}: 1}} (mitosis) or {{{name!r}: 0}} (hard negative)",
            )
        for p in _geometry_points(feature.get("geometry"), path, where):
            if not np.all(np.isfinite(p)) or np.any(p < 0):
                raise format_error(
                    path,
                    None,
                    f"{where}: point {p.tolist()} is not finite and >= 0",
                    "Coordinates are level-0 pixels from the image's top-left corner",
                )
            points.append(p)
            labels.append(label)
            scores.append(_score(properties))
    have_scores = bool(scores) and all(s is not None for s in scores)
    return [
        ImageRecord(
            image=Path(image),
            points=points_array([p.tolist() for p in points]),
            labels=np.asarray(labels, dtype=np.int64),
            mpp=float(mpp),
            slide=slide if slide is not None else Path(image).stem,
            domain=domain,
            scores=np.asarray(scores, dtype=np.float64) if have_scores else None,
            source="qupath_geojson",
        )
    ]
