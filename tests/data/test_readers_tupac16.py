"""TUPAC16 auxiliary reader (synthetic files) and the real TUPAC16 crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitodet.data.readers import read_tupac16_aux, read_tupac16_patches
from mitodet.data.records import DataFormatError


def test_row_col_is_swapped_to_x_y(write, tmp_path: Path) -> None:
    write("mitoses_ground_truth/01/01.csv", "100,200\n\n300,50\n")  # row,col
    write("mitoses_ground_truth/01/02.csv", "")
    write("mitoses_image_data/01/01.tif", b"")
    write("mitoses_image_data_part_2/01/02.tif", b"")
    records = read_tupac16_aux(tmp_path, require_images=True)
    assert [r.extra["image_id"] for r in records] == ["01", "02"]
    np.testing.assert_array_equal(records[0].points, [[200, 100], [50, 300]])
    np.testing.assert_array_equal(records[0].labels, [1, 1])
    assert (records[0].mpp, records[0].slide, records[0].domain) == (0.25, "01", "tupac16")
    assert records[1].image == tmp_path / "mitoses_image_data_part_2/01/02.tif"
    assert records[1].points.shape == (0, 2)


def test_images_without_csv(write, tmp_path: Path) -> None:
    write("mitoses_ground_truth/07/01.csv", "5,6\n")
    write("mitoses_image_data/07/01.tif", b"")
    write("mitoses_image_data/07/02.tif", b"")
    empty = read_tupac16_aux(tmp_path)
    assert [len(r.points) for r in empty] == [1, 0]
    assert len(read_tupac16_aux(tmp_path, missing_csv="skip")) == 1
    with pytest.raises(DataFormatError, match=r"07/02\.csv: no ground truth for image"):
        read_tupac16_aux(tmp_path, missing_csv="error")
    with pytest.raises(ValueError, match="'ignore'"):
        read_tupac16_aux(tmp_path, missing_csv="ignore")  # type: ignore[arg-type]


def test_label_only_and_require_images(write, tmp_path: Path) -> None:
    write("mitoses_ground_truth/03/04.csv", "1,2\n")
    (record,) = read_tupac16_aux(tmp_path)
    assert record.image == tmp_path / "mitoses_image_data/03/04.tif"
    with pytest.raises(DataFormatError, match=r"04\.tif: image missing for ground truth"):
        read_tupac16_aux(tmp_path, require_images=True)


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("1,2\n1,2,3\n", 2, "3 columns in '1,2,3', expected 2 (row,col)"),
        ("1\n", 1, "1 columns"),
        ("\n1,NaN\n", 2, "col (x) is 'NaN', not a finite number"),
        ("-1,2\n", 1, "row (y) is '-1', a negative pixel coordinate"),
    ],
)
def test_malformed_line_names_file_and_line(write, tmp_path, content, line, message) -> None:
    write("mitoses_ground_truth/01/05.csv", content)
    with pytest.raises(DataFormatError) as info:
        read_tupac16_aux(tmp_path)
    assert f"01/05.csv:{line}:" in str(info.value)
    assert message in str(info.value)


def test_missing_ground_truth_folder(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="mitoses_ground_truth: mitoses_ground_truth folder"):
        read_tupac16_aux(tmp_path)


@pytest.mark.data
def test_real_patches(shared_data: Path) -> None:
    root = shared_data / "tupac16_patches"
    records = read_tupac16_patches(root)
    assert len(records) == 65 + 178
    assert sum(r.labels.tolist() == [1] for r in records) == 65
    assert sum(r.labels.tolist() == [0] for r in records) == 178
    assert {r.slide for r in records} == {p.name.split("_")[0] for p in root.glob("*/*.jpg")}
    for r in records:  # one point at the geometric centre of the real size
        width, height = Image.open(r.image).size
        np.testing.assert_array_equal(r.points, [[(width - 1) / 2, (height - 1) / 2]])
    off_centre = [r for r in records if r.points[0].tolist() != [39.5, 39.5]]
    assert len(off_centre) == 3  # the crops that are 79 px on one side
    assert {r.mpp for r in records} == {0.25}


def test_patch_errors(write, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="mitosis folder not found"):
        read_tupac16_patches(tmp_path)
    write("mitosis/27_01_0.jpg", b"broken")
    (tmp_path / "non_mitosis").mkdir()
    with pytest.raises(DataFormatError, match=r"27_01_0\.jpg: not a readable image"):
        read_tupac16_patches(tmp_path)
    (tmp_path / "mitosis/27_01_0.jpg").unlink()
    write("mitosis/crop.jpg", b"")
    with pytest.raises(DataFormatError, match="'crop' is not of the form <case>_<image>_<index>"):
        read_tupac16_patches(tmp_path)
