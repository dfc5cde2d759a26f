"""The viewer's server (Flask test client) on a real detect output folder: what it shows equals
what detect wrote, it serves nothing outside the folder and the inputs it records, bad
requests get 4xx JSON, and a review saved through it is read by every reader of the project."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NAME = "CMU-1-Small-Region"


def _summary(out: Path) -> dict:
    return json.loads((out / f"{NAME}.summary.json").read_text())


def _csv_points(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        return np.array([[float(r["x"]), float(r["y"]), float(r["score"])] for r in csv.DictReader(f)]).reshape(-1, 3)


def test_catalog_lists_the_image_and_its_case(client, fresh_out):
    cat = client.get("/api/catalog").get_json()
    s = _summary(fresh_out)
    assert [r["name"] for r in cat["images"]] == [NAME]
    row = cat["images"][0]
    assert row["count"] == s["count"] and row["score"] == s["nottingham"]["score"] and row["reviewed"] is False
    (case,) = cat["cases"]
    assert case["case"] == "case-A" and case["names"] == [NAME] and case["count"] == s["count"]
    assert client.get("/").status_code == 200 and b"<table" in client.get("/").data
    assert client.get(f"/image/{NAME}").status_code == 200


def test_live_readout_at_the_stored_threshold_is_detects_readout(client, fresh_out):
    s = _summary(fresh_out)
    r = client.get(f"/api/images/{NAME}/readout?threshold={s['score_threshold']}").get_json()
    for k in ("count", "tissue_area_mm2", "count_per_mm2", "count_per_10hpf"):
        assert r[k] == pytest.approx(s[k], rel=1e-9), k
    assert r["hotspot"]["box_px"] == pytest.approx(s["hotspot"]["box_px"])
    assert r["hotspot"]["count"] == s["hotspot"]["count"]
    assert r["nottingham"]["score"] == s["nottingham"]["score"]
    for k in ("tp", "fp", "fn"):
        assert r["evaluation"][k] == s["evaluation"][k], k
    assert s["evaluation"]["tp"] >= 1 and s["evaluation"]["fn"] >= 1  # the fixture's GT makes all three occur
    # no threshold given: the stored one
    assert client.get(f"/api/images/{NAME}/readout").get_json()["count"] == s["count"]


def test_candidates_hold_the_detections_and_the_slider_counts_them(client, fresh_out):
    s = _summary(fresh_out)
    got = client.get(f"/api/images/{NAME}/candidates").get_json()["points"]
    # [x, y, score, P(atypical)]: the bundled classifier ran on the detections, not below the threshold
    thr = s["score_threshold"]
    assert {len(c) for c in got} == {4}
    assert all(0 <= c[3] <= 1 for c in got if c[2] >= thr) and all(c[3] is None for c in got if c[2] < thr)
    cands = np.array([c[:3] for c in got])
    dets = _csv_points(fresh_out / f"{NAME}.csv")
    assert np.all(np.diff(cands[:, 2]) <= 0)  # by descending score
    above = cands[cands[:, 2] >= s["score_threshold"]]
    np.testing.assert_array_equal(above, dets)  # the CSV is exactly the candidates at the threshold
    assert len(cands) > 3 * len(dets)  # and there are candidates below it for the slider
    info = client.get(f"/api/images/{NAME}").get_json()
    assert info["n_candidates"] == len(cands) and info["floor"] == pytest.approx(cands[:, 2].min())
    assert info["layers"] == {"tissue": True, "heatmap": False} and info["has_gt"] is True
    counts = []
    for t in (0.0, 0.3, 0.6, 0.9, 0.99):
        r = client.get(f"/api/images/{NAME}/readout?threshold={t}").get_json()
        # every candidate lies on the tissue (detect dropped the others), so the count is the slider's
        assert r["count"] == int((cands[:, 2] >= t).sum())
        assert r["evaluation"]["tp"] + r["evaluation"]["fp"] == r["count"]
        counts.append(r["count"])
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_tiles_are_the_pixels_detection_read(client, fresh_out):
    from mitodet.inference.slide import open_image

    s = _summary(fresh_out)
    dzi = client.get(f"/dz/{NAME}.dzi")
    assert dzi.status_code == 200 and f'Width="{s["image_shape"][1]}"'.encode() in dzi.data
    top = int(np.ceil(np.log2(max(s["image_shape"]))))  # deep-zoom level of full resolution
    r = client.get(f"/dz/{NAME}_files/{top}/2_3.jpeg")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    tile = np.asarray(Image.open(io.BytesIO(r.data)).convert("RGB")).astype(float)
    with open_image(s["image_path"]) as src:  # tile (2, 3): 254-px steps, 1 px overlap on each inner side
        ref = src.read_region(0, (2 * 254 - 1, 3 * 254 - 1, 2 * 254 - 1 + tile.shape[1], 3 * 254 - 1 + tile.shape[0]))
    assert tile.shape == (256, 256, 3)
    assert np.abs(tile - ref).mean() < 4.0  # JPEG q85 of the same pixels
    assert client.get(f"/dz/{NAME}_files/{top + 1}/0_0.jpeg").status_code == 404
    assert client.get(f"/dz/{NAME}_files/{top}/999_0.jpeg").status_code == 404
    crop = client.get(f"/api/images/{NAME}/crop/0.jpg")
    assert crop.status_code == 200 and Image.open(io.BytesIO(crop.data)).size == (160, 160)
    layer = client.get(f"/api/images/{NAME}/layer/tissue")
    assert layer.status_code == 200 and Image.open(io.BytesIO(layer.data)).mode == "RGBA"


@pytest.mark.parametrize(
    "url",
    [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/image/..%2f..%2fetc%2fpasswd",
        "/image/nope",
        f"/api/images/..%2f{NAME}",
        "/api/images/%2fetc%2fpasswd/candidates",
        f"/api/images/{NAME}/layer/overlay",
        f"/api/images/{NAME}/layer/..%2f..%2fsummary.csv",
        f"/api/images/{NAME}/layer/%2fetc%2fpasswd",
        f"/dz/{NAME}_files/0/..%2f0_0.jpeg",
        "/dz/%2fetc%2fpasswd.dzi",
        f"/api/images/{NAME}/crop/-1.jpg",
        f"/api/images/{NAME}/crop/100000.jpg",
    ],
)
def test_nothing_outside_the_folder_is_served(client, url):
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code, r.data[:200])
    assert r.is_json and "Traceback" not in r.get_data(as_text=True)


def test_a_symlink_out_of_the_folder_is_refused(fresh_out, tmp_path):
    from mitodet.viewer.app import create_app

    secret = tmp_path / "secret.png"
    Image.new("L", (4, 4), 255).save(secret)
    tissue = fresh_out / f"{NAME}.tissue.png"
    tissue.unlink()
    os.symlink(secret, tissue)
    # a summary symlinked in from elsewhere is not this folder's image
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    doc = _summary(fresh_out)
    doc["image_path"] = str(secret)
    (elsewhere / "other.summary.json").write_text(json.dumps(doc))
    os.symlink(elsewhere / "other.summary.json", fresh_out / "other.summary.json")
    c = create_app(fresh_out).test_client()
    assert c.get(f"/api/images/{NAME}/layer/tissue").status_code == 404
    assert c.get(f"/api/images/{NAME}").get_json()["layers"]["tissue"] is False
    assert c.get("/api/images/other").status_code == 404
    assert [r["name"] for r in c.get("/api/catalog").get_json()["images"]] == [NAME]


@pytest.mark.parametrize(
    "body, status",
    [
        (b"not json", 400),
        (b"[1, 2]", 400),
        (b'{"threshold": 0.5}', 400),
        (b'{"threshold": "high", "points": []}', 400),
        (b'{"threshold": 2, "points": []}', 400),
        (b'{"threshold": NaN, "points": []}', 400),
        (b'{"threshold": 0.5, "points": [{"x": 1, "y": 2, "label": "maybe"}]}', 400),
        (b'{"threshold": 0.5, "points": [{"x": 1e12, "y": 2, "label": "mitosis"}]}', 400),
        (b'{"threshold": 0.5, "points": [{"x": "1", "y": 2, "label": "mitosis"}]}', 400),
        (b'{"threshold": 0.5, "points": [{"x": 1, "y": 2, "label": "mitosis", "origin": "__import__"}]}', 400),
        (b'{"threshold": 0.5, "points": [{"x": 1, "y": 2, "label": "mitosis", "reviewed": "yes"}]}', 400),
    ],
)
def test_a_malformed_review_is_refused_and_nothing_is_written(client, fresh_out, body, status):
    r = client.post(f"/api/images/{NAME}/review", data=body, content_type="application/json")
    assert r.status_code == status and "error" in r.get_json()
    assert not (fresh_out / f"{NAME}.reviewed.geojson").exists()


def test_other_bad_requests_are_4xx(client, monkeypatch):
    import mitodet.viewer.app as app_mod

    assert client.get(f"/api/images/{NAME}/readout?threshold=abc").status_code == 400
    assert client.get(f"/api/images/{NAME}/readout?threshold=1.5").status_code == 400
    assert client.get(f"/api/images/{NAME}/readout?threshold=nan").status_code == 400
    assert client.get(f"/api/images/{NAME}/readout?source=gossip").status_code == 400
    assert client.get(f"/api/images/{NAME}/readout?source=reviewed").status_code == 404  # none saved yet
    big = b'{"threshold": 0.5, "points": [' + b'{"x": 1, "y": 1, "label": "mitosis"},' * 1_000_000 + b"]}"  # 37 MB
    assert client.post(f"/api/images/{NAME}/review", data=big, content_type="application/json").status_code == 413
    assert client.put(f"/api/images/{NAME}/review").status_code == 405
    monkeypatch.setattr(app_mod.Viewer, "entry", lambda self, name: 1 / 0)
    r = client.get(f"/api/images/{NAME}")
    assert r.status_code == 500 and "Traceback" not in r.get_data(as_text=True) and r.is_json


def test_a_review_is_saved_reopened_and_read_by_every_reader(client, fresh_out, tmp_path, capsys):
    from mitodet.cli import main
    from mitodet.data.spec import read_sources
    from mitodet.evaluation.io import load_points

    cands = client.get(f"/api/images/{NAME}/candidates").get_json()["points"]
    (x0, y0, s0, _), (x1, y1, s1, _), (x2, y2, s2, _) = cands[:3]
    review = {
        "threshold": 0.95,
        "points": [
            {"x": x0, "y": y0, "label": "mitosis", "origin": "model", "score": s0, "reviewed": True},
            {"x": x1, "y": y1, "label": "not_mitosis", "origin": "model", "score": s1, "reviewed": True},
            {"x": x2, "y": y2, "label": "mitosis", "origin": "model", "score": s2, "reviewed": False},
            {"x": 100.5, "y": 200.25, "label": "mitosis", "origin": "added", "score": None, "reviewed": True},
        ],
    }
    r = client.post(f"/api/images/{NAME}/review", json=review)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["n_mitoses"] == 3 and r.get_json()["n_not_mitoses"] == 1
    path = fresh_out / f"{NAME}.reviewed.geojson"
    assert path.is_file() and not list(fresh_out.glob("*.tmp*"))
    # reopening the page shows the saved state, point for point
    back = client.get(f"/api/images/{NAME}/review").get_json()
    assert back["threshold"] == 0.95
    assert [{k: p[k] for k in ("x", "y", "label", "origin", "score", "reviewed")} for p in back["points"]] == review[
        "points"
    ]
    # QuPath's format: Point detections with a classification
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and {f["properties"]["objectType"] for f in doc["features"]} == {
        "detection"
    }
    assert [f["properties"]["classification"]["name"] for f in doc["features"]] == [
        "Mitotic figure",
        "Not mitotic figure",
        "Mitotic figure",
        "Mitotic figure",
    ]
    # the readers: evaluate's loader pairs it with the image, labels by class
    ps = load_points(path)[NAME]
    assert ps.labels.tolist() == [1, 0, 1, 1]
    # a training data spec: the reviewed points (rejected ones as hard negatives) with their image
    s = _summary(fresh_out)
    spec = {"sources": [{"reader": "qupath_geojson", "path": str(path), "image": s["image_path"], "mpp": s["mpp"]}]}
    (rec,) = read_sources(spec["sources"], tmp_path)
    assert (
        rec.labels.tolist() == [1, 0, 1, 1]
        and len(rec.mitoses) == 3
        and Path(rec.image).name == Path(s["image_path"]).name
    )
    # mitodet evaluate: the model's detections against the reviewed points as the truth
    pred = fresh_out / f"{NAME}.csv"
    assert main(["evaluate", "--gt", str(path), "--pred", str(pred), "--mpp", str(s["mpp"]), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--gt", str(fresh_out), "--pred", str(pred), "--mpp", str(s["mpp"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tp"] == ev["tp"]
    assert ev["n_gt"] == 3 and ev["n_pred"] == len(_csv_points(pred)) and ev["tp"] == 2  # candidates 0 and 2
    # (the output folder itself, as --points, means its reviews; as --gt too)
    assert main(["readout", s["image_path"], "--points", str(fresh_out), "--out", str(tmp_path / "ro")]) == 0
    ro = json.loads((tmp_path / "ro" / f"{NAME}.summary.json").read_text())
    assert ro["count"] == 3
    # the viewer's own reviewed read-out agrees, and is written like mitodet readout's
    rr = client.get(f"/api/images/{NAME}/readout?source=reviewed").get_json()
    assert rr["count"] == 3 and rr["tissue_area_mm2"] == pytest.approx(ro["tissue_area_mm2"], rel=1e-6)
    w = client.post("/api/readout").get_json()
    assert w["images_reviewed"] == 1 and w["cases"] == 1
    case = json.loads((fresh_out / "reviewed" / "case-A.case.json").read_text())
    assert case["count"] == 3
    cat = client.get("/api/catalog").get_json()
    assert cat["images"][0]["reviewed"] is True and cat["cases"][0]["source"] == "reviewed"
    assert cat["cases"][0]["count"] == 3


def test_an_output_folder_without_reviews_is_no_ground_truth(fresh_out):
    from mitodet.data.records import DataFormatError
    from mitodet.evaluation.io import load_points

    assert list(load_points(fresh_out)) == [NAME]  # the model's detections
    with pytest.raises(DataFormatError, match="mitodet view"):
        load_points(fresh_out, reviewed=True)


def test_view_command_refuses_a_folder_that_is_not_an_output(tmp_path, capsys):
    from mitodet.cli import main

    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["view", str(tmp_path)]) == 2
    assert "no finished detection" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "--port", "70000"]) == 2
