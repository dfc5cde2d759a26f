"""MITOS-ATYPIA-14 reader: real label CSVs (exact counts) and malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mitodet.data.readers import read_mitos_atypia14
from mitodet.data.records import DataFormatError


def _count_rows(root: Path, suffix: str) -> int:
    """Non-blank rows of every ``*<suffix>`` CSV, counted without the reader."""
    total = 0
    for path in root.glob("*/mitosis/*.csv"):
        is_negative = path.name.endswith("_not_mitosis.csv")
        if is_negative == (suffix == "_not_mitosis.csv"):
            total += sum(1 for line in path.read_text().splitlines() if line.strip())
    return total


@pytest.mark.data
def test_label_only_root_has_the_published_counts(shared_data: Path) -> None:
    root = shared_data / "mitos_atypia14_labels"
    records = read_mitos_atypia14(root)
    assert len(list(root.glob("*/mitosis/*.csv"))) == 2400
    assert len(records) == 1200
    assert len({r.slide for r in records}) == 11
    assert sum(len(r.mitoses) for r in records) == 749 == _count_rows(root, "_mitosis.csv")
    negatives = _count_rows(root, "_not_mitosis.csv")
    assert sum(len(r.hard_negatives) for r in records) == 2884 == negatives
    first = records[0]
    # images are not distributed: the path is where the official layout puts the frame
    assert first.image == root / "A03" / "frames" / "x40" / "A03_00Aa.tiff"
    assert not first.image.exists()
    assert {r.domain for r in records} == {"aperio"}
    assert {r.mpp for r in records} == {0.2455}
    with pytest.raises(DataFormatError, match=r"A03_00Aa\.tiff.*frame image not found"):
        read_mitos_atypia14(root, require_images=True)


@pytest.mark.data
def test_positive_min_confidence_demotes_low_confidence_mitoses(shared_data: Path) -> None:
    root = shared_data / "mitos_atypia14_labels"
    confidences = [
        float(line.split(",")[2])
        for path in root.glob("*/mitosis/*_mitosis.csv")
        if not path.name.endswith("_not_mitosis.csv")
        for line in path.read_text().split()
    ]
    strict = read_mitos_atypia14(root, positive_min_confidence=0.8)
    mitoses = sum(len(r.mitoses) for r in strict)
    assert mitoses == sum(c >= 0.8 for c in confidences) == 749 - 276
    assert sum(len(r.hard_negatives) for r in strict) == 2884 + 276
    # scores travel with the points
    assert all((r.scores[r.labels == 1] >= 0.8).all() for r in strict)


@pytest.mark.data
def test_three_real_frames(shared_data: Path) -> None:
    records = read_mitos_atypia14(shared_data / "mitos_atypia14", require_images=True)
    by_frame = {r.extra["frame"]: r for r in records}
    assert sorted(by_frame) == ["A03_00Ab", "A03_03Ab", "A05_00Aa"]
    a00, a03, a05 = by_frame["A03_00Ab"], by_frame["A03_03Ab"], by_frame["A05_00Aa"]
    assert (len(a03.mitoses), len(a03.hard_negatives)) == (6, 0)
    assert (len(a00.mitoses), len(a00.hard_negatives)) == (1, 7)
    # A05_00Aa_mitosis.csv is "1107,644,1.0"; its not-mitosis file "1251,683,0.2"
    assert (len(a05.mitoses), len(a05.hard_negatives)) == (1, 1) and a05.slide == "A05"
    np.testing.assert_array_equal(a05.mitoses[0], [1107.0, 644.0])
    np.testing.assert_array_equal(a05.hard_negatives[0], [1251.0, 683.0])
    # first row of A03_00Ab_mitosis.csv is "476,394,0.65": x = column, y = row
    np.testing.assert_array_equal(a00.mitoses[0], [476.0, 394.0])
    assert a00.scores[0] == 0.65
    assert a00.image.is_file() and a00.slide == "A03"
    for r in records:  # inside the 1539 x 1376 frame
        assert (r.points[:, 0] <= 1538).all() and (r.points[:, 1] <= 1375).all()


def _frame(write, slide: str, frame: str, mitosis: str, not_mitosis: str | None = "") -> None:
    write(f"{slide}/mitosis/{frame}_mitosis.csv", mitosis)
    if not_mitosis is not None:
        write(f"{slide}/mitosis/{frame}_not_mitosis.csv", not_mitosis)


def test_hamamatsu_slide_empty_csv_and_frame_discovered_from_image(write, tmp_path: Path) -> None:
    _frame(write, "H10", "H10_00Aa", "10,20,1.0\n\n30.5,40,0.65\n", "")
    write("H10/frames/x40/H10_00Ab.tiff", b"")
    _frame(write, "H10", "H10_00Ab", "", "5,6,0.2\n")
    records = read_mitos_atypia14(tmp_path, require_images=False)
    assert [r.extra["frame"] for r in records] == ["H10_00Aa", "H10_00Ab"]
    aa, ab = records
    assert (aa.domain, aa.mpp, aa.slide) == ("hamamatsu", 0.2273, "H10")
    np.testing.assert_array_equal(aa.points, [[10, 20], [30.5, 40]])
    np.testing.assert_array_equal(aa.labels, [1, 1])
    assert ab.image == tmp_path / "H10/frames/x40/H10_00Ab.tiff"
    np.testing.assert_array_equal(ab.labels, [0])
    assert ab.points.shape == (1, 2) and aa.scores.tolist() == [1.0, 0.65]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("1,2,1.0\n3,4\n", 2, "2 columns"),
        ("1,2,1.0\n\n3,4,0.5,9\n", 3, "4 columns"),
        ("1,nan,1.0\n", 1, "y is 'nan', not a finite number"),
        ("1,2,1.0\n-3,4,1.0\n", 2, "x is '-3', a negative pixel coordinate"),
        ("abc,2,1.0\n", 1, "x is 'abc', not a number"),
        ("1,2,1.5\n", 1, "confidence is '1.5', outside"),
    ],
)
def test_malformed_row_names_file_and_line(write, tmp_path, content, line, message) -> None:
    _frame(write, "A03", "A03_00Aa", content)
    with pytest.raises(DataFormatError) as info:
        read_mitos_atypia14(tmp_path)
    text = str(info.value)
    assert f"A03_00Aa_mitosis.csv:{line}:" in text
    assert message in text


def test_missing_not_mitosis_csv_is_an_error(write, tmp_path: Path) -> None:
    _frame(write, "A03", "A03_00Aa", "1,2,1.0\n", not_mitosis=None)
    with pytest.raises(DataFormatError, match=r"A03_00Aa_not_mitosis\.csv: label file missing"):
        read_mitos_atypia14(tmp_path)


def test_image_without_labels_is_an_error(write, tmp_path: Path) -> None:
    write("A03/frames/x40/A03_00Aa.tiff", b"")
    with pytest.raises(DataFormatError, match="A03_00Aa_mitosis.csv: label file missing"):
        read_mitos_atypia14(tmp_path)


def test_frame_in_the_wrong_slide_folder(write, tmp_path: Path) -> None:
    _frame(write, "A03", "A04_00Aa", "1,2,1.0\n")
    with pytest.raises(DataFormatError, match="not named after its slide folder 'A03'"):
        read_mitos_atypia14(tmp_path)


def test_bad_roots_and_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="root folder not found"):
        read_mitos_atypia14(tmp_path / "nope")
    with pytest.raises(DataFormatError, match="no slide folders"):
        read_mitos_atypia14(tmp_path)
    with pytest.raises(ValueError, match="got 80"):
        read_mitos_atypia14(tmp_path, positive_min_confidence=80)
