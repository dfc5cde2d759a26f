"""Fixtures for the training-engine tests (helpers are in engine_helpers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Folder with ``labels.csv``, ``spec.json`` (with a validation slide) and ``noval.json``."""
    import numpy as np
    from PIL import Image

    from mitodet.synthetic import synthetic_scene

    root = tmp_path_factory.mktemp("tiny_data")
    rows = ["image,x,y,label"]
    for i in range(4):
        img, pts, lab = synthetic_scene((96, 96), n_mitoses=2, n_lookalikes=1, mpp=0.5, seed=i)
        Image.fromarray(np.asarray(img)).save(root / f"s{i}.png")
        rows += [f"s{i}.png,{x:.2f},{y:.2f},{int(c)}" for (x, y), c in zip(pts, lab)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    source = {"reader": "points_csv", "path": "labels.csv", "mpp": 0.5}
    (root / "spec.json").write_text(json.dumps({"sources": [source], "val_fraction": 0.3, "split_seed": 1}))
    (root / "noval.json").write_text(json.dumps({"sources": [source], "val_fraction": 0.0}))
    return root
