"""MIDOG / MIDOG++ JSON reader: exact counts on the real file, malformed input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mitodet.data.readers import read_midog
from mitodet.data.records import DataFormatError


@pytest.mark.data
def test_real_midogpp_counts(shared_data: Path) -> None:
    json_path = shared_data / "midogpp" / "MIDOG++.json"
    data = json.loads(json_path.read_text())
    categories = Counter(a["category_id"] for a in data["annotations"])
    records = read_midog(json_path, shared_data / "midogpp" / "images")
    assert len(records) == len(data["images"]) == 553
    assert sum(len(r.mitoses) for r in records) == categories[1] == 11937
    assert sum(len(r.hard_negatives) for r in records) == categories[2] == 14349
    assert Counter(r.domain for r in records) == Counter(i["tumor_type"] for i in data["images"])
    assert {r.mpp for r in records} == {0.25}
    first = records[0]
    assert first.slide == "001" and first.image.name == "001.tiff"
    assert (first.extra["width"], first.extra["height"]) == (7215, 5412)
    ann = next(a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"])
    x1, y1, x2, y2 = ann["bbox"]
    k = first.extra["annotation_ids"].index(ann["id"])
    np.testing.assert_array_equal(first.points[k], [(x1 + x2) / 2, (y1 + y2) / 2])
    # the two border objects whose boxes stick out of their image sit on the edge
    by_file = {r.image.name: r for r in records}
    r305 = by_file["305.tiff"]
    assert r305.points[r305.extra["annotation_ids"].index(15363)].tolist() == [0.0, 2416.0]
    assert all(r.points.min(initial=0) >= 0 for r in records)
    # images 151-200 (MIDOG 2021 Leica GT450) carry no annotation: unlabelled, not negative
    annotated = {a["image_id"] for a in data["annotations"]}
    unlabelled = [r.slide for r in records if not r.labelled]
    assert len(unlabelled) == len(data["images"]) - len(annotated) == 50
    assert unlabelled == [f"{i:03d}" for i in range(151, 201)]


def _write_json(write, images=None, annotations=None, raw: str | None = None) -> Path:
    if raw is None:
        raw = json.dumps(
            {
                "images": images
                if images is not None
                else [
                    {"file_name": "a.tiff", "id": 1, "width": 100, "height": 80, "tumor_type": "t"},
                    {"file_name": "b.tiff", "id": 2, "width": 100, "height": 80},
                ],
                "annotations": annotations if annotations is not None else [],
            },
            indent=1,
        )
    return write("midog.json", raw)


def test_points_labels_mpp_mapping_and_empty_image(write, tmp_path: Path) -> None:
    path = _write_json(
        write,
        annotations=[
            {"bbox": [10, 20, 60, 70], "category_id": 1, "image_id": 1, "id": 7},
            {"bbox": [0, 0, 4, 6], "category_id": 2, "image_id": 1, "id": 8},
        ],
    )
    a, b = read_midog(path, tmp_path / "img", mpp={"a.tiff": 0.23, "b.tiff": 0.26})
    np.testing.assert_array_equal(a.points, [[35, 45], [2, 3]])
    np.testing.assert_array_equal(a.labels, [1, 0])
    assert (a.mpp, b.mpp, a.domain, b.domain) == (0.23, 0.26, "t", "")
    assert a.image == tmp_path / "img" / "a.tiff" and b.points.shape == (0, 2)
    assert (a.labelled, b.labelled) == (True, False)
    assert read_midog(path, tmp_path, mpp=0.24)[0].mpp == 0.24
    with pytest.raises(DataFormatError, match="'b.tiff' is not in the mpp mapping"):
        read_midog(path, tmp_path, mpp={"a.tiff": 0.23})
    with pytest.raises(ValueError, match="got -1"):
        read_midog(path, tmp_path, mpp=-1)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ({"bbox": [1, 2, 3, 4], "category_id": 3, "image_id": 1, "id": 5}, "category_id 3"),
        ({"bbox": [1, 2, 3], "category_id": 1, "image_id": 1, "id": 5}, "is not a list of 4"),
        ({"bbox": [1, 2, 3, 4], "category_id": 1, "image_id": 9, "id": 5}, "image_id 9 is not"),
        ({"bbox": [10, 10, 5, 20], "category_id": 1, "image_id": 1, "id": 5}, "x2 < x1"),
        ({"bbox": [-60, 2, -10, 4], "category_id": 1, "image_id": 1, "id": 5}, "lies outside"),
        (
            {"bbox": [1, 2, 3, float("nan")], "category_id": 1, "image_id": 1, "id": 5},
            "bbox value is nan, not a finite number",
        ),
    ],
)
def test_malformed_annotation_names_file_and_entry(write, tmp_path, annotation, message) -> None:
    path = _write_json(
        write,
        annotations=[
            {"bbox": [1, 2, 3, 4], "category_id": 1, "image_id": 1, "id": 4},
            annotation,
        ],
    )
    with pytest.raises(DataFormatError) as info:
        read_midog(path, tmp_path)
    assert str(path) in str(info.value)
    assert "annotations[1] (id 5)" in str(info.value)
    assert message in str(info.value)


def test_invalid_json_names_line_and_missing_file(write, tmp_path: Path) -> None:
    path = _write_json(write, raw='{\n "images": [],\n "annotations": [,]\n}\n')
    with pytest.raises(DataFormatError, match=r"midog\.json:3: invalid JSON"):
        read_midog(path, tmp_path)
    with pytest.raises(DataFormatError, match=r"nope\.json: file not found"):
        read_midog(tmp_path / "nope.json", tmp_path)
    path = _write_json(write, raw='{"images": {}}')
    with pytest.raises(DataFormatError, match="'images' and 'annotations' lists"):
        read_midog(path, tmp_path)
    path = _write_json(write, images=[{"id": 1}])
    with pytest.raises(DataFormatError, match=r"images\[0\] lacks 'id' or 'file_name'"):
        read_midog(path, tmp_path)
