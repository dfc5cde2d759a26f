"""Writers: CSV, QuPath GeoJSON, MIDOG JSON, summary; all atomic."""

from __future__ import annotations

import csv
import json
import os
import uuid
from numbers import Real
from pathlib import Path

import numpy as np
import pytest

from mitodet.report import outputs
from mitodet.report.outputs import (
    write_csv,
    write_geojson,
    write_midog_json,
    write_summary,
)
from mitodet.report.readout import summarize

PTS = np.array([[100.0, 200.0], [1000.5, 20.25], [0.0, 0.0]])
SCORES = np.array([0.9, 0.55, 0.2])


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_csv_columns_and_units(tmp_path):
    p = write_csv(tmp_path / "d.csv", PTS, SCORES, mpp=0.25)
    with p.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0].keys()) == ["x", "y", "score", "x_um", "y_um"]
    assert len(rows) == 3
    got = np.array([[float(r[k]) for k in ("x", "y", "score", "x_um", "y_um")] for r in rows])
    np.testing.assert_allclose(got[:, :2], PTS)
    np.testing.assert_allclose(got[:, 2], SCORES)
    np.testing.assert_allclose(got[:, 3:], PTS * 0.25)
    assert _no_temp_files(tmp_path)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~_umask())  # not mkstemp's 0600


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_csv_empty_and_without_scores(tmp_path):
    p = write_csv(tmp_path / "e.csv", np.zeros((0, 2)), np.zeros(0), mpp=0.25)
    assert p.read_text() == "x,y,score,x_um,y_um\n"
    p = write_csv(tmp_path / "n.csv", PTS[:1], None, mpp=0.5)
    assert p.read_text().splitlines()[1] == "100.0,200.0,,50.0,100.0"


def _check_rfc7946_point_collection(doc):
    """Structural check of the RFC 7946 parts we use: FeatureCollection of Point Features."""
    assert isinstance(doc, dict) and doc["type"] == "FeatureCollection"
    assert isinstance(doc["features"], list)
    for f in doc["features"]:
        assert f["type"] == "Feature"
        g = f["geometry"]
        assert isinstance(g, dict) and g["type"] == "Point"
        c = g["coordinates"]
        assert isinstance(c, list) and len(c) == 2
        assert all(isinstance(v, Real) and not isinstance(v, bool) for v in c)
        assert isinstance(f["properties"], dict)  # RFC 7946 3.2: an object (or null)
        assert isinstance(f.get("id", ""), (str, int))  # 3.2: id is a string or number


def _check_qupath_detection(f, name, color):
    props = f["properties"]
    assert props["objectType"] == "detection"
    assert props["classification"] == {"name": name, "color": list(color)}
    assert uuid.UUID(f["id"]).version == 4


def test_geojson_structure_and_qupath_keys(tmp_path):
    p = write_geojson(tmp_path / "d.geojson", PTS, SCORES, color=(10, 20, 30))
    doc = json.loads(p.read_text())
    _check_rfc7946_point_collection(doc)
    assert len(doc["features"]) == 3
    ids = {f["id"] for f in doc["features"]}
    assert len(ids) == 3
    for f, (x, y), s in zip(doc["features"], PTS, SCORES):
        _check_qupath_detection(f, "Mitotic figure", (10, 20, 30))
        assert f["geometry"]["coordinates"] == [x, y]  # pixels, as QuPath uses
        assert f["properties"]["measurements"] == {"score": s}  # QuPath >= 0.4 map form
    assert _no_temp_files(tmp_path)


def test_geojson_empty_and_no_scores(tmp_path):
    doc = json.loads(write_geojson(tmp_path / "e.geojson", np.zeros((0, 2)), None).read_text())
    assert doc == {"type": "FeatureCollection", "features": []}
    doc = json.loads(write_geojson(tmp_path / "n.geojson", PTS[:1], None, classification="Mitosis").read_text())
    assert "measurements" not in doc["features"][0]["properties"]
    assert doc["features"][0]["properties"]["classification"]["name"] == "Mitosis"


def test_geojson_with_jsonschema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = {
        "type": "object",
        "required": ["type", "features"],
        "properties": {
            "type": {"const": "FeatureCollection"},
            "features": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "geometry", "properties"],
                    "properties": {
                        "type": {"const": "Feature"},
                        "id": {"type": ["string", "number"]},
                        "geometry": {
                            "type": "object",
                            "required": ["type", "coordinates"],
                            "properties": {
                                "type": {"const": "Point"},
                                "coordinates": {"type": "array", "minItems": 2, "items": {"type": "number"}},
                            },
                        },
                        "properties": {"type": ["object", "null"]},
                    },
                },
            },
        },
    }
    doc = json.loads(write_geojson(tmp_path / "d.geojson", PTS, SCORES).read_text())
    jsonschema.validate(doc, schema)


def test_midog_json_structure_and_millimetres(tmp_path):
    p = write_midog_json(tmp_path / "mitotic-figures.json", PTS, SCORES, mpp=0.25)
    doc = json.loads(p.read_text())
    assert doc["type"] == "Multiple points"
    assert doc["name"] == "Points of interest"
    assert doc["version"] == {"major": 1, "minor": 0}
    assert len(doc["points"]) == 3
    for pt, (x, y), s in zip(doc["points"], PTS, SCORES):
        assert set(pt) == {"name", "point", "probability"}
        assert pt["name"] == "mitotic figure"
        assert pt["point"] == pytest.approx([x * 0.25 / 1000, y * 0.25 / 1000, 0])
        assert pt["probability"] == s
    # 1000.5 px at 0.25 um/px = 250.125 um = 0.250125 mm
    assert doc["points"][1]["point"][0] == pytest.approx(0.250125)


def test_midog_threshold_names_and_score_range(tmp_path):
    doc = json.loads(write_midog_json(tmp_path / "m.json", PTS, SCORES, mpp=0.25, threshold=0.5).read_text())
    assert [p["name"] for p in doc["points"]] == ["mitotic figure", "mitotic figure", "non-mitotic figure"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_midog_json(tmp_path / "bad.json", PTS, SCORES * 3, mpp=0.25)
    assert not (tmp_path / "bad.json").exists()


def test_summary_json_and_markdown(tmp_path):
    s = summarize(PTS, SCORES, 0.25, (2000, 2000))
    jp, mp = write_summary(tmp_path / "summary.json", tmp_path / "summary.md", s)
    assert json.loads(jp.read_text()) == json.loads(json.dumps(s))
    md = mp.read_text()
    assert "Mitotic figures detected | 3" in md
    assert "Tissue area" in md and "per mm²" in md and "per 10 HPF" in md
    assert f"Score {s['nottingham']['score']}" in md
    assert "field diameter 0.55 mm" in md and "<= 8" in md and "9-17" in md and ">= 18" in md
    assert "extrapolated" in md  # a 0.25 mm^2 image is smaller than 10 HPF
    assert "Elston" in md
    assert _no_temp_files(tmp_path)


def test_failed_replace_leaves_no_partial_target_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "d.geojson"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(outputs.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_geojson(target, PTS, SCORES)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "d.csv"
    write_csv(target, PTS, SCORES, mpp=0.25)
    before = target.read_text()
    real_write_bytes = Path.write_bytes

    def failing(self, data):
        real_write_bytes(self, data[: len(data) // 2])  # a half-written temp file...
        raise OSError("I/O error")  # ...then the write fails

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(OSError, match="I/O error"):
        write_csv(target, PTS[:1], SCORES[:1], mpp=0.5)
    assert target.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.csv"]


def test_unserialisable_summary_writes_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_summary(tmp_path / "s.json", tmp_path / "s.md", {"count": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        write_csv(tmp_path / "a.csv", np.zeros((3, 3)), None, mpp=0.25)
    with pytest.raises(ValueError, match="3 points but 2 scores"):
        write_geojson(tmp_path / "a.geojson", PTS, SCORES[:2])
    with pytest.raises(ValueError, match="mpp"):
        write_midog_json(tmp_path / "a.json", PTS, SCORES, mpp=-1)
    with pytest.raises(ValueError, match="color"):
        write_geojson(tmp_path / "a.geojson", PTS, SCORES, color=(300, 0, 0))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_csv(tmp_path / "missing" / "a.csv", PTS, SCORES, mpp=0.25)
    assert list(tmp_path.iterdir()) == []
