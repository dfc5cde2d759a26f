"""Crop-set readers: AMi-Br (with every mitosis of a crop), atnorm, MITOS-ATYPIA-14 H03 crops."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitodet.data.readers import read_amibr, read_atnorm, read_mitos_atypia14_patches
from mitodet.data.records import DataFormatError


@pytest.mark.data
def test_real_amibr(shared_data: Path) -> None:
    root = shared_data / "amibr"
    rows = list(csv.DictReader(open(root / "amibr.csv", newline="")))
    records = read_amibr(root)
    assert len(records) == len(rows) == 3720
    # crops holding more than one mitosis, counted by brute force: the crop of row r covers
    # slide pixels x - 64 .. x + 63 (and y likewise)
    same_slide: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for r in rows:
        same_slide.setdefault((r["dataset"], r["slide"]), []).append((int(r["x"]), int(r["y"])))
    multi = 0
    extra_points = 0
    for r in rows:
        x, y = int(r["x"]), int(r["y"])
        inside = sum(
            1 for ox, oy in same_slide[(r["dataset"], r["slide"])] if x - 64 <= ox <= x + 63 and y - 64 <= oy <= y + 63
        )
        multi += inside > 1
        extra_points += inside - 1
    assert sum(len(rec.points) > 1 for rec in records) == multi == 91
    assert sum(len(rec.points) for rec in records) == 3720 + extra_points
    for rec, row in zip(records, rows):
        assert rec.image == root / row["file"]
        assert rec.points[0].tolist() == [64.0, 64.0]  # the crop's own mitosis
        assert rec.points.min() >= 0 and rec.points.max() <= 127
        assert rec.slide == f"{row['dataset']}:{row['slide']}" and rec.domain == row["dataset"]
        assert rec.extra["atypical"][0] == (row["label"] == "atypical")
    assert sum(bool(rec.extra["atypical"][0]) for rec in records) == 832


_AMIBR_HEADER = "file,label,dataset,slide,x,y,majority_atypical\n"


def _amibr(write, rows: str, header: str = _AMIBR_HEADER) -> None:
    write("amibr.csv", header + rows)


def test_amibr_neighbours_in_crop_coordinates(write, tmp_path: Path) -> None:
    _amibr(
        write,
        "normal/1.jpg,normal,D,s,1000,1000,False\n"
        "atypical/2.jpg,atypical,D,s,1063,936,True\n"  # inside crop 1 at (127, 0)
        "normal/3.jpg,normal,D,s,1064,1000,False\n"  # just outside crop 1
        "normal/4.jpg,normal,E,s,1001,1001,False\n",
    )  # other dataset: never shared
    for name in ("normal/1.jpg", "atypical/2.jpg", "normal/3.jpg", "normal/4.jpg"):
        write(name, b"")
    one, two, three, four = read_amibr(tmp_path)
    # crop 1: origin (936, 936); mitosis 2 -> (127, 0) inside, mitosis 3 -> (128, 64) outside
    np.testing.assert_array_equal(one.points, [[64, 64], [127, 0]])
    assert one.extra["atypical"].tolist() == [False, True]
    assert one.extra["origin"] == (936.0, 936.0)
    # crop 2: origin (999, 872); mitoses 1 and 3 fall on row 128, just below the crop
    np.testing.assert_array_equal(two.points, [[64, 64]])
    # crop 3: origin (1000, 936); mitosis 1 -> (0, 64), mitosis 2 -> (63, 0)
    np.testing.assert_array_equal(three.points, [[64, 64], [0, 64], [63, 0]])
    assert three.extra["atypical"].tolist() == [False, False, True]
    assert (four.slide, four.domain, len(four.points), four.mpp) == ("E:s", "E", 1, 0.25)


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ("normal/1.jpg,normal,D,s,10,20,False\nnormal/2.jpg,odd,D,s,1,2,False\n", 3, "label 'odd'"),
        ("normal/1.jpg,normal,D,s,nan,20,False\n", 2, "x is 'nan', not a finite number"),
        ("normal/1.jpg,normal,D,s,10,-2,False\n", 2, "y is '-2', a negative pixel coordinate"),
        ("normal/1.jpg,normal,D,s,10,20\n", 2, "6 fields, the header has 7"),
        ("normal/1.jpg,normal,D,s,10,20,False\n\nnormal/1.jpg,normal,D,s,1,2,False\n", 4, "already listed on line 2"),
        ("normal/9.jpg,normal,D,s,10,20,False\n", 2, "normal/9.jpg not found"),
    ],
)
def test_amibr_malformed_rows(write, tmp_path, rows, line, message) -> None:
    write("normal/1.jpg", b"")
    write("normal/2.jpg", b"")
    _amibr(write, rows)
    with pytest.raises(DataFormatError) as info:
        read_amibr(tmp_path)
    assert f"amibr.csv:{line}:" in str(info.value)
    assert message in str(info.value)


def test_amibr_missing_csv_and_columns(write, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"amibr\.csv: file not found"):
        read_amibr(tmp_path)
    _amibr(write, "normal/1.jpg,normal,D,s,10\n", header="file,label,dataset,slide,x\n")
    with pytest.raises(DataFormatError, match=r"amibr\.csv:1: .* lacks column\(s\) \['y'\]"):
        read_amibr(tmp_path)
    _amibr(write, "normal/1.jpg,normal,D,s,10,20,False\n")
    assert len(read_amibr(tmp_path, require_images=False)) == 1


@pytest.mark.data
@pytest.mark.parametrize(("folder", "normal", "atypical"), [("atnorm_br", 618, 128), ("atnorm_md", 1888, 219)])
def test_real_atnorm(shared_data: Path, folder: str, normal: int, atypical: int) -> None:
    records = read_atnorm(shared_data / folder)
    assert len(records) == normal + atypical
    flags = [bool(r.extra["atypical"][0]) for r in records]
    assert flags.count(False) == normal and flags.count(True) == atypical
    assert all(r.points.tolist() == [[63.5, 63.5]] and r.labels.tolist() == [1] for r in records)
    assert len({r.slide for r in records}) == len(records)
    assert {r.domain for r in records} == {folder} and {r.mpp for r in records} == {0.25}
    if folder == "atnorm_md":  # the five expert votes, matched by stem (CSV says .png)
        votes = [r.extra["expert_votes"] for r in records]
        assert all(len(v) == 5 for v in votes)
        assert sum(v.count("Atypical") >= 3 for v in votes) == atypical


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_atnorm_votes_and_errors(write, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="normal folder not found"):
        read_atnorm(tmp_path)
    write("normal/1.jpg", _jpeg((128, 100)))
    write("atypical/2.jpg", _jpeg((128, 128)))
    a, b = read_atnorm(tmp_path, domain="x")
    assert a.points.tolist() == [[63.5, 49.5]] and (a.slide, b.slide) == ("x:1", "x:2")
    write("expert_votes.csv", "Filename,Expert_1,Expert_2,Majority\n1.png,Normal,Normal,Normal\n")
    with pytest.raises(DataFormatError, match=r"expert_votes\.csv: no row for crop '2.jpg'"):
        read_atnorm(tmp_path)
    write("expert_votes.csv", "Filename,Expert_1,Expert_2,Majority\n1.png,Normal,Normal\n")
    with pytest.raises(DataFormatError, match=r"expert_votes\.csv:2: 3 fields"):
        read_atnorm(tmp_path)
    write("expert_votes.csv", "")
    write("atypical/2.jpg", b"broken")
    with pytest.raises(DataFormatError, match=r"expert_votes\.csv:1: header"):
        read_atnorm(tmp_path)
    (tmp_path / "expert_votes.csv").unlink()
    with pytest.raises(DataFormatError, match=r"2\.jpg: not a readable image"):
        read_atnorm(tmp_path)


@pytest.mark.data
def test_real_mitos_atypia14_patches(shared_data: Path) -> None:
    records = read_mitos_atypia14_patches(shared_data / "mitos_atypia14_h03_patches")
    assert len(records) == 18 + 42
    assert sum(r.extra["position_unknown"] for r in records) == 18
    assert all(r.points.shape == (0, 2) for r in records)
    assert {(r.slide, r.domain, r.mpp) for r in records} == {("H03", "hamamatsu", 0.2273)}
    assert records[0].extra["frame"] == "H03_00Aa"


def test_mitos_atypia14_patches_errors(write, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="mitosis folder not found"):
        read_mitos_atypia14_patches(tmp_path)
    write("mitosis/A07_01Bc_2.jpg", b"")
    write("non_mitosis/x.jpg", b"")
    with pytest.raises(DataFormatError, match=r"x\.jpg: name 'x' is not of the form"):
        read_mitos_atypia14_patches(tmp_path)
    (tmp_path / "non_mitosis/x.jpg").unlink()
    (record,) = read_mitos_atypia14_patches(tmp_path)
    assert (record.slide, record.domain, record.mpp) == ("A07", "aperio", 0.2455)
