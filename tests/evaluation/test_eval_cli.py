"""``mitodet evaluate`` end to end: the real command on small files of every input format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mitodet.cli import main
from mitodet.data.records import DataFormatError
from mitodet.evaluation.io import load_points

JSON_KEYS = {
    "precision",
    "recall",
    "f1",
    "tp",
    "fp",
    "fn",
    "threshold",
    "best_f1",
    "best_threshold",
    "average_precision",
    "radius_um",
    "mode",
    "n_images",
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["evaluate", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture()
def csv_pair(tmp_path):
    # Two images at 0.25 um/px (8 um = 32 px).
    # img1: GT (100,100), (300,100); detections (110,100) 0.9 -> TP, (500,500) 0.8 -> FP,
    #       (300,120) 0.7 -> TP (20 px).
    # img2: GT (50,50) only; no detections -> FN.  A hard negative (label 0) is ignored.
    # Pooled, all detections: TP 2, FP 1, FN 1 -> P 2/3, R 2/3, F1 2/3.
    gt = write(
        tmp_path / "gt.csv",
        "image,x,y,label\nimg1.tiff,100,100,1\nimg1.tiff,300,100,1\nimg2.tiff,50,50,1\nimg2.tiff,400,400,0\n",
    )
    pred = write(
        tmp_path / "pred.csv",
        "image,x,y,score\nimg1,110,100,0.9\nimg1,500,500,0.8\nimg1,300,120,0.7\n",
    )
    return gt, pred


def test_json_output_worked_case(capsys, csv_pair):
    gt, pred = csv_pair
    rc, out, err = run_cli(capsys, "--gt", str(gt), "--pred", str(pred), "--mpp", "0.25", "--json")
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object
    res = json.loads(lines[0])
    assert JSON_KEYS <= set(res)
    assert (res["tp"], res["fp"], res["fn"], res["n_images"]) == (2, 1, 1, 2)
    assert res["f1"] == pytest.approx(2 / 3)
    assert (res["radius_um"], res["mode"], res["threshold"]) == (8.0, "optimal", None)
    # sweep: 0.9 -> TP1 FP0 FN2 (F1 0.5); 0.8 -> TP1 FP1 FN2 (0.4); 0.7 -> 2,1,1 (2/3)
    assert res["best_f1"] == pytest.approx(2 / 3) and res["best_threshold"] == 0.7
    # AP: recall 1/3 at precision 1, recall 2/3 at precision 2/3 -> 1/3 + 2/9
    assert res["average_precision"] == pytest.approx(1 / 3 + 2 / 9)
    rows = {r["name"]: r for r in res["images"]}
    assert (rows["img2"]["n_gt"], rows["img2"]["fn"]) == (1, 1)


def test_threshold_radius_and_mode_flags(capsys, csv_pair):
    gt, pred = csv_pair
    rc, out, _ = run_cli(
        capsys,
        "--gt",
        str(gt),
        "--pred",
        str(pred),
        "--mpp",
        "0.25",
        "--threshold",
        "0.8",
        "--json",
    )
    res = json.loads(out)
    assert (rc, res["tp"], res["fp"], res["fn"], res["threshold"]) == (0, 1, 1, 2, 0.8)
    # 4 um = 16 px: the detection 20 px from its GT no longer counts
    _, out, _ = run_cli(
        capsys,
        "--gt",
        str(gt),
        "--pred",
        str(pred),
        "--mpp",
        "0.25",
        "--radius-um",
        "4",
        "--mode",
        "midog_greedy",
        "--json",
    )
    res = json.loads(out)
    assert (res["tp"], res["fp"], res["fn"], res["mode"], res["radius_um"]) == (
        1,
        2,
        2,
        "midog_greedy",
        4.0,
    )


def test_readable_table(capsys, csv_pair):
    gt, pred = csv_pair
    rc, out, _ = run_cli(capsys, "--gt", str(gt), "--pred", str(pred), "--mpp", "0.25", "--per-image")
    assert rc == 0
    assert "pooled" in out and "img1" in out and "best F1" in out
    pooled = next(line for line in out.splitlines() if line.startswith("pooled"))
    assert pooled.split()[1:5] == ["2", "2", "1", "1"]  # images TP FP FN


def test_mitos_atypia14_root_against_a_detect_csv(capsys, tmp_path):
    # Official layout; frame A03_00Ab: one mitosis + one hard negative, A03_03Ab: no mitosis.
    root = tmp_path / "mitos"
    write(root / "A03/mitosis/A03_00Ab_mitosis.csv", "476,394,0.65\n")
    write(root / "A03/mitosis/A03_00Ab_not_mitosis.csv", "800,800,0.2\n")
    write(root / "A03/mitosis/A03_03Ab_mitosis.csv", "")
    write(root / "A03/mitosis/A03_03Ab_not_mitosis.csv", "")
    # `mitodet detect` style single-image CSVs, named after the frame.
    preds = tmp_path / "preds"
    # 20 px from the mitosis (4.9 um at 0.2455 um/px: a hit), and one on the hard negative
    write(preds / "A03_00Ab.csv", "x,y,score\n496,394,0.95\n800,800,0.6\n")
    write(preds / "A03_03Ab.csv", "x,y,score\n")
    rc, out, err = run_cli(capsys, "--gt", str(root), "--pred", str(preds), "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert (res["tp"], res["fp"], res["fn"], res["n_images"]) == (1, 1, 0, 2)
    assert {r["mpp"] for r in res["images"]} == {0.2455}  # Aperio, from the slide letter
    assert res["domains"][0]["domain"] == "aperio"  # the readers' scanner table
    # a single *_mitosis.csv is accepted too; paired with the single prediction file by name
    rc, out, _ = run_cli(
        capsys,
        "--gt",
        str(root / "A03/mitosis/A03_00Ab_mitosis.csv"),
        "--pred",
        str(preds / "A03_00Ab.csv"),
        "--json",
    )
    assert (rc, json.loads(out)["tp"]) == (0, 1)


def test_midog_coco_gt_against_multiple_points_in_millimetres(capsys, tmp_path):
    mpp = 0.25
    coco = {
        "images": [
            {
                "id": 1,
                "file_name": "001.tiff",
                "width": 1000,
                "height": 1000,
                "tumor_type": "human breast cancer",
            },
        ],
        "categories": [
            {"id": 1, "name": "mitotic figure"},
            {"id": 2, "name": "not mitotic figure"},
        ],
        "annotations": [
            {"bbox": [75, 75, 125, 125], "category_id": 1, "image_id": 1, "id": 1},  # MF (100,100)
            {"bbox": [475, 75, 525, 125], "category_id": 1, "image_id": 1, "id": 2},  # MF (500,100)
            {"bbox": [875, 875, 925, 925], "category_id": 2, "image_id": 1, "id": 3},  # imposter
        ],
    }
    gt = write(tmp_path / "MIDOG.json", json.dumps(coco))

    def mm(x, y):
        return [x * mpp / 1000.0, y * mpp / 1000.0, 0]

    # 001.json: (128, 100) is 28 px = 7 um from (100, 100): within MIDOG's 7.5 um.
    # (500, 132) is 32 px = 8 um from (500, 100): outside 7.5 um, inside 8 um.
    # The "non-mitotic figure" point is not a detection (MIDOG evaluation rule).
    pred = write(
        tmp_path / "001.json",
        json.dumps(
            {
                "type": "Multiple points",
                "points": [
                    {"name": "mitotic figure", "point": mm(128, 100), "probability": 0.9},
                    {"name": "mitotic figure", "point": mm(500, 132), "probability": 0.8},
                    {"name": "non-mitotic figure", "point": mm(900, 900), "probability": 0.3},
                ],
                "version": {"major": 1, "minor": 0},
            }
        ),
    )
    rc, out, err = run_cli(capsys, "--gt", str(gt), "--pred", str(pred), "--mpp", str(mpp), "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["radius_um"] == 7.5  # the MIDOG default for MIDOG ground truth
    assert (res["tp"], res["fp"], res["fn"]) == (1, 1, 1)
    assert res["domains"][0]["domain"] == "human breast cancer"
    _, out, _ = run_cli(
        capsys,
        "--gt",
        str(gt),
        "--pred",
        str(pred),
        "--mpp",
        str(mpp),
        "--radius-um",
        "8.01",
        "--json",
    )
    assert json.loads(out)["tp"] == 2


def test_loader_formats_directly(tmp_path):
    mm = write(tmp_path / "gt_mm.json", json.dumps({"001.tiff": [[0.025, 0.05, 0.0]]}))
    ps = load_points(mm)["001"]
    assert ps.units == "mm"
    np.testing.assert_allclose(ps.to_pixels(0.25).points, [[100.0, 200.0]])
    one = load_points(write(tmp_path / "frame7.csv", "x,y,score\n1.5,2.5,0.3\n"))
    assert list(one) == ["frame7"] and one["frame7"].scores.tolist() == [0.3]
    # a row with an image name and empty x, y declares an image without points
    multi = load_points(write(tmp_path / "m.csv", "image,x,y,mpp\na.png,1,2,0.5\nb.png,,,0.5\n"))
    assert sorted(multi) == ["a", "b"] and len(multi["b"].points) == 0 and multi["a"].mpp == 0.5


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.csv", "image,col,row\na,1,2\n", "missing column"),
        ("bad2.csv", "x,y,score\n1,abc,0.5\n", r"bad2.csv:2: y is 'abc'"),
        ("bad.json", '{"foo": 1}', "JSON layout not recognised"),
        ("broken.json", "{not json", "not valid JSON"),
        ("mp.json", '{"type": "Multiple points", "points": [{"point": ["a", 1, 0]}]}', "malformed"),
        (
            "coco.json",
            '{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "bbox": [1, 2, "x", 4]}]}',
            "bbox value is 'x', not a finite number",
        ),
        ("points.txt", "1,2\n", "unknown point-file format"),
    ],
)
def test_unreadable_inputs_exit_2_naming_the_file(capsys, tmp_path, csv_pair, name, text, message):
    gt, _ = csv_pair
    bad = write(tmp_path / name, text)
    with pytest.raises(DataFormatError, match=message):
        load_points(bad)
    rc, out, err = run_cli(capsys, "--gt", str(gt), "--pred", str(bad), "--mpp", "0.25")
    assert rc == 2 and out == ""
    assert str(bad) in err and message in err


def test_missing_file_missing_mpp_and_no_common_names_exit_2(capsys, tmp_path, csv_pair):
    gt, pred = csv_pair
    rc, _, err = run_cli(capsys, "--gt", str(tmp_path / "nope.csv"), "--pred", str(pred))
    assert rc == 2 and "nope.csv" in err and "no such file" in err
    rc, _, err = run_cli(capsys, "--gt", str(gt), "--pred", str(pred))  # plain CSV: no mpp
    assert rc == 2 and "--mpp" in err
    other = write(tmp_path / "other.csv", "image,x,y\nzzz,1,1\nyyy,2,2\n")
    rc, _, err = run_cli(capsys, "--gt", str(gt), "--pred", str(other), "--mpp", "0.25")
    assert rc == 2 and "no image names in common" in err
    rc, _, err = run_cli(capsys, "--gt", str(gt), "--pred", str(pred), "--mpp", "-1")
    assert rc == 2 and "--mpp" in err


def test_installed_console_script(tmp_path, csv_pair):
    exe = Path(sys.executable).with_name("mitodet")
    if not exe.exists():
        exe = shutil.which("mitodet")
    if not exe:
        pytest.skip("the mitodet console script is not installed next to this Python")
    gt, pred = csv_pair
    proc = subprocess.run(
        [str(exe), "evaluate", "--gt", str(gt), "--pred", str(pred), "--mpp", "0.25", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tp"] == 2
    proc = subprocess.run(
        [str(exe), "evaluate", "--gt", str(tmp_path / "missing.csv"), "--pred", str(pred)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "missing.csv" in proc.stderr


@pytest.mark.data
def test_real_mitos_atypia14_frames_against_themselves(capsys, shared_data):
    root = shared_data / "mitos_atypia14"
    rc, out, err = run_cli(capsys, "--gt", str(root), "--pred", str(root), "--json")
    assert rc == 0, err
    res = json.loads(out)
    # README: A03_03Ab 6 MF; A03_00Ab 1 MF + 7 not-mitosis (ignored); A05_00Aa 1 MF + 1 not-mitosis
    assert (res["tp"], res["fp"], res["fn"], res["n_images"]) == (8, 0, 0, 3)
    assert res["f1"] == 1.0


@pytest.mark.data
def test_real_midogpp_json_loads(shared_data):
    sets = load_points(shared_data / "midogpp" / "MIDOG++.json")
    assert len(sets) == 553
    assert all(ps.units == "px" and ps.fmt == "midog_coco" for ps in sets.values())
    assert sum(int((ps.labels == 1).sum()) for ps in sets.values()) > 10000
