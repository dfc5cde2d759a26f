"""``mitodet detect`` end to end with a tiny random-weights model (random detections, real
plumbing): good and bad files in one batch, the output formats, the round trip through
``mitodet evaluate``, --gt, and resuming."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import uuid
from numbers import Real
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from mitodet.cli import main
from mitodet.synthetic import synthetic_pyramidal_tiff, synthetic_scene

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(argv: list[str]) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return SimpleNamespace(rc=rc, out=out.getvalue(), err=err.getvalue())


def _read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def batch(tmp_path_factory, tiny_model_dir):
    """One CLI run over a folder of 3 good inputs (PNG, JPEG, pyramidal TIFF) + the bad corpus."""
    import torch
    from bad_inputs import write_bad_corpus
    from PIL import Image

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("detect_cli")
    src = root / "in"
    src.mkdir()
    img1, pts1, lab1 = synthetic_scene((192, 192), mpp=0.5, n_mitoses=2, n_lookalikes=1, seed=1)
    Image.fromarray(img1).save(src / "good1.png", dpi=(50800, 50800))
    img2, _, _ = synthetic_scene((160, 192), mpp=0.5, n_mitoses=1, n_lookalikes=1, seed=2)
    Image.fromarray(img2).save(src / "good2.jpg", quality=95, dpi=(50800, 50800))
    synthetic_pyramidal_tiff(
        src / "good3.tif", (384, 416), mpp=0.25, levels=2, tile=128, n_mitoses=2, n_lookalikes=2, seed=3, layout="pages"
    )
    bad = write_bad_corpus(src)
    gt = root / "gt.csv"
    gt.write_text("image,x,y\n" + "".join(f"good1,{x},{y}\n" for x, y in pts1[lab1 == 1]))
    out = root / "out"
    argv = [
        "detect",
        str(src),
        "--model",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--threshold",
        "0",
        "--gt",
        str(gt),
        "--no-progress",
        "--threads",
        "1",
        "--heatmap",
    ]
    before = torch.get_num_threads()
    try:
        res = _run(argv)
    finally:
        torch.set_num_threads(before)
    return SimpleNamespace(src=src, out=out, gt=gt, argv=argv, res=res, bad=bad, model=tiny_model_dir)


def test_bad_files_fail_clearly_and_the_batch_goes_on(batch):
    assert batch.res.rc != 0
    rows = _read_csv(batch.out / "summary.csv")
    assert {r["name"] for r in rows if r["status"] == "done"} == {"good1", "good2", "good3"}
    by_file = {r["file"].rsplit("/", 1)[-1]: r for r in rows}
    for name in batch.bad:
        row = by_file[name]
        assert row["status"] == "failed", name
        assert name in row["error"], row["error"]  # the message names the file
        assert re.search(batch.bad[name], row["error"], re.IGNORECASE), (name, row["error"])  # ...and what is wrong
        assert name in batch.res.err
        assert not (batch.out / f"{row['name']}.summary.json").exists()
    assert "3 done" in batch.res.out and f"{len(batch.bad)} failed" in batch.res.out
    for name in ("good1", "good2", "good3"):
        for suffix in (".csv", ".geojson", ".midog.json", ".overlay.jpg", ".summary.md", ".summary.json"):
            assert (batch.out / f"{name}{suffix}").stat().st_size > 0, name + suffix
    # the eq. 9 heat-map for HPF images (the model has a GLB), not for the slide
    assert (batch.out / "good1.heatmap.jpg").is_file() and (batch.out / "good2.heatmap.jpg").is_file()
    assert not (batch.out / "good3.heatmap.jpg").exists()
    assert not list(batch.out.glob(".*.tmp"))


def test_summary_contents(batch):
    s1 = json.loads((batch.out / "good1.summary.json").read_text())
    assert s1["kind"] == "hpf" and s1["mpp"] == pytest.approx(0.5) and "dpi" in s1["mpp_source"]
    assert s1["count"] == len(_read_csv(batch.out / "good1.csv")) > 0
    assert s1["tissue_area_mm2"] == pytest.approx(192 * 192 * 0.25 / 1e6)
    assert s1["field_area_mm2"] == 0.237 and s1["nottingham"]["table_row"]["field_area_mm2"] == 0.238
    assert s1["hotspot"]["extrapolated"] is True and s1["score_threshold"] == 0.0
    s3 = json.loads((batch.out / "good3.summary.json").read_text())
    assert s3["kind"] == "wsi" and s3["detection"]["level"] == 1 and s3["tissue"]["tissue_fraction"] > 0.9
    md = (batch.out / "good3.summary.md").read_text()
    assert "Nottingham" in md and "0.237" in md


def test_geojson_is_valid_and_qupath_readable(batch):
    doc = json.loads((batch.out / "good1.geojson").read_text())
    rows = _read_csv(batch.out / "good1.csv")
    detections = [f for f in doc["features"] if f["properties"]["objectType"] == "detection"]
    assert doc["type"] == "FeatureCollection" and len(detections) == len(rows) > 0
    # and the hotspot of the read-out, as a QuPath rectangle annotation
    (hot,) = [f for f in doc["features"] if f["properties"]["objectType"] == "annotation"]
    summary = json.loads((batch.out / "good1.summary.json").read_text())
    x0, y0, x1, y1 = summary["hotspot"]["box_px"]
    assert hot["geometry"]["type"] == "Polygon" and hot["properties"]["classification"]["name"] == "Hotspot"
    ring = np.asarray(hot["geometry"]["coordinates"][0])
    assert np.allclose(ring, [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    assert hot["properties"]["measurements"]["mitoses"] == summary["hotspot"]["count"]
    for f, row in zip(detections, rows):
        assert f["type"] == "Feature" and set(f) >= {"type", "geometry", "properties"}
        g = f["geometry"]
        assert g["type"] == "Point" and len(g["coordinates"]) == 2
        assert all(isinstance(v, Real) and not isinstance(v, bool) for v in g["coordinates"])
        assert g["coordinates"] == pytest.approx([float(row["x"]), float(row["y"])])
        props = f["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] == "Mitotic figure" and len(props["classification"]["color"]) == 3
        assert props["measurements"] == {"score": pytest.approx(float(row["score"]))}
        assert uuid.UUID(f["id"]).version == 4


def test_midog_json_round_trips_through_evaluate(batch):
    midog = batch.out / "good1.midog.json"
    doc = json.loads(midog.read_text())
    rows = _read_csv(batch.out / "good1.csv")
    assert doc["type"] == "Multiple points" and len(doc["points"]) == len(rows) > 0
    assert doc["points"][0]["point"][:2] == pytest.approx(
        [float(rows[0]["x_um"]) / 1000, float(rows[0]["y_um"]) / 1000]
    )
    r = _run(["evaluate", "--gt", str(midog), "--pred", str(midog), "--mpp", "0.5", "--json"])
    assert r.rc == 0, r.err
    rep = json.loads(r.out)
    assert rep["f1"] == 1.0 and rep["tp"] == len(rows) and rep["fp"] == rep["fn"] == 0


def test_csv_evaluated_against_a_ground_truth(batch, tmp_path):
    rows = _read_csv(batch.out / "good2.csv")
    assert len(rows) >= 4
    pts = np.array([[float(r["x"]), float(r["y"])] for r in rows[:3]])
    # three GT points 3 um (6 px) from detections, one far from everything
    gt = np.concatenate([pts + [6.0, 0.0], [[5000.0, 5000.0]]])  # (coordinates are >= 0 in every reader)
    f = tmp_path / "gt.csv"
    f.write_text("image,x,y\n" + "".join(f"good2,{x},{y}\n" for x, y in gt))
    r = _run(
        [
            "evaluate",
            "--gt",
            str(f),
            "--pred",
            str(batch.out / "good2.csv"),
            "--mpp",
            "0.5",
            "--radius-um",
            "8",
            "--json",
        ]
    )
    assert r.rc == 0, r.err
    rep = json.loads(r.out)
    # other detections may lie within 8 um of the shifted points, but at least the three pairs match
    assert rep["tp"] == 3 and rep["fn"] == 1 and rep["fp"] == len(rows) - 3


def test_gt_gives_per_file_precision_recall_f1(batch):
    from mitodet.evaluation.matching import match_points

    s1 = json.loads((batch.out / "good1.summary.json").read_text())
    ev = s1["evaluation"]
    gt = np.array([[float(r["x"]), float(r["y"])] for r in _read_csv(batch.gt)])
    det = np.array([[float(r["x"]), float(r["y"])] for r in _read_csv(batch.out / "good1.csv")])
    m = match_points(gt, det, 8.0 / 0.5)
    assert (ev["tp"], ev["fp"], ev["fn"]) == (m.tp, m.fp, m.fn) and ev["radius_um"] == 8.0
    assert f"F1 {ev['f1']:.3f}" in batch.res.out
    assert json.loads((batch.out / "good2.summary.json").read_text())["evaluation"] is None  # no GT for good2


def test_rerun_resumes(batch):
    before = {p.name: p.stat().st_mtime_ns for p in batch.out.glob("good*")}
    r = _run(batch.argv)
    index = {row["name"]: row["status"] for row in _read_csv(batch.out / "summary.csv")}
    assert [index[n] for n in ("good1", "good2", "good3")] == ["skipped"] * 3
    assert {p.name: p.stat().st_mtime_ns for p in batch.out.glob("good*")} == before
    for p in batch.out.glob("good2.*"):
        p.unlink()
    r = _run(batch.argv)
    index = {row["name"]: row["status"] for row in _read_csv(batch.out / "summary.csv")}
    assert [index[n] for n in ("good1", "good2", "good3")] == ["skipped", "done", "skipped"]
    assert (batch.out / "good2.summary.json").is_file() and r.rc != 0  # the bad files still fail
    # only good inputs: exit code 0
    ok = _run(["detect", str(batch.src / "good1.png"), str(batch.src / "good3.tif"), *batch.argv[2:]])
    assert ok.rc == 0, ok.err
    assert "2 skipped" in ok.out


def test_usage_errors(tiny_model_dir, tmp_path):
    assert _run(["detect", "x.png", "--model", str(tmp_path / "nope")]).rc == 2
    r = _run(["detect", "x.png", "--model", str(tiny_model_dir), "--mpp", "250"])
    assert r.rc == 2 and "--mpp" in r.err
    r = _run(["detect", str(tmp_path), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o")])
    assert r.rc == 2 and "no images" in r.err
    (tmp_path / "x.png").write_bytes(b"not read: the GT file fails first")
    r = _run(
        [
            "detect",
            str(tmp_path / "x.png"),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "o"),
            "--gt",
            str(tmp_path / "missing.csv"),
        ]
    )
    assert r.rc == 2 and "missing.csv" in r.err
    assert _run(["detect", "x.png", "--model", str(tiny_model_dir), "--threads", "0"]).rc == 2
    with pytest.raises(SystemExit) as e:
        _run(["detect", "--help"])
    assert e.value.code == 0


def test_refusals_come_before_any_tile_runs(tmp_path, tiny_model_dir, capsys):
    """A missing input fails the command before the model loads; an image coarser than twice
    the model's resolution, or smaller than one cell, fails as a file with the reason (not
    'done, 0 mitoses, score 1'), and --allow-coarse runs the coarse one anyway."""
    from mitodet.cli import main
    from mitodet.inference.pipeline import detect_files

    # the model named does not exist either: the answer is about the input, so no model was read
    assert main(["detect", str(tmp_path / "typo.png"), "--model", "no-such-model-either"]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "typo.png" in err and "model" not in err
    img = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "coarse.png")
    Image.fromarray(img[:10, :10]).save(tmp_path / "speck.png")
    batch = detect_files([tmp_path / "coarse.png"], tmp_path / "out", model=tiny_model_dir, mpp=4.9)
    (r,) = batch.results
    assert r.status == "failed" and "mitoses are not resolved" in r.error and "--allow-coarse" in r.error
    batch = detect_files([tmp_path / "coarse.png"], tmp_path / "out", model=tiny_model_dir, mpp=4.9, allow_coarse=True)
    assert batch.results[0].status == "done"
    assert any("not reliable" in n for n in batch.results[0].summary["notes"])
    batch = detect_files([tmp_path / "speck.png"], tmp_path / "out", model=tiny_model_dir, mpp=0.25)
    assert batch.results[0].status == "failed" and "smaller than one cell" in batch.results[0].error
