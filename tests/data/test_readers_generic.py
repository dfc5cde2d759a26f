"""Generic points CSV and QuPath GeoJSON readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mitodet.data.readers import read_points_csv, read_qupath_geojson
from mitodet.data.records import DataFormatError


def test_points_csv_groups_rows_by_image(write, tmp_path: Path) -> None:
    path = write(
        "labels/points.csv",
        "image,x,y,score,label,mpp\n"
        "a.png,10,20,0.9,mitosis,0.25\n"
        "b.png,1.5,2.5,0.1,hard_negative,0.23\n"
        "a.png,30,40,0.5,0,\n"
        "\n"
        "c.png,,,,,0.25\n"
        "a.png,5,6,0.7,,\n",
    )
    a, b, c = read_points_csv(path)
    assert a.image == tmp_path / "labels" / "a.png"
    np.testing.assert_array_equal(a.points, [[10, 20], [30, 40], [5, 6]])
    np.testing.assert_array_equal(a.labels, [1, 0, 1])  # empty label -> 1
    assert a.scores.tolist() == [0.9, 0.5, 0.7] and a.mpp == 0.25 and a.slide == "a"
    assert (b.mpp, b.labels.tolist()) == (0.23, [0])
    assert c.points.shape == (0, 2) and c.labels.shape == (0,)  # image without objects


def test_points_csv_mpp_argument_image_root_and_no_scores(write, tmp_path: Path) -> None:
    path = write("p.csv", "X,Y,Image,Slide,Domain\n1,2,/abs/a.png,s1,lab1\n3,4,rel/b.png,,\n")
    a, b = read_points_csv(path, image_root=tmp_path / "imgs", mpp=0.5)
    assert a.image == Path("/abs/a.png") and b.image == tmp_path / "imgs" / "rel" / "b.png"
    assert (a.slide, a.domain, b.slide, b.domain) == ("s1", "lab1", "b", "")
    assert a.scores is None and a.mpp == b.mpp == 0.5
    with pytest.raises(DataFormatError, match=r"p\.csv:2: no pixel size for image '/abs/a.png'"):
        read_points_csv(path)
    with pytest.raises(ValueError, match="got 0"):
        read_points_csv(path, mpp=0)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("a.png,1,2\na.png,1\n", 3, "2 fields, the header has 3"),
        ("a.png,1,nan\n", 2, "y is 'nan', not a finite number"),
        ("a.png,1,2\n\na.png,-1,2\n", 4, "x is '-1', a negative pixel coordinate"),
        ("a.png,1,\n", 2, "only one of x='1', y=''"),
        (",1,2\n", 2, "empty image"),
    ],
)
def test_points_csv_malformed_rows(write, body, line, message) -> None:
    path = write("p.csv", "image,x,y\n" + body)
    with pytest.raises(DataFormatError) as info:
        read_points_csv(path, mpp=0.25)
    assert f"p.csv:{line}:" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("image,x\na.png,1\n", 1, "missing column(s) ['y']"),
        ("image,x,y,lable\na.png,1,2,1\n", 1, "unknown column(s) ['lable']"),
        ("image,x,y,label\na.png,1,2,maybe\n", 2, "unknown label 'maybe'"),
        ("image,x,y,mpp\na.png,1,2,0.25\na.png,3,4,0.5\n", 3, "mpp 0.5 differs from 0.25"),
        ("image,x,y,slide\na.png,1,2,s1\na.png,3,4,s2\n", 3, "slide 's2' differs from 's1'"),
        ("image,x,y,mpp\na.png,1,2,-1\n", 2, "mpp is '-1'"),
        ("image,x,y,score\na.png,1,2,\n", 2, "score is '', not a number"),
    ],
)
def test_points_csv_bad_header_and_values(write, text, line, message) -> None:
    path = write("p.csv", text)
    with pytest.raises(DataFormatError) as info:
        read_points_csv(path, mpp=0.25)
    assert f"p.csv:{line}:" in str(info.value)
    assert message in str(info.value)


def test_points_csv_missing_and_empty_file(write, tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"nope\.csv: file not found"):
        read_points_csv(tmp_path / "nope.csv")
    with pytest.raises(DataFormatError, match=r"empty\.csv: empty file: no header"):
        read_points_csv(write("empty.csv", "\n"))


def _feature(geometry: dict, name: str | None = None, **properties) -> dict:
    props = dict(properties)
    if name is not None:
        props["classification"] = {"name": name, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": geometry, "properties": props}


def test_geojson_geometries_and_classes(write, tmp_path: Path) -> None:
    collection = {
        "type": "FeatureCollection",
        "features": [
            _feature({"type": "Point", "coordinates": [10, 20]}, "Mitosis"),
            _feature({"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}, "Non-mitotic"),
            # a 4 x 2 rectangle (closed ring) -> centroid (102, 51)
            _feature(
                {"type": "Polygon", "coordinates": [[[100, 50], [104, 50], [104, 52], [100, 52], [100, 50]]]},
                "mitotic figure",
            ),
            _feature({"type": "Point", "coordinates": [7, 8]}),  # unclassified -> 1
            _feature({"type": "Point", "coordinates": [9, 9]}, "Hard negative"),
            _feature({"type": "Point", "coordinates": [5, 5]}, "Imposter"),
            _feature({"type": "Point", "coordinates": [6, 6]}, "not mitotic figure"),
        ],
    }
    path = write("a.geojson", json.dumps(collection))
    (record,) = read_qupath_geojson(path, tmp_path / "slide.svs", 0.25)
    np.testing.assert_allclose(record.points, [[10, 20], [1, 2], [3, 4], [102, 51], [7, 8], [9, 9], [5, 5], [6, 6]])
    assert record.labels.tolist() == [1, 0, 0, 1, 1, 0, 0, 0]
    assert (record.slide, record.mpp, record.scores) == ("slide", 0.25, None)


def test_geojson_list_of_features_scores_and_label_map(write, tmp_path: Path) -> None:
    features = [
        _feature({"type": "Point", "coordinates": [1, 1]}, "Tumor", measurements={"score": 0.8}),
        _feature({"type": "Point", "coordinates": [2, 2]}, "Mitosis", measurements=[{"name": "Score", "value": 0.3}]),
    ]
    path = write("list.json", json.dumps(features))
    with pytest.raises(DataFormatError, match=r"features\[0\]: unknown class 'Tumor'.*label_map"):
        read_qupath_geojson(path, "img.tif", 0.25)
    (record,) = read_qupath_geojson(path, "img.tif", 0.25, label_map={"tumor": 0}, slide="S")
    assert record.labels.tolist() == [0, 1] and record.scores.tolist() == [0.8, 0.3]
    assert record.slide == "S"
    (empty,) = read_qupath_geojson(write("e.json", '{"type": "FeatureCollection", "features": []}'), "img.tif", 0.25)
    assert empty.points.shape == (0, 2)


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        ({"type": "Point", "coordinates": [-1, 2]}, "point [-1.0, 2.0] is not finite and >= 0"),
        ({"type": "Point", "coordinates": [float("nan"), 2]}, "is not finite and >= 0"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "'LineString' is not supported"),
        ({"type": "Point", "coordinates": "x"}, "are not an [x, y] pair"),
    ],
)
def test_geojson_bad_geometry(write, geometry, message) -> None:
    features = [_feature({"type": "Point", "coordinates": [1, 1]}), _feature(geometry)]
    path = write("bad.geojson", json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.raises(DataFormatError) as info:
        read_qupath_geojson(path, "img.tif", 0.25)
    assert "bad.geojson" in str(info.value) and "features[1]" in str(info.value)
    assert message in str(info.value)


def test_geojson_invalid_json_and_structure(write) -> None:
    path = write("x.geojson", '{"type": "FeatureCollection",\n "features": [\n  {]\n}')
    with pytest.raises(DataFormatError, match=r"x\.geojson:3: invalid JSON"):
        read_qupath_geojson(path, "img.tif", 0.25)
    with pytest.raises(DataFormatError, match="not a GeoJSON FeatureCollection"):
        read_qupath_geojson(write("y.geojson", '{"a": 1}'), "img.tif", 0.25)
    with pytest.raises(DataFormatError, match=r"none\.geojson: file not found"):
        read_qupath_geojson(path.parent / "none.geojson", "img.tif", 0.25)
    with pytest.raises(ValueError, match="got 0"):
        read_qupath_geojson(path, "img.tif", 0)
