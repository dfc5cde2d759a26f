"""One reader layer: a label file gives the same points and labels through every entry point
(training's readers, ``mitodet evaluate``'s ``load_points``, ``detect --gt``), and an image
listed but never annotated is neither a training negative nor a source of false positives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitodet.cli import main as cli_main
from mitodet.data.readers import read_midog, read_mitos_atypia14, read_points_csv
from mitodet.data.records import DataFormatError
from mitodet.evaluation.io import load_points


def _same(record, pointset):
    assert np.allclose(record.points, pointset.points)
    assert record.labels.tolist() == pointset.labels.tolist()
    assert record.labelled == pointset.labelled


def test_points_csv_same_through_both_layers(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "image,x,y,label,score,mpp\n"
        "a.png,10,20,mitosis,0.9,0.25\n"
        "a.png,30,40,hard_negative,0.4,0.25\n"  # once refused by evaluate, accepted by training
        "a.png,50,60,2,0.3,0.25\n"  # MIDOG's imposter category
        "b.png,,,,,0.25\n"
    )
    records = {Path(r.image).stem: r for r in read_points_csv(csv)}
    sets = load_points(csv)
    assert sorted(records) == sorted(sets) == ["a", "b"]
    for name in records:
        _same(records[name], sets[name])
    assert sets["a"].labels.tolist() == [1, 0, 0] and sets["a"].mpp == 0.25
    # a typo is refused by both, with the same message
    bad = tmp_path / "typo.csv"
    bad.write_text("image,x,y,lable\na.png,1,2,1\n")
    messages = []
    for reader in (read_points_csv, load_points):
        with pytest.raises(DataFormatError, match="unknown column") as e:
            reader(bad)
        messages.append(str(e.value))
    assert messages[0] == messages[1]


def test_detect_csv_reads_back_as_predictions(tmp_path):
    from mitodet.report.outputs import write_csv

    out = tmp_path / "frame.csv"
    write_csv(out, np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.9, 0.2]), 0.25, first_scores=np.array([0.8, 0.3]))
    ps = load_points(out)["frame"]
    assert ps.points.tolist() == [[1.0, 2.0], [3.0, 4.0]] and ps.scores.tolist() == [0.9, 0.2]


def test_mitos_atypia14_same_through_both_layers(tmp_path):
    d = tmp_path / "A03" / "mitosis"
    d.mkdir(parents=True)
    (d / "A03_00Aa_mitosis.csv").write_text("100,200,1\n300,400,0.65\n")
    (d / "A03_00Aa_not_mitosis.csv").write_text("500,600,0.2\n")
    (rec,) = read_mitos_atypia14(tmp_path)
    ps = load_points(tmp_path)["A03_00Aa"]
    _same(rec, ps)
    assert (rec.mpp, rec.domain) == (ps.mpp, ps.domain) == (0.2455, "aperio")


def _midog(tmp_path, categories=(1, 2), name="MIDOG.json") -> Path:
    coco = {
        "images": [
            {"id": 1, "file_name": "001.tiff", "width": 500, "height": 500},
            {"id": 2, "file_name": "002.tiff", "width": 500, "height": 500},
        ],  # never annotated
        "annotations": [
            {"id": k, "image_id": 1, "category_id": c, "bbox": [40 * k, 40, 40 * k + 50, 90]}
            for k, c in enumerate(categories, 1)
        ],
    }
    path = tmp_path / name
    path.write_text(json.dumps(coco))
    return path


def test_midog_same_through_both_layers_and_unknown_category_refused(tmp_path):
    path = _midog(tmp_path)
    records = {r.slide: r for r in read_midog(path, tmp_path)}
    sets = load_points(path)
    for name in ("001", "002"):
        _same(records[name], sets[name])
    assert (sets["001"].labelled, sets["002"].labelled) == (True, False)
    bad = _midog(tmp_path, categories=(1, 7), name="bad.json")
    for reader in (lambda p: read_midog(p, tmp_path), load_points):
        with pytest.raises(DataFormatError, match="category_id 7"):
            reader(bad)  # once silently label 0 in evaluate


def test_unannotated_image_gives_no_false_positives(tmp_path, capsys):
    gt = _midog(tmp_path)
    pred = tmp_path / "pred.csv"
    # a hit on 001's mitosis and three detections on the never-annotated 002
    pred.write_text(
        "image,x,y,score\n001.tiff,65,65,0.9\n002.tiff,10,10,0.9\n002.tiff,100,100,0.8\n002.tiff,200,200,0.7\n"
    )
    assert cli_main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--mpp", "0.25", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["tp"], res["fp"], res["fn"], res["n_images"]) == (1, 0, 0, 1)
    assert any("never annotated" in n for n in res["notes"])


def test_detect_gt_skips_unannotated_and_uses_the_midog_radius(tmp_path, tiny_model_dir):
    from mitodet.inference.pipeline import detect_files

    gt = _midog(tmp_path)
    img = np.full((500, 500, 3), 230, np.uint8)
    for name in ("001.png", "002.png"):
        Image.fromarray(img).save(tmp_path / name)
    res = detect_files(
        [tmp_path / "001.png", tmp_path / "002.png"],
        tmp_path / "out",
        model=tiny_model_dir,
        mpp=0.25,
        gt=gt,
        heatmap=False,
        progress=False,
    )
    by_name = {r.name: r for r in res.results}
    s1 = json.loads((tmp_path / "out" / "001.summary.json").read_text())
    s2 = json.loads((tmp_path / "out" / "002.summary.json").read_text())
    assert s1["evaluation"]["radius_um"] == 7.5  # as `mitodet evaluate` scores a MIDOG file
    assert s2.get("evaluation") is None
    assert any("never annotated" in n for n in s2["notes"]), by_name


def test_training_drops_unannotated_images(tmp_path):
    from mitodet.config import ModelConfig
    from mitodet.data.spec import DataSpec
    from mitodet.engine.train import TrainConfig, build_datasets

    gt = _midog(tmp_path)
    img = np.full((500, 500, 3), 230, np.uint8)
    for name in ("001.tiff", "002.tiff"):
        Image.fromarray(img).save(tmp_path / name)
    spec = DataSpec(
        sources=[{"reader": "midog", "json_path": str(gt), "image_dir": str(tmp_path)}], val_fraction=0.0, base=tmp_path
    )
    _, _, info = build_datasets(TrainConfig(iterations=1, batch_size=1), ModelConfig(), spec, progress=False)
    assert info["records"] == 2 and info["train_records"] == 1  # 002 is neither positive nor negative


def test_the_review_loop_closes(tmp_path, tiny_model_dir, capsys):
    """detect -> evaluate reads the detect output folder, its .midog.json and its GeoJSON, and a
    GeoJSON exported from QuPath after review (classes "Mitotic figure" / "Not mitotic")."""
    from mitodet.inference.pipeline import detect_files

    img = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "A03_00Ab.png")
    out = tmp_path / "out"
    detect_files([tmp_path / "A03_00Ab.png"], out, model=tiny_model_dir, mpp=0.25, threshold=0.0)
    own = load_points(out / "A03_00Ab.csv")["A03_00Ab"]
    assert len(own.points) > 0
    for form in (out, out / "A03_00Ab.midog.json", out / "A03_00Ab.geojson"):
        sets = load_points(form)
        assert list(sets) == ["A03_00Ab"], form  # paired by the image's name, whatever the file
        pts = sets["A03_00Ab"].to_pixels(0.25).points
        assert np.allclose(np.sort(pts, 0), np.sort(own.points, 0), atol=0.01), form
    reviewed = tmp_path / "A03_00Ab.reviewed.geojson"
    reviewed.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [10, 20]},
                        "properties": {"objectType": "annotation", "classification": {"name": "Mitotic figure"}},
                    },
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [30, 40]},
                        "properties": {"objectType": "annotation", "classification": {"name": "Not mitotic"}},
                    },
                ],
            }
        )
    )
    ps = next(iter(load_points(reviewed).values()))
    assert ps.labels.tolist() == [1, 0] and ps.points.tolist() == [[10, 20], [30, 40]]
    # the whole loop through the command: detections against the reviewed truth, by name
    (tmp_path / "gt").mkdir()
    reviewed.rename(tmp_path / "gt" / "A03_00Ab.geojson")
    assert cli_main(["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(out), "--mpp", "0.25", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_images"] == 1 and res["tp"] + res["fn"] == 1


def test_detect_gt_that_pairs_with_nothing_or_twice_is_an_error(tmp_path, tiny_model_dir):
    from mitodet.inference.pipeline import detect_files

    img = np.full((128, 128, 3), 200, np.uint8)
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(img).save(tmp_path / sub / "001.png")
    Image.fromarray(img).save(tmp_path / "zzz.png")
    gt = _midog(tmp_path)  # names 001 and 002
    with pytest.raises(ValueError, match="pairs with none of the inputs"):
        detect_files(
            [tmp_path / "zzz.png", tmp_path / "zzz.png"], tmp_path / "o1", model=tiny_model_dir, mpp=0.25, gt=gt
        )
    with pytest.raises(ValueError, match="would all pair"):
        detect_files(
            [tmp_path / "a" / "001.png", tmp_path / "b" / "001.png"],
            tmp_path / "o2",
            model=tiny_model_dir,
            mpp=0.25,
            gt=gt,
        )


def test_a_header_only_csv_is_an_image_without_mitoses(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt" / "a.csv").write_text("x,y\n10,10\n")
    (tmp_path / "gt" / "b.csv").write_text("x,y\n")  # annotated, no mitosis
    (tmp_path / "pred" / "a.csv").write_text("x,y,score\n10,10,0.9\n")
    (tmp_path / "pred" / "b.csv").write_text("x,y,score\n50,50,0.9\n80,80,0.8\n")
    assert load_points(tmp_path / "gt" / "b.csv")["b"].points.shape == (0, 2)
    assert (
        cli_main(
            ["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--mpp", "0.25", "--json"]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert (res["tp"], res["fp"], res["fn"]) == (1, 2, 0)  # b's detections are false positives
