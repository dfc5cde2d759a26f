"""Batch detection (detect_files) with the network-free blob detector: resumability, atomic
outputs after a crash, output names, and the clinical read-out on hand-made point sets."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mitodet.inference.pipeline import OUTPUT_SUFFIXES, collect_inputs, detect_files, output_names
from mitodet.report.readout import summarize


def _index(out_dir) -> dict[str, dict[str, str]]:
    with open(out_dir / "summary.csv", newline="") as fh:
        return {row["name"]: row for row in csv.DictReader(fh)}


def _three_fields(tmp_path, dh):
    src = tmp_path / "in"
    src.mkdir()
    for k, name in enumerate("abc"):
        discs = [(60 + 40 * k, 80), (200, 150 + 20 * k)]
        dh.save_png(src / f"{name}.png", dh.disc_image((256, 300), discs, 6, seed=k), mpp=0.5)
    return src


def _mtimes(out_dir, name):
    return {p.name: p.stat().st_mtime_ns for p in out_dir.glob(f"{name}.*")}


def test_rerun_skips_finished_files_and_redoes_only_what_is_missing(tmp_path, dh):
    src = _three_fields(tmp_path, dh)
    out = tmp_path / "out"
    det = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    batch = detect_files([src], out, detector=det, threshold=0.5, heatmap=True)
    assert [r.status for r in batch.results] == ["done"] * 3 and batch.ok
    for name in "abc":
        for kind, suffix in OUTPUT_SUFFIXES.items():
            # fpn: no GLB, no heat-map; HPF images without --tissue on: no tissue mask
            assert (out / f"{name}{suffix}").is_file() == (kind not in ("heatmap", "tissue"))
        s = json.loads((out / f"{name}.summary.json").read_text())
        assert s["status"] == "complete" and s["count"] == 2
        assert any("no GLB" in n for n in s["notes"])
    runs = len(det.crop_shapes)
    before = {n: _mtimes(out, n) for n in "abc"}

    # a second run does nothing
    batch = detect_files([src], out, detector=det, threshold=0.5, heatmap=True)
    assert [r.status for r in batch.results] == ["skipped"] * 3
    assert len(det.crop_shapes) == runs
    assert {r["status"] for r in _index(out).values()} == {"skipped"}
    assert _index(out)["b"]["count"] == "2"  # the index still reports skipped files' results

    # delete one file's outputs: only that file is processed again
    for p in out.glob("b.*"):
        p.unlink()
    batch = detect_files([src], out, detector=det, threshold=0.5, heatmap=True)
    assert [r.status for r in batch.results] == ["skipped", "done", "skipped"]
    assert {n: r["status"] for n, r in _index(out).items()} == {"a": "skipped", "b": "done", "c": "skipped"}
    assert _mtimes(out, "a") == before["a"] and _mtimes(out, "c") == before["c"]
    assert len(det.crop_shapes) == runs + runs // 3

    # a missing single output, or other settings, also mean 'not done'
    (out / "a.overlay.jpg").unlink()
    assert [r.status for r in detect_files([src], out, detector=det, threshold=0.5, heatmap=True).results] == [
        "done",
        "skipped",
        "skipped",
    ]
    assert [r.status for r in detect_files([src], out, detector=det, threshold=0.7, heatmap=True).results] == [
        "done"
    ] * 3


def test_a_crash_mid_file_leaves_no_partial_output_and_the_rerun_finishes(tmp_path, dh, monkeypatch):
    import mitodet.report.viz as viz

    src = _three_fields(tmp_path, dh)
    out = tmp_path / "out"
    det = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    real_save = viz.save_image

    def killed_at_b(path, image):
        if str(path).endswith("b.overlay.jpg"):
            raise KeyboardInterrupt  # the run is killed while writing b's outputs
        return real_save(path, image)

    monkeypatch.setattr(viz, "save_image", killed_at_b)
    with pytest.raises(KeyboardInterrupt):
        detect_files([src], out, detector=det)
    assert (out / "a.summary.json").is_file()
    assert (out / "b.csv").is_file() and not (out / "b.summary.json").exists()  # b is not marked done
    assert not list(out.glob(".*.tmp")) and not list(out.glob("c.*"))
    assert _index(out)["a"]["status"] == "done" and "b" not in _index(out)

    monkeypatch.setattr(viz, "save_image", real_save)
    batch = detect_files([src], out, detector=det)
    assert [r.status for r in batch.results] == ["skipped", "done", "done"]
    assert not list(out.glob(".*.tmp"))


def test_failed_file_is_reported_and_batch_continues(tmp_path, dh):
    src = _three_fields(tmp_path, dh)
    dh.save_png(src / "no_mpp.png", dh.disc_image((64, 64), [], 0))
    (src / "readme.txt").write_text("not an image, ignored in folders")
    out = tmp_path / "out"
    batch = detect_files([src], out, detector=dh.BlobDetector())
    st = {r.name: r.status for r in batch.results}
    assert st == {"a": "done", "b": "done", "c": "done", "no_mpp": "failed"} and not batch.ok
    err = _index(out)["no_mpp"]["error"]
    assert "no_mpp.png" in err and "--mpp" in err
    # --mpp for every file makes it work
    batch = detect_files([src / "no_mpp.png"], out, detector=dh.BlobDetector(), mpp=0.5)
    assert batch.results[0].status == "done"


def test_an_output_folder_that_cannot_be_made_is_a_clear_error(tmp_path, dh):
    src = _three_fields(tmp_path, dh)
    blocker = tmp_path / "out.txt"
    blocker.write_text("a file where the output folder should go")
    with pytest.raises(ValueError, match=r"cannot create the output folder .*out\.txt.*--out"):
        detect_files([src], blocker, detector=dh.BlobDetector())
    with pytest.raises(ValueError, match="cannot create the output folder"):
        detect_files([src], blocker / "sub", detector=dh.BlobDetector())


def test_output_names_are_unique_and_outputs_are_not_inputs(tmp_path):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "a.png").write_bytes(b"1")
    (tmp_path / "x" / "summary.png").write_bytes(b"1")
    (tmp_path / "x" / "a.overlay.jpg").write_bytes(b"1")  # an output of an earlier run
    (tmp_path / "x" / "out").mkdir()
    (tmp_path / "x" / "out" / "z.png").write_bytes(b"1")
    paths = collect_inputs(
        [tmp_path / "x", tmp_path / "y", tmp_path / "x" / "a.png"], recursive=True, exclude=[tmp_path / "x" / "out"]
    )
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["x/a.png", "x/summary.png", "y/a.png"]
    assert output_names(paths) == ["a", "summary-2", "a-2"]


# ----------------------------------------------------------------------------- read-out


def test_readout_on_hand_made_points():
    """A 10 mm x 8 mm slide at 0.5 um/px, left 6 mm tissue. 20 mitoses in a 1 mm cluster, 5
    scattered more than a 10-HPF window away, 2 on glass (counted: summarize counts what it
    is given; detect drops those off tissue before)."""
    mpp = 0.5
    h, w = 16000, 20000
    mask = np.zeros((80, 100), bool)  # 100 um cells
    mask[:, :60] = True  # tissue: 6 mm x 8 mm = 48 mm^2
    rng = np.random.default_rng(0)
    cluster = rng.uniform(1000, 3000, (20, 2))  # px: a 1 mm square near the top-left
    scattered = np.array([[10000, 14000], [11000, 15000], [8000, 13000], [9000, 15500], [11500, 12500]], float)
    glass = np.array([[17000, 4000], [18000, 9000]], float)
    pts = np.concatenate([cluster, scattered, glass])
    s = summarize(pts, None, mpp, (h, w), tissue_mask=mask)
    assert s["count"] == 27
    assert s["tissue_area_mm2"] == pytest.approx(48.0)
    assert s["count_per_mm2"] == pytest.approx(27 / 48)
    hot = s["hotspot"]
    assert hot["count"] == 20 and not hot["extrapolated"]
    assert hot["area_mm2"] == pytest.approx(2.37, rel=0.02)
    assert hot["count_per_10hpf"] == pytest.approx(20 * 2.37 / hot["area_mm2"])
    # 0.237 mm^2 HPF: the 0.55 mm row, <= 8 / 9-17 / >= 18
    assert s["nottingham"]["score"] == 3 and s["nottingham"]["cutoffs"]["score_3"] == ">= 18"
    # 0.274 mm^2 HPF (Elston-Ellis): <= 9 / 10-19 / >= 20, and the window grows with the field
    s2 = summarize(pts[5:], None, mpp, (h, w), tissue_mask=mask, field_area_mm2=0.274)
    assert s2["nottingham"]["cutoffs"] == {"score_1": "<= 9", "score_2": "10-19", "score_3": ">= 20"}
    assert s2["hotspot"]["count"] == 15 and s2["nottingham"]["score"] == 2


def test_pipeline_readout_on_a_slide(tmp_path, dh):
    """Detect on a 2.4 mm x 2 mm slide at 2 um/px: the summary's count, tissue area, hotspot
    and score follow from the known blobs."""
    g = np.arange(60.0, 310.0, 60.0)
    cluster = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)  # 25 blobs within 0.5 mm
    far = np.array([[950.0, 930.0], [900.0, 960.0], [960.0, 880.0]])  # beyond any window with the cluster
    glass = np.array([[1150.0, 500.0]])
    img = dh.disc_image((1000, 1200), np.concatenate([cluster, far, glass]), 4, tissue_boxes=[(0, 0, 1000, 1000)])
    p = dh.write_pyramid(tmp_path / "slide.tif", img, 2.0, levels=2, tile=64)
    det = dh.BlobDetector(mpp=2.0, tile_px=128, overlap_px=24)
    batch = detect_files([p], tmp_path / "out", detector=det)
    s = batch.results[0].summary
    assert s["kind"] == "wsi" and s["count"] == 28  # the blob on glass is not counted
    assert s["tissue_area_mm2"] == pytest.approx(4.0, rel=0.03)
    assert s["hotspot"]["count"] == 25 and not s["hotspot"]["extrapolated"]
    assert s["nottingham"]["score"] == 3
    assert s["detection"]["tiles_skipped"] > 0
    md = (tmp_path / "out" / "slide.summary.md").read_text()
    assert "0.237" in md and "Nottingham" in md and "Hotspot" in md


def test_blank_slide_is_done_with_zero_tissue(tmp_path, dh):
    img = dh.disc_image((400, 480), [(100.0, 100.0)], 6, tissue_boxes=[])  # glass and one speck of dust
    p = dh.write_pyramid(tmp_path / "blank.tif", img, 0.5, levels=2, tile=64)
    det = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    r = detect_files([p], tmp_path / "out", detector=det).results[0]
    assert r.status == "done" and det.crop_shapes == []  # no tile was run
    s = r.summary
    assert s["count"] == 0 and s["tissue_area_mm2"] == 0.0 and s["hotspot"] is None
    assert s["nottingham"]["score"] is None and any("no tissue" in n for n in s["notes"])


def test_nothing_is_lost_in_a_shared_output_folder(tmp_path, dh):
    """Two folders with a same-named image into one --out: the second is refused (not written
    over the first's results), and the index accumulates across runs instead of being rewritten."""
    from PIL import Image

    img = dh.disc_image((200, 200), [(60.0, 60.0), (140.0, 120.0)], 5)
    for folder in ("day1", "day2"):
        (tmp_path / folder).mkdir()
        Image.fromarray(img).save(tmp_path / folder / "field.png")
    Image.fromarray(img).save(tmp_path / "day2" / "other.png")
    out = tmp_path / "out"
    det = dh.BlobDetector(mpp=0.5, tile_px=128, overlap_px=40)
    first = detect_files([tmp_path / "day1" / "field.png"], out, detector=det, mpp=0.5)
    assert first.results[0].status == "done"
    before = (out / "field.csv").read_bytes(), (out / "field.summary.json").read_bytes()
    second = detect_files([tmp_path / "day2"], out, detector=det, mpp=0.5)
    by_name = {r.path.name: r for r in second.results}
    assert by_name["field.png"].status == "failed" and "another input" in by_name["field.png"].error
    assert str(tmp_path / "day1" / "field.png") in by_name["field.png"].error
    assert by_name["other.png"].status == "done"
    assert ((out / "field.csv").read_bytes(), (out / "field.summary.json").read_bytes()) == before
    with open(out / "summary.csv", newline="") as fh:
        files = [r["file"] for r in csv.DictReader(fh)]  # the first run's row is still there
    assert any(f.endswith("day1/field.png") for f in files) and any(f.endswith("day2/other.png") for f in files)
    # --overwrite replaces them on purpose
    again = detect_files([tmp_path / "day2" / "field.png"], out, detector=det, mpp=0.5, overwrite=True)
    assert again.results[0].status == "done"
