"""Fixtures for the whole-field validation and second-stage tests: a tiny AMi-Br layout of
cartoon crops (pink tissue, dark discs as mitoses) that the real readers read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PINK, DARK = (232, 160, 210), (60, 20, 90)


def crop(discs, size: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = PINK
    img = np.clip(img.astype(np.int16) + rng.integers(-3, 4, size=(size, size, 1)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for x, y in discs:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 36] = DARK
    return img


@pytest.fixture
def amibr_root(tmp_path: Path) -> Path:
    """12 crops of 4 MIDOG21 slides (two scanners) and 2 TUPAC16 slides, one mitosis each at the centre."""
    root = tmp_path / "amibr"
    (root / "normal").mkdir(parents=True)
    rows = []
    slides = [
        ("MIDOG21", "003.tiff"),
        ("MIDOG21", "004.tiff"),
        ("MIDOG21", "120.tiff"),
        ("MIDOG21", "121.tiff"),
        ("TUPAC16", "01.tif"),
        ("TUPAC16", "02.tif"),
    ]
    k = 0
    for dataset, slide in slides:
        for j in range(2):
            name = f"normal/{dataset}_{k}.jpg"
            Image.fromarray(crop([(64, 64)], seed=k)).save(root / name, quality=95)
            rows.append([name, "normal", dataset, slide, 1000 + 1000 * j, 1000, "", "", "False"])
            k += 1
    with open(root / "amibr.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["file", "label", "dataset", "slide", "x", "y", "expert1_label", "expert2_label", "majority_atypical"]
        )
        w.writerows(rows)
    return root


@pytest.fixture
def amibr_spec(amibr_root: Path) -> Path:
    path = amibr_root.parent / "spec.json"
    path.write_text(
        json.dumps({"sources": [{"reader": "amibr", "root": str(amibr_root)}], "val_fraction": 0.5, "split_seed": 0})
    )
    return path
