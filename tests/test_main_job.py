"""The README's main job runs anywhere: without ../shared it detects on the shipped sample."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "CMU-1-Small-Region.svs"


def test_sample_is_the_documented_file():
    digest = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    readme = (ROOT / "samples" / "README.md").read_text()
    assert digest in readme and "CC0" in readme
    assert (ROOT / "samples" / "LICENSE-CC0-1.0.txt").is_file()


@pytest.mark.slow
def test_main_job_without_shared_data(tmp_path):
    pytest.importorskip("openslide")
    env = {**os.environ, "MITODET_DATA": str(tmp_path / "no-such-data"), "MITODET_OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", "scripts/main.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "shipped sample" in proc.stderr
    summary = json.loads((tmp_path / "out" / "CMU-1-Small-Region.summary.json").read_text())
    assert summary["mpp"] == pytest.approx(0.499, abs=1e-3)  # read from the SVS metadata, not given
    assert summary["tissue_area_mm2"] > 0.3
    assert (tmp_path / "out" / "CMU-1-Small-Region.csv").is_file()
    case = json.loads((tmp_path / "out" / "samples.case.json").read_text())  # the case read-out
    assert case["score_status"] == "withheld" and "HPF" in case["reason"]  # 0.64 mm2 is under 10 HPF
    assert "case samples:" in proc.stdout
