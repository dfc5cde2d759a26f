"""ICPR 2012 readers: pixel-list frames and mask crops."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitodet.data.readers import read_icpr12, read_icpr12_patches
from mitodet.data.records import DataFormatError


@pytest.mark.data
def test_real_label_csvs(shared_data: Path) -> None:
    root = shared_data / "icpr12_train_labels"
    csvs = sorted(root.glob("*/*.csv"))
    assert len(csvs) == 35
    # one mitosis per non-empty line, counted without the reader
    expected = sum(1 for p in csvs for line in p.read_text().splitlines() if line.strip())
    records = read_icpr12(root)
    assert len(records) == 35
    assert sum(len(r.points) for r in records) == expected == 226
    assert {r.slide for r in records} == {"A00", "A01", "A02", "A03", "A04"}
    assert {(r.domain, r.mpp) for r in records} == {("aperio", 0.2456)}
    first = next(r for r in records if r.extra["frame"] == "A00_01")
    assert first.image == root / "A00_v2" / "A00_01.bmp"
    values = np.array(csvs[0].read_text().splitlines()[0].split(","), dtype=float)
    np.testing.assert_allclose(first.points[0], values.reshape(-1, 2).mean(axis=0))
    assert first.extra["areas_px"][0] == len(values) // 2
    # inside the 2084 x 2084 frame
    all_points = np.concatenate([r.points for r in records])
    assert all_points.min() >= 0 and all_points.max() <= 2083


def test_centroid_scanner_h_trailing_comma_and_empty_frame(write, tmp_path: Path) -> None:
    write("H02_v2/H02_05.csv", "10,20,12,20,14,26,\n\n1,1\n")
    write("H02_v2/H02_06.csv", "")
    write("H02_v2/H02_06.bmp", b"")
    records = read_icpr12(tmp_path)
    assert [r.extra["frame"] for r in records] == ["H02_05", "H02_06"]
    np.testing.assert_allclose(records[0].points, [[12, 22], [1, 1]])
    assert records[0].extra["areas_px"] == (3, 1)
    assert (records[0].domain, records[0].mpp, records[0].slide) == ("hamamatsu", 0.2273, "H02")
    assert records[1].points.shape == (0, 2)
    with pytest.raises(DataFormatError, match=r"H02_05\.bmp: frame image not found"):
        read_icpr12(tmp_path, require_images=True)


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("1,2,3,4\n1,2,3\n", 2, "3 values, expected an even number"),
        ("1,2\n\n5,nan\n", 3, "value 2 (y) is 'nan', not a finite number"),
        ("1,-2\n", 1, "value 2 (y) is '-2', a negative pixel coordinate"),
        ("1,2,,4\n", 1, "value 3 (x) is '', not a number"),
    ],
)
def test_malformed_line_names_file_and_line(write, tmp_path, content, line, message) -> None:
    write("A00_v2/A00_01.csv", content)
    with pytest.raises(DataFormatError) as info:
        read_icpr12(tmp_path)
    assert f"A00_01.csv:{line}:" in str(info.value)
    assert message in str(info.value)


def test_image_without_csv_and_bad_root(write, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no scanner folders"):
        read_icpr12(tmp_path)
    write("A00_v2/A00_03.bmp", b"")
    with pytest.raises(DataFormatError, match=r"A00_03\.csv: label file missing"):
        read_icpr12(tmp_path)
    with pytest.raises(DataFormatError, match="folder not found"):
        read_icpr12(tmp_path / "missing")


def test_withdrawn_lab_is_in_no_builtin_spec() -> None:
    # ICPR 2012 MITOS images are reserved for external testing (../shared/data/README.md):
    # the reader stays (tested on the fixtures below), but nothing trains or tunes on them.
    from mitodet.data.spec import SHARED_SPEC

    entries = SHARED_SPEC["sources"] + SHARED_SPEC["full_frames"]
    assert not [e for e in entries if e["reader"].startswith("icpr12") or "icpr12" in e.get("root", "")]


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_patch_mask_components_and_noise(write, tmp_path: Path) -> None:
    mask = np.zeros((64, 64), dtype=np.uint8)
    yy, xx = np.mgrid[:64, :64]
    mask[(xx - 20) ** 2 + (yy - 10) ** 2 <= 25] = 255  # disc centred at x=20, y=10
    mask[(xx - 45) ** 2 + (yy - 50) ** 2 <= 36] = 255  # disc centred at x=45, y=50
    mask[60, 2] = 255  # a one-pixel speck: below MIN_COMPONENT_PIXELS
    write("images/A01_02_3.jpg", _jpeg(np.zeros((64, 64, 3), dtype=np.uint8)))
    write("masks/A01_02_3.jpg", _jpeg(mask))
    (record,) = read_icpr12_patches(tmp_path)
    np.testing.assert_allclose(record.points, [[20, 10], [45, 50]], atol=0.5)
    assert record.slide == "A01" and record.extra["frame"] == "A01_02"
    (with_speck,) = read_icpr12_patches(tmp_path, min_component_pixels=1)
    assert len(with_speck.points) >= 3


def test_patch_errors(write, tmp_path: Path) -> None:
    write("images/A00_01_0.jpg", b"")
    write("masks/A00_01_0.jpg", b"not a jpeg")
    write("images/A00_01_1.jpg", b"")
    with pytest.raises(DataFormatError, match=r"masks/A00_01_1\.jpg: file missing"):
        read_icpr12_patches(tmp_path)
    (tmp_path / "images/A00_01_1.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"masks/A00_01_0\.jpg: unreadable mask"):
        read_icpr12_patches(tmp_path)
    for folder in ("images", "masks"):
        (tmp_path / folder / "A00_01_0.jpg").unlink()
        write(f"{folder}/crop.jpg", b"")
    with pytest.raises(DataFormatError, match="'crop' is not of the form"):
        read_icpr12_patches(tmp_path)
    with pytest.raises(ValueError, match="got 0"):
        read_icpr12_patches(tmp_path, min_component_pixels=0)
