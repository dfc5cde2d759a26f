"""A pathologist's corrections of one image, saved as ``NAME.reviewed.geojson``.

The file is QuPath GeoJSON (File > Import objects reads it) and every reader of mitodet's
reads it too (``mitodet evaluate``, ``mitodet readout``, training data specs: the class
decides the label, :func:`mitodet.data.readers.generic.read_qupath_geojson`):

* ``Mitotic figure``: the mitoses of the image after review: the model's detections at the
  reviewer's threshold that were not rejected, those below it that were confirmed, and the
  ones the reviewer added (``properties.mitodet.origin`` is ``"model"`` or ``"added"``,
  ``properties.mitodet.reviewed`` whether a person looked at it);
* ``Not mitotic figure``: detections the reviewer rejected (hard negatives for training).

The FeatureCollection carries a foreign member ``mitodet`` (RFC 7946 section 6.1) with the
threshold and the time of the review, so the page reopens where it was left.

What the browser sends (:func:`parse_review`) is JSON only, checked field by field, bounded in
size, its points inside the image: nothing from it is ever executed, unpickled or used as a
path.
"""

from __future__ import annotations

import datetime
import json
import math
import uuid
from pathlib import Path
from typing import Any

MITOSIS_CLASS = "Mitotic figure"
NOT_MITOSIS_CLASS = "Not mitotic figure"
LABELS = {"mitosis": MITOSIS_CLASS, "not_mitosis": NOT_MITOSIS_CLASS}
ORIGINS = ("model", "added")
MAX_POINTS = 200_000
COLORS = {MITOSIS_CLASS: [0, 158, 115], NOT_MITOSIS_CLASS: [213, 94, 0]}


class BadReview(ValueError):
    """What the browser sent is not a review (the server answers 400 with the message)."""


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BadReview(f"{what} must be a finite number, got {v!r}")
    return float(v)


def parse_review(doc: Any, image_shape: tuple[int, int]) -> dict[str, Any]:
    """Check a review sent by the page: ``{"threshold": t, "points": [{"x", "y", "label",
    "origin", "score", "reviewed"}, ...]}`` -> the same, normalised.

    Raises:
        BadReview: anything else (wrong types, unknown labels, points outside the image,
            more than :data:`MAX_POINTS`).
    """
    if not isinstance(doc, dict):
        raise BadReview("the review must be a JSON object with 'threshold' and 'points'")
    thr = _number(doc.get("threshold"), "threshold")
    if not 0.0 <= thr <= 1.0:
        raise BadReview(f"threshold must be in [0, 1], got {thr}")
    pts = doc.get("points")
    if not isinstance(pts, list):
        raise BadReview("'points' must be a list")
    if len(pts) > MAX_POINTS:
        raise BadReview(f"{len(pts)} points; at most {MAX_POINTS} per image")
    h, w = image_shape
    out = []
    for i, p in enumerate(pts):
        if not isinstance(p, dict):
            raise BadReview(f"points[{i}] must be an object")
        x, y = _number(p.get("x"), f"points[{i}].x"), _number(p.get("y"), f"points[{i}].y")
        if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
            raise BadReview(f"points[{i}] ({x:g}, {y:g}) is outside the {w} x {h} image")
        label = p.get("label")
        if label not in LABELS:
            raise BadReview(f"points[{i}].label must be one of {sorted(LABELS)}, got {label!r}")
        origin = p.get("origin", "model")
        if origin not in ORIGINS:
            raise BadReview(f"points[{i}].origin must be one of {ORIGINS}, got {origin!r}")
        score = p.get("score")
        if score is not None:
            score = _number(score, f"points[{i}].score")
        reviewed = p.get("reviewed", True)
        if not isinstance(reviewed, bool):
            raise BadReview(f"points[{i}].reviewed must be true or false")
        out.append({"x": x, "y": y, "label": label, "origin": origin, "score": score, "reviewed": reviewed})
    return {"threshold": thr, "points": out}


def review_geojson(review: dict[str, Any], image: str) -> dict[str, Any]:
    """The QuPath FeatureCollection of a parsed review."""
    feats = []
    for p in review["points"]:
        cls = LABELS[p["label"]]
        props: dict[str, Any] = {
            "objectType": "detection",
            "classification": {"name": cls, "color": COLORS[cls]},
            "mitodet": {"origin": p["origin"], "reviewed": p["reviewed"]},
        }
        if p["score"] is not None:
            props["measurements"] = {"score": p["score"]}
        feats.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid4()),
                "geometry": {"type": "Point", "coordinates": [p["x"], p["y"]]},
                "properties": props,
            }
        )
    return {
        "type": "FeatureCollection",
        "mitodet": {
            "image": image,
            "threshold": review["threshold"],
            "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "n_mitoses": sum(p["label"] == "mitosis" for p in review["points"]),
            "n_not_mitoses": sum(p["label"] == "not_mitosis" for p in review["points"]),
        },
        "features": feats,
    }


def save_review(path: Path, review: dict[str, Any], image: str) -> dict[str, Any]:
    """Write the review atomically (temporary file, fsync, rename); returns what was saved."""
    from mitodet.checks import atomic_write_text

    doc = review_geojson(review, image)
    atomic_write_text(path, json.dumps(doc, allow_nan=False) + "\n")
    return doc["mitodet"]


def load_review(path: Path) -> dict[str, Any] | None:
    """The review saved at ``path`` as the page sends it (None when there is none), read
    back through the project's own GeoJSON reader so the page shows what every other reader
    sees; a file edited in QuPath (no ``mitodet`` members) reads as reviewed points."""
    from mitodet.data.readers.generic import read_qupath_geojson
    from mitodet.data.records import LABEL_MITOSIS

    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    (rec,) = read_qupath_geojson(path, image=path.name, mpp=1.0)
    feats = [
        f.get("properties") or {}
        for f in doc.get("features", [])
        if (f.get("geometry") or {}).get("type") == "Point"
        and ((f.get("properties") or {}).get("classification") or {}).get("name") in LABELS.values()
    ]
    if len(feats) == len(rec.points):  # mitodet's own file: per-point bookkeeping and scores
        meta = [p.get("mitodet") or {} for p in feats]
        scores = [(p.get("measurements") or {}).get("score") for p in feats]
    else:  # written by another tool (QuPath after editing): what the reader made of it
        meta = [{} for _ in rec.points]
        scores = rec.scores.tolist() if rec.scores is not None else [None] * len(rec.points)
    points = []
    for (x, y), lab, s, m in zip(rec.points.tolist(), rec.labels.tolist(), list(scores), meta):
        s = None if not isinstance(s, (int, float)) or not math.isfinite(s) else float(s)
        points.append(
            {
                "x": x,
                "y": y,
                "label": "mitosis" if lab == LABEL_MITOSIS else "not_mitosis",
                "origin": m.get("origin", "model" if s is not None else "added"),
                "score": s,
                "reviewed": bool(m.get("reviewed", True)),
            }
        )
    info = doc.get("mitodet") if isinstance(doc.get("mitodet"), dict) else {}
    return {"threshold": info.get("threshold"), "saved": info.get("saved"), "points": points}
