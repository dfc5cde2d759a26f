"""The Python API: lazy ``from mitodet import Detector``, argument checks, and the example in
docs/detect.md run as written (with a tiny random model instead of the bundled one)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mitodet.synthetic import synthetic_pyramidal_tiff, synthetic_scene

DOC = Path(__file__).resolve().parents[2] / "docs" / "detect.md"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_import_mitodet_is_light_and_detector_is_lazy():
    code = (
        "import sys, mitodet; assert 'torch' not in sys.modules, 'torch imported'; "
        "from mitodet import Detector, detect_files; assert 'torch' in sys.modules; "
        "print(Detector.__module__, detect_files.__module__)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["mitodet.inference.predictor", "mitodet.inference.pipeline"]
    with pytest.raises(AttributeError):
        import mitodet

        mitodet.NoSuchThing  # noqa: B018


def test_detect_array_and_path_check_their_arguments(tiny_model_dir, tmp_path):
    from mitodet import Detector
    from mitodet.inference.slide import MissingMppError

    det = Detector.load(tiny_model_dir)
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        det.detect_array(img.astype(np.float32), 0.25)
    with pytest.raises(ValueError, match="mpp"):
        det.detect_array(img, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        det.detect_array(img, 0.25, threshold=2.0)
    with pytest.raises(ValueError, match="tissue"):
        det.detect_array(img, 0.25, tissue="maybe")
    from PIL import Image

    Image.fromarray(img).save(tmp_path / "x.png")
    with pytest.raises(MissingMppError, match=r"x\.png.*--mpp"):
        det.detect_path(tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Detector.load(tmp_path / "no-model")


def _doc_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(
        r"<!-- tests/inference/test_detect_api\.py runs the next block[^>]*-->\s*```python\n(.*?)```", text, re.S
    )
    assert m, "the tested example block is missing from docs/detect.md"
    return m.group(1)


def test_docs_example_runs(tiny_model_dir, tmp_path, monkeypatch):
    import torch
    from PIL import Image

    torch.manual_seed(0)
    code = _doc_example()
    assert 'Detector.load("default")' in code
    code = code.replace('Detector.load("default")', f"Detector.load({str(tiny_model_dir)!r})")
    img, _, _ = synthetic_scene((384, 384), mpp=0.25, n_mitoses=2, n_lookalikes=1, seed=5)
    Image.fromarray(img).save(tmp_path / "frame.png", dpi=(101600, 101600))
    synthetic_pyramidal_tiff(
        tmp_path / "slide.tif", (384, 448), mpp=0.25, levels=2, tile=128, n_mitoses=2, n_lookalikes=2, seed=6
    )
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})
    printed = out.getvalue()
    assert "model works at 0.5 um/px" in printed and "tiles held tissue" in printed
    assert "frame done" in printed and "slide done" in printed
    for name in ("frame", "slide"):
        s = json.loads((tmp_path / "results" / f"{name}.summary.json").read_text())
        assert s["status"] == "complete" and s["score_threshold"] == 0.5  # the model's operating threshold
        assert (tmp_path / "results" / f"{name}.overlay.jpg").is_file()
    assert (tmp_path / "results" / "frame.heatmap.jpg").is_file()
