"""A real detect output folder for the viewer's tests: the bundled model on the shipped CC0
sample (samples/CMU-1-Small-Region.svs, real H&E, a slide: it gets a tissue mask), once
without and once with ground truth (four points: three of its own detections and one far from
any, so TP, FP and FN all occur)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "CMU-1-Small-Region.svs"


def _detect(*args: str) -> None:
    from mitodet.cli import main

    assert main(["detect", *args, "--no-progress"]) == 0


@pytest.fixture(scope="session")
def view_out(tmp_path_factory) -> Path:
    """OUT of ``mitodet detect IMAGES/CMU-1-Small-Region.svs --gt gt.csv``."""
    import torch

    root = tmp_path_factory.mktemp("viewer")
    images = root / "case-A"
    images.mkdir()
    shutil.copy(SAMPLE, images / SAMPLE.name)
    before = torch.get_num_threads()
    try:
        plain = root / "plain"
        _detect(str(images / SAMPLE.name), "--out", str(plain))
        with open(plain / "CMU-1-Small-Region.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        gt = root / "gt.csv"
        with open(gt, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "x", "y", "label"])
            for r in rows[:3]:
                w.writerow(["CMU-1-Small-Region", r["x"], r["y"], "mitosis"])
            w.writerow(["CMU-1-Small-Region", 5, 5, "mitosis"])  # a corner of glass: never detected
        out = root / "out"
        _detect(str(images / SAMPLE.name), "--out", str(out), "--gt", str(gt))
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture
def fresh_out(view_out, tmp_path) -> Path:
    """A copy of the output folder a test may write into (reviews, reviewed read-outs)."""
    dst = tmp_path / "out"
    shutil.copytree(view_out, dst)
    return dst


@pytest.fixture
def client(fresh_out):
    from mitodet.viewer.app import create_app

    return create_app(fresh_out).test_client()
