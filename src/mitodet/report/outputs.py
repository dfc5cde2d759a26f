"""Writers for detection results in the formats users import elsewhere.

Every writer is atomic: the whole content is produced in memory first, written to a
temporary file in the target's folder, flushed to disk and moved into place with
``os.replace``. A reader never sees a half-written file, and a failed write leaves the
previous target (or no target) and no temporary file behind.

Formats (points are ``(N, 2)`` (x, y) = (column, row) in level-0 pixels):

* CSV (:func:`write_csv`): header ``x,y,score,x_um,y_um``; pixels and micrometres.
* QuPath GeoJSON (:func:`write_geojson`): a ``FeatureCollection`` (RFC 7946 structure)
  of ``Feature`` s with a ``Point`` geometry in **pixel** coordinates (QuPath's GeoJSON uses
  full-resolution pixels with the origin at the top-left), an ``id`` (UUID4 string, read
  by QuPath >= 0.4 as the object id), and ``properties`` with ``objectType: "detection"``,
  ``classification: {"name", "color": [r, g, b]}`` and ``measurements: {"score": s}``.
  This is what QuPath >= 0.4 writes and reads (``PathObjectTypeAdapters`` in qupath-core:
  measurements are a JSON object name -> number; the list-of-``{name, value}`` form is the
  pre-0.4 one, still read for compatibility; ``GsonTools.PathClassTypeAdapter`` reads a
  classification with ``name`` and an RGB ``color`` array).
* MIDOG / grand-challenge "Multiple points" JSON (:func:`write_midog_json`): coordinates in
  **millimetres** (``px * mpp / 1000``) with z = 0, each point with ``name``
  (``"mitotic figure"``, or ``"non-mitotic figure"`` below the decision threshold) and
  ``probability``, as specified by the MIDOG 2025 track-1 evaluation container README
  (DeepMicroscopy/MIDOG25_T1_evaluation_docker) and read by the MIDOG 2022+ evaluation
  code (points without ``name`` count as mitotic figures, without ``probability`` as 0.5).
  MIDOG 2021's reference container wrote only ``{"point": [x, y, 0]}``; the newer form is a
  superset that the 2021-style readers accept as well.
* A summary JSON plus a short Markdown report (:func:`write_summary`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitodet.checks import as_points, atomic_write_bytes, atomic_write_text

DEFAULT_CLASSIFICATION = "Mitotic figure"
#: QuPath class of the hotspot rectangle mitodet writes beside its detections (not an object:
#: the readers skip it)
HOTSPOT_CLASS = "Hotspot"
DEFAULT_COLOR = (0, 158, 115)
"""Okabe-Ito bluish green, the detection colour of :mod:`mitodet.report.viz` too."""
#: QuPath class of a detection the atypical classifier calls atypical (readers: a mitosis)
ATYPICAL_CLASSIFICATION = "Atypical mitotic figure"
ATYPICAL_RGB = (204, 121, 167)


def write_merged_csv(path: str | os.PathLike[str], columns: Sequence[str], rows: Sequence[dict], key) -> Path:
    """Write ``rows`` as a CSV index atomically, after the rows an earlier run left in ``path``
    whose ``key(row)`` none of ``rows`` has (an index that accumulates across runs, updated
    by key). An unreadable old index is rebuilt from ``rows``."""

    target = Path(path)
    mine = {key(r) for r in rows}
    kept: list[dict] = []
    if target.is_file():
        try:
            with open(target, newline="", encoding="utf-8") as fh:
                kept = [r for r in csv.DictReader(fh) if key(r) not in mine]
        except (OSError, UnicodeDecodeError, csv.Error, KeyError):
            kept = []
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore", restval="")
    wr.writeheader()
    for r in [*kept, *rows]:
        wr.writerow(r)
    return atomic_write_text(target, buf.getvalue())


def _points(points: object) -> np.ndarray:
    return as_points(points, "points")


def _scores(scores: object, n: int, *, unit: bool = False, missing_ok: bool = False) -> np.ndarray:
    """``(n,)`` float scores; NaN marks a missing one only with ``missing_ok``."""
    if scores is None:
        return np.full(n, np.nan)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(sc) != n:
        raise ValueError(f"{n} points but {len(sc)} scores")
    bad = ~np.isfinite(sc) & ~(np.isnan(sc) if missing_ok else False)
    if np.any(bad):
        raise ValueError("scores contain non-finite values")
    sc_ok = sc[np.isfinite(sc)]
    if unit and np.any((sc_ok < 0) | (sc_ok > 1)):
        raise ValueError(f"scores must lie in [0, 1] for this format, got min {sc.min():g}, max {sc.max():g}")
    return sc


def _mpp(mpp: object) -> float:
    m = float(mpp)  # type: ignore[arg-type]
    if not math.isfinite(m) or m <= 0:
        raise ValueError(f"mpp must be a finite number > 0 micrometres per pixel, got {mpp!r}")
    return m


def _color(color: Sequence[int]) -> list[int]:
    c = [int(v) for v in color]
    if len(c) != 3 or any(not 0 <= v <= 255 for v in c):
        raise ValueError(f"color must be three integers in [0, 255] (r, g, b), got {color!r}")
    return c


def write_csv(
    path: str | os.PathLike[str],
    points_px: np.ndarray,
    scores: np.ndarray | None,
    mpp: float,
    first_scores: np.ndarray | None = None,
    atypical: np.ndarray | None = None,
) -> Path:
    """Write detections as CSV with header ``x,y,score,x_um,y_um`` (``,first_stage_score``)
    (``,atypical_probability``).

    Args:
        path: output file.
        points_px: ``(N, 2)`` (x, y) in level-0 pixels.
        scores: ``(N,)`` scores, or None (the column is left empty).
        mpp: micrometres per level-0 pixel.
        first_scores: ``(N,)`` the detector's own scores when a second stage re-scored the
            detections (``score`` is then the final one); adds a ``first_stage_score`` column.
        atypical: ``(N,)`` P(atypical) of each detection (NaN: not classified); adds an
            ``atypical_probability`` column.
    """
    pts = _points(points_px)
    m = _mpp(mpp)
    sc = _scores(scores, len(pts))
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    header = ["x", "y", "score", "x_um", "y_um"]
    extra = None if first_scores is None else _scores(first_scores, len(pts)).tolist()
    atyp = None if atypical is None else _scores(atypical, len(pts), missing_ok=True).tolist()
    header += ([] if extra is None else ["first_stage_score"]) + ([] if atyp is None else ["atypical_probability"])
    wr.writerow(header)
    for i, ((x, y), s) in enumerate(zip(pts.tolist(), sc.tolist())):
        row = [repr(x), repr(y), "" if math.isnan(s) else repr(s), repr(x * m), repr(y * m)]
        if extra is not None:
            row.append(repr(extra[i]))
        if atyp is not None:
            row.append("" if math.isnan(atyp[i]) else repr(atyp[i]))
        wr.writerow(row)
    return atomic_write_text(path, buf.getvalue())


def geojson_features(
    points_px: np.ndarray,
    scores: np.ndarray | None,
    *,
    classification: str = DEFAULT_CLASSIFICATION,
    color: Sequence[int] = DEFAULT_COLOR,
    measurement_name: str = "score",
    hotspot: dict[str, Any] | None = None,
    atypical: np.ndarray | None = None,
    atypical_threshold: float | None = None,
) -> dict[str, Any]:
    """The QuPath GeoJSON ``FeatureCollection`` of point detections, as a dict.

    See :func:`write_geojson` for the structure; ``hotspot`` (``{"box_px": [x0, y0, x1, y1],
    "count": n}``) adds the hotspot as a rectangle annotation (class ``Hotspot``);
    ``atypical`` (P(atypical) per detection) classes those at or above ``atypical_threshold``
    ``Atypical mitotic figure`` and adds the measurement ``atypical probability``.
    """
    pts = _points(points_px)
    sc = _scores(scores, len(pts))
    rgb = _color(color)
    atyp = None if atypical is None else _scores(atypical, len(pts)).tolist()
    feats = []
    for i, ((x, y), s) in enumerate(zip(pts.tolist(), sc.tolist())):
        cls_name, cls_rgb = str(classification), list(rgb)
        if atyp is not None and atypical_threshold is not None and atyp[i] >= atypical_threshold:
            cls_name, cls_rgb = ATYPICAL_CLASSIFICATION, list(ATYPICAL_RGB)
        props: dict[str, Any] = {"objectType": "detection", "classification": {"name": cls_name, "color": cls_rgb}}
        measurements: dict[str, float] = {}
        if not math.isnan(s):
            measurements[measurement_name] = s
        if atyp is not None and not math.isnan(atyp[i]):
            measurements["atypical probability"] = atyp[i]
        if measurements:
            props["measurements"] = measurements
        feats.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid4()),
                "geometry": {"type": "Point", "coordinates": [x, y]},
                "properties": props,
            }
        )
    if hotspot is not None:
        x0, y0, x1, y1 = (float(v) for v in hotspot["box_px"])
        feats.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid4()),
                "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
                "properties": {
                    "objectType": "annotation",
                    "name": f"Hotspot ({hotspot.get('n_fields', 10)} HPF): {hotspot.get('count')} mitoses",
                    "classification": {"name": HOTSPOT_CLASS, "color": [0, 114, 178]},
                    "measurements": {"mitoses": hotspot.get("count")},
                },
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def write_geojson(
    path: str | os.PathLike[str],
    points_px: np.ndarray,
    scores: np.ndarray | None,
    *,
    classification: str = DEFAULT_CLASSIFICATION,
    color: Sequence[int] = DEFAULT_COLOR,
    measurement_name: str = "score",
    hotspot: dict[str, Any] | None = None,
    atypical: np.ndarray | None = None,
    atypical_threshold: float | None = None,
) -> Path:
    """Write detections as QuPath-importable GeoJSON (File > Import objects, or drag and drop).

    Each detection becomes::

        {"type": "Feature", "id": "<uuid4>",
         "geometry": {"type": "Point", "coordinates": [x, y]},
         "properties": {"objectType": "detection",
                        "classification": {"name": "Mitotic figure", "color": [r, g, b]},
                        "measurements": {"score": s}}}

    Args:
        path: output file (``.geojson``).
        points_px: ``(N, 2)`` (x, y) in level-0 pixels (QuPath's coordinates).
        scores: ``(N,)`` scores stored as the measurement ``measurement_name``; None omits
            the measurements.
        classification: QuPath class name.
        color: class colour as (r, g, b) in 0-255.
        measurement_name: name of the score measurement in QuPath's measurement table.
        hotspot: the read-out's hotspot (``box_px``, ``count``): also written, as a rectangle
            annotation of class ``Hotspot``.
        atypical, atypical_threshold: P(atypical) per detection and the classifier's
            threshold: detections at or above it get the class ``Atypical mitotic figure``.
    """
    fc = geojson_features(
        points_px,
        scores,
        classification=classification,
        color=color,
        measurement_name=measurement_name,
        hotspot=hotspot,
        atypical=atypical,
        atypical_threshold=atypical_threshold,
    )
    return atomic_write_text(path, json.dumps(fc, allow_nan=False) + "\n")


def midog_points(
    points_px: np.ndarray,
    scores: np.ndarray | None,
    mpp: float,
    *,
    threshold: float | None = None,
    name: str = "Points of interest",
    atypical: np.ndarray | None = None,
) -> dict[str, Any]:
    """The grand-challenge "Multiple points" dict of :func:`write_midog_json`."""
    pts = _points(points_px)
    m = _mpp(mpp)
    sc = _scores(scores, len(pts), unit=True)
    atyp = None if atypical is None else _scores(atypical, len(pts), unit=True).tolist()
    out = []
    for i, ((x, y), s) in enumerate(zip(pts.tolist(), sc.tolist())):
        p: dict[str, Any] = {
            "name": "mitotic figure"
            if (threshold is None or math.isnan(s) or s >= threshold)
            else "non-mitotic figure",
            "point": [x * m / 1000.0, y * m / 1000.0, 0],
        }
        if not math.isnan(s):
            p["probability"] = s
        if atyp is not None and not math.isnan(atyp[i]):
            p["atypical_probability"] = atyp[i]  # an extra key: grand-challenge's readers ignore it
        out.append(p)
    return {"name": name, "type": "Multiple points", "points": out, "version": {"major": 1, "minor": 0}}


def write_midog_json(
    path: str | os.PathLike[str],
    points_px: np.ndarray,
    scores: np.ndarray | None,
    mpp: float,
    *,
    threshold: float | None = None,
    name: str = "Points of interest",
    atypical: np.ndarray | None = None,
) -> Path:
    """Write detections in the MIDOG / grand-challenge "Multiple points" JSON format.

    Structure (coordinates in millimetres, ``x_mm = x_px * mpp / 1000``, z = 0)::

        {"name": "Points of interest", "type": "Multiple points",
         "points": [{"name": "mitotic figure", "point": [x_mm, y_mm, 0], "probability": p}],
         "version": {"major": 1, "minor": 0}}

    Args:
        path: output file (MIDOG containers write ``/output/mitotic-figures.json``).
        points_px: ``(N, 2)`` (x, y) in level-0 pixels.
        scores: ``(N,)`` probabilities in [0, 1], or None (no ``probability`` keys).
        mpp: micrometres per level-0 pixel.
        threshold: decision threshold; detections below it are written with name
            ``"non-mitotic figure"`` (MIDOG 2022+ use this to compute average precision from
            sub-threshold candidates). None names every point ``"mitotic figure"`` (for
            detections that are already thresholded).
        name: top-level ``name``.
    """
    d = midog_points(points_px, scores, mpp, threshold=threshold, name=name, atypical=atypical)
    return atomic_write_text(path, json.dumps(d, allow_nan=False, indent=1) + "\n")


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def summary_markdown(summary: dict[str, Any]) -> str:
    """A short Markdown report of :func:`mitodet.report.readout.summarize`'s dict (or a whole
    ``NAME.summary.json``); its read-out is read typed (:class:`~mitodet.report.readout.Readout`),
    so a missing key is an error, not "n/a"."""
    from mitodet.report.readout import Readout

    r = Readout.from_json(summary)
    nf = r.n_fields
    lines = ["# Mitotic count report", ""]
    if "image" in summary:
        lines += [f"Image: `{summary['image']}`", ""]
    lines += [
        "| Measure | Value |",
        "|---|---|",
        f"| Mitotic figures detected | {r.count} |",
        f"| Tissue area | {_fmt(r.tissue_area_mm2)} mm² |",
        f"| Mitoses per mm² (whole tissue) | {_fmt(r.count_per_mm2)} |",
        f"| Mitoses per {nf} HPF (whole-tissue average, HPF = {_fmt(r.field_area_mm2, 3)} mm²) | "
        f"{_fmt(r.count_per_10hpf, 1)} |",
    ]
    if r.score_threshold is not None:
        lines.append(f"| Detection score threshold | {_fmt(r.score_threshold)} |")
    at = summary.get("atypical")  # only when the model has an atypical classifier
    if at:
        frac = "n/a" if at["fraction"] is None else f"{100 * at['fraction']:.0f} %"
        lines += [
            f"| Called atypical (P >= {_fmt(at['threshold'])}) | {at['count']} ({frac} of the mitoses) |",
            f"| Atypical per {nf} HPF (whole tissue) | {_fmt(at['count_per_10hpf'], 1)} |",
        ]
    hot = r.hotspot
    if hot:
        lines += [
            f"| Hotspot ({nf} HPF = {_fmt(hot.area_mm2)} mm²): mitoses | {hot.count} |",
            f"| Hotspot: mitoses per {nf} HPF | {_fmt(hot.count_per_10hpf, 1)} |",
            f"| Hotspot box (x0, y0, x1, y1, px) | {', '.join(f'{v:.0f}' for v in hot.box_px(r.mpp))} |",
        ]
    lines.append("")
    if hot and hot.extrapolated:
        lines += [
            "**Note:** the image is smaller than 10 HPF; the hotspot is the whole image and its "
            "count was scaled to 10 HPF by the tissue area (extrapolated).",
            "",
        ]
    nt = r.nottingham
    lines += ["## Nottingham mitotic score", ""]
    if r.mitotic_score is not None:
        row = nt["table_row"]
        cut = nt["cutoffs"]
        lines += [
            f"**Score {r.mitotic_score}** from {_fmt(nt['count_per_10hpf'], 1)} mitoses per 10 HPF "
            f"in the hotspot (HPF area {_fmt(nt['field_area_mm2'], 3)} mm²).",
            "",
            f"Cut-offs used (table row: field diameter {row['field_diameter_mm']} mm, "
            f"area {row['field_area_mm2']} mm²): score 1 {cut['score_1']}, "
            f"score 2 {cut['score_2']}, score 3 {cut['score_3']} mitoses per 10 HPF.",
        ]
    else:
        lines.append(f"Not scored: {nt.get('error', 'no score available')}")
    if nt.get("table_source"):
        lines += ["", f"Table: {nt['table_source']}."]
    lines += ["", "_Automated detection: to be reviewed by a pathologist; not a diagnosis on its own._", ""]
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def write_summary(
    json_path: str | os.PathLike[str], md_path: str | os.PathLike[str] | None, summary: dict[str, Any]
) -> tuple[Path, Path | None]:
    """Write the read-out as JSON and (when ``md_path`` is given) a short Markdown report.

    Both documents are rendered before either is written, so an unserialisable summary
    writes nothing.
    """
    text = json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n"
    md = summary_markdown(summary) if md_path is not None else None
    jp = atomic_write_text(json_path, text)
    mp = atomic_write_text(md_path, md) if md_path is not None and md is not None else None
    return jp, mp


__all__ = [
    "DEFAULT_CLASSIFICATION",
    "DEFAULT_COLOR",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_csv",
    "geojson_features",
    "write_geojson",
    "midog_points",
    "write_midog_json",
    "summary_markdown",
    "write_summary",
]
