"""Whole-field recall, FP/mm2, F1 at a density, the threshold rule and lab groups."""

from __future__ import annotations

import numpy as np
import pytest

from mitodet.data.records import ImageRecord
from mitodet.evaluation import wholefield as W


def _field(gt, pred, scores, area=0.01, lab="a"):
    return W.FieldResult(
        "f",
        lab,
        area,
        np.asarray(gt, float).reshape(-1, 2),
        np.asarray(pred, float).reshape(-1, 2),
        np.asarray(scores, float),
    )


def test_recall_fp_rate_and_f1_at_density_by_hand():
    # field 1: mitosis at (10, 10) found at 0.9, a false positive at 0.8 and one at 0.3
    # field 2: mitosis at (0, 0) found at 0.5, missed mitosis at (50, 50)
    res = [
        _field([[10, 10]], [[11, 10], [40, 40], [70, 70]], [0.9, 0.8, 0.3], area=0.02),
        _field([[0, 0], [50, 50]], [[1, 1]], [0.5], area=0.02),
    ]
    sw = W.sweep(res)
    assert sw.n_gt == 3 and sw.area_mm2 == pytest.approx(0.04)
    at = sw.at(0.5, density=10)
    assert (at["tp"], at["fp"], at["fn"]) == (2, 1, 1)
    r, f = 2 / 3, 1 / 0.04  # recall, 25 FP per mm2
    p = r * 10 / (r * 10 + f)
    assert at["recall"] == pytest.approx(r) and at["fp_per_mm2"] == pytest.approx(f)
    assert at["precision_at_density"] == pytest.approx(p)
    assert at["f1_at_density"] == pytest.approx(2 * p * r / (p + r))
    # a denser tissue makes the same detections more precise
    assert sw.at(0.5, density=100)["f1_at_density"] > at["f1_at_density"]
    # above every score nothing is kept
    assert sw.at(0.95)["tp"] == 0 and sw.at(0.95)["f1_at_density"] == 0.0


def test_best_threshold_is_midway_below_the_best_score():
    # at t=0.9: R 1/2, no FP -> best at any density; next lower score 0.8 (an FP)
    res = [_field([[0, 0], [30, 30]], [[0, 0], [60, 60], [30, 30]], [0.9, 0.8, 0.2], area=0.001)]
    sw = W.sweep(res)
    thr = W.best_threshold(sw, density=10)
    assert thr == pytest.approx(0.85)
    assert sw.at(thr)["fp"] == 0 and sw.at(thr)["tp"] == 1
    assert W.best_threshold(W.sweep([_field([[0, 0]], [], [])])) == 0.5  # nothing found


def test_lab_groups_and_label_completeness():
    def rec(source, slide, domain=""):
        return ImageRecord("x.jpg", np.zeros((0, 2)), np.zeros(0), 0.25, slide, domain=domain, source=source)

    assert W.lab_group(rec("amibr", "MIDOG21:002.tiff")) == "midog21-hamamatsu-xr"
    assert W.lab_group(rec("amibr", "MIDOG21:051.tiff")) == "midog21-hamamatsu-s360"
    assert W.lab_group(rec("amibr", "MIDOG21:150.tiff")) == "midog21-aperio-cs2"
    assert W.lab_group(rec("amibr", "TUPAC16:01_stitched1.tif")) == "tupac16"
    assert W.lab_group(rec("atnorm", "atnorm_br:1", "atnorm_br")) == "tcga"
    assert W.lab_group(rec("mitos_atypia14", "A03")) == "mitos14-aperio"
    assert W.label_complete(rec("amibr", "MIDOG21:002.tiff"))
    assert not W.label_complete(rec("atnorm", "atnorm_br:1", "atnorm_br"))  # only the centre is labelled


def test_tissue_area_ignores_black_padding():
    img = np.full((100, 100, 3), 200, np.uint8)
    img[:, :40] = 0  # a border crop padded with black
    assert W.tissue_area_mm2(img, 0.25) == pytest.approx(60 * 100 * 0.0625 * 1e-6)


def test_look_alikes_rejected():
    r = _field([], [[0, 0]], [0.9])
    r.look_alikes_um = np.array([[1.0, 1.0], [100.0, 100.0]])
    assert W.look_alikes_rejected([r], 0.5) == (1, 2)
    assert W.look_alikes_rejected([r], 0.95) == (2, 2)


def test_table_rows_per_lab_and_all():
    res = [_field([[0, 0]], [[0, 0]], [0.9], lab="a"), _field([[0, 0]], [[50, 50]], [0.9], lab="b")]
    rows = W.table_rows(res, 0.5)
    assert [r["lab"] for r in rows] == ["a", "b", "all"]
    assert rows[0]["recall"] == 1.0 and rows[1]["recall"] == 0.0 and rows[2]["recall"] == 0.5
    assert {"f1@5", "f1@10", "f1@25", "best_threshold", "best_f1"} <= set(rows[2])


@pytest.mark.data
def test_validate_on_real_label_complete_crops(shared_data, monkeypatch, capsys, one_thread):
    """The bundled pipeline on the 38 validation crops of one MIDOG 2021 scanner: a table row
    per lab, and a detector that finds most of the mitoses there."""
    from mitodet.cli import main

    monkeypatch.setenv("MITODET_DATA", str(shared_data))
    assert main(["validate", "--labs", "midog21-hamamatsu-xr", "--no-frames", "--no-progress", "--json"]) == 0
    res = __import__("json").loads(capsys.readouterr().out)
    labs = [r["lab"] for r in res["rows"]]
    assert labs == ["midog21-hamamatsu-xr", "all"]
    row = res["rows"][0]
    assert row["images"] == 38 and row["mitoses"] == 40 and 0.03 < row["area_mm2"] < 0.05
    assert row["recall"] > 0.8 and 0 <= row["best_threshold"] <= 1
