"""The steps of one file and the batch loop, each on its own (no model, no image file)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mitodet.config import ConfigError, DetectConfig
from mitodet.inference.batch import BatchPlan, run_batch
from mitodet.inference.process import MIN_IMAGE_SIDE_UM, FileResult, FileSummary, check_image
from mitodet.inference.resume import claim
from mitodet.inference.slide import MissingMppError, PixelSize
from mitodet.report.readout import Readout, summarize


def _src(w: int, h: int, mpp: float | None, source: str = "tiff", note: str | None = None, mpp_y=None):
    return SimpleNamespace(shape=(h, w), pixel_size=PixelSize(mpp, source, note, mpp_y))


def test_check_image_takes_the_file_pixel_size_or_the_override_with_a_note():
    ok = check_image(Path("a.tif"), _src(1000, 800, 0.25), DetectConfig(), model_mpp=0.5)
    assert (ok.mpp, ok.mpp_source, ok.notes) == (0.25, "tiff", [])
    over = check_image(Path("a.tif"), _src(1000, 800, 0.25), DetectConfig(mpp=0.3), model_mpp=0.5)
    assert (over.mpp, over.mpp_source) == (0.3, "--mpp")
    assert over.notes == ["--mpp 0.3 overrides the file's 0.25 um/px (tiff)"]
    skew = check_image(Path("a.tif"), _src(1000, 800, 0.25, mpp_y=0.3), DetectConfig(), model_mpp=0.5)
    assert skew.notes == ["non-square pixels (0.25 x 0.3 um); the x size is used"]
    with pytest.raises(MissingMppError, match=r"a\.png: unknown pixel size.*pass --mpp"):
        check_image(Path("a.png"), _src(1000, 800, None), DetectConfig(), model_mpp=0.5)


def test_check_image_refuses_what_cannot_be_counted_before_any_tile_runs():
    side = int(MIN_IMAGE_SIDE_UM / 0.25) - 1
    with pytest.raises(ValueError, match=r"tiny\.png: .* smaller than one cell"):
        check_image(Path("tiny.png"), _src(side, 500, 0.25), DetectConfig(), model_mpp=0.5)
    with pytest.raises(ValueError, match=r"coarse\.png: .*much coarser.*--allow-coarse"):
        check_image(Path("coarse.png"), _src(4000, 4000, 1.2), DetectConfig(), model_mpp=0.5)
    anyway = check_image(Path("coarse.png"), _src(4000, 4000, 1.2), DetectConfig(allow_coarse=True), model_mpp=0.5)
    assert anyway.mpp == 1.2 and "the count is not reliable" in anyway.notes[-1]


def test_claim_skips_a_finished_file_refuses_another_inputs_results_and_removes_a_stale_marker(tmp_path):
    img, other = tmp_path / "a.png", tmp_path / "x" / "a.png"
    marker = tmp_path / "out" / "a.summary.json"
    marker.parent.mkdir()
    (marker.parent / "a.csv").write_text("x,y\n")
    doc = {"status": "complete", "run": {"key": "K"}, "outputs": ["a.csv"], "image_path": str(img.resolve())}
    marker.write_text(json.dumps(doc))
    assert claim(marker.parent, "a", img, "K", overwrite=False) == doc  # finished: skipped
    with pytest.raises(ValueError, match=r"hold the results of another input.*--overwrite"):
        claim(marker.parent, "a", other, "K2", overwrite=False)
    assert marker.is_file()  # a refusal leaves the other input's results alone
    assert claim(marker.parent, "a", img, "K2", overwrite=False) is None  # another key: claimed
    assert not marker.exists()  # not done until the marker is back


def test_detect_config_checks_its_values_before_any_model_loads():
    with pytest.raises(ConfigError, match="tissue must be one of"):
        DetectConfig(tissue="maybe")
    with pytest.raises(ValueError, match="field_area_mm2 must be a positive area"):
        DetectConfig(field_area_mm2=0)
    with pytest.raises(ValueError, match="radius_um must be a positive number"):
        DetectConfig(radius_um=float("nan"))
    with pytest.raises(TypeError, match="no_such_option"):
        DetectConfig(no_such_option=1)
    cfg = DetectConfig(mpp=1, heatmap=1)
    assert (cfg.mpp, cfg.heatmap) == (1.0, True)


def _summary(n: int) -> FileSummary:
    pts = np.full((n, 2), 100.0)
    return FileSummary(
        Readout.from_json(summarize(pts, None, 0.25, (2084, 2084))),
        image="x.png",
        image_path="/x.png",
        name="x",
        kind="hpf",
        mpp_source="--mpp",
        model={},
        detection={},
        tissue={},
        source={},
        evaluation=None,
        notes=[],
        outputs=[],
        seconds=1.0,
        mitodet_version="test",
        run={},
    )


class _OutOfOrder:
    """A stand-in executor: the files finish in reverse order, one of them failed."""

    def run(self, plan):
        for i in reversed(range(len(plan.inputs))):
            status = "failed" if i == 1 else "done"
            summary = None if status == "failed" else _summary(i)
            yield i, FileResult(Path("elsewhere") / plan.inputs[i].name, plan.names[i], status, summary=summary)


def test_a_file_summary_reads_back_what_it_writes_and_refuses_an_incomplete_one():
    s = _summary(3)
    doc = json.loads(json.dumps({**s.to_json(), "points": "reviewed.geojson"}))
    back = FileSummary.from_json(doc)
    assert back.to_json() == doc and back.extra == {"points": "reviewed.geojson"}
    assert back.readout.count == 3 and back["count"] == 3 and back.readout.mitotic_score == 3
    with pytest.raises(ValueError, match="not a mitodet summary"):  # the skip path then processes the file again
        FileSummary.from_json({**doc, "seconds": None})
    del doc["notes"]
    with pytest.raises(ValueError, match="no 'notes'"):
        FileSummary.from_json(doc)
    with pytest.raises(ValueError, match="no 'hotspot'"):
        Readout.from_json({k: v for k, v in s.to_json().items() if k != "hotspot"})


def test_the_batch_loop_keeps_input_order_writes_the_index_and_logs_each_file_as_it_finishes(tmp_path):
    inputs = [tmp_path / f"{n}.png" for n in "abc"]
    plan = BatchPlan(None, inputs, ["a", "b", "c"], tmp_path, tmp_path / "summary.csv", DetectConfig(), {}, None, None)
    lines, errors = [], []
    batch = run_batch(plan, _OutOfOrder(), log=lines.append, log_error=errors.append)
    assert [r.path for r in batch.results] == inputs  # as given, in input order
    assert [r.status for r in batch.results] == ["done", "failed", "done"] and not batch.ok
    assert lines == [
        "[1/3] c.png: 2 mitoses, 0.271 mm2 tissue, hotspot 2 (17.5 per 10 HPF), score 2 (EXTRAPOLATED from 1.1 HPF "
        "of tissue; see the case read-out) in 0.0 s",
        "[3/3] a.png: 0 mitoses, 0.271 mm2 tissue, hotspot 0 (0.0 per 10 HPF), score 1 (EXTRAPOLATED from 1.1 HPF "
        "of tissue; see the case read-out) in 0.0 s",
    ]
    assert errors == ["[2/3] b.png: FAILED: None"]
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in rows[1:]] == ["a", "b", "c"]
    assert rows[3].split(",")[5] == "2"  # c's count


def test_a_code_change_keeps_the_bundled_models_fingerprint():
    """The fingerprint is part of every file's run key: if a code change moved it (a new config
    field hashed at its default, say), every finished file would be processed again on rerun.
    Update the value only when the bundled model itself is retrained."""
    from mitodet.inference.predictor import Detector
    from mitodet.inference.resume import model_fingerprint

    det = Detector.load("default")
    assert model_fingerprint(det) == "f89e0e5489385974"
    det.atypical.config = det.atypical.config.replace(tta="d4")  # a setting that changes the outputs counts
    assert model_fingerprint(det) != "f89e0e5489385974"
