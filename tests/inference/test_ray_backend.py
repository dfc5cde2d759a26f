"""The Ray backend (``detect_files_ray`` / ``RayDetectorPool``) gives what the local path gives.

One local Ray cluster of 2 CPUs (started once for the module) and one pool of 2 workers
holding a tiny random-weights rdlm-cpu: detections are random, the plumbing is real. The
images are SYNTHETIC.
"""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from mitodet.inference.pipeline import detect_files  # noqa: E402
from mitodet.inference.predictor import Detector  # noqa: E402
from mitodet.inference.ray_backend import RayDetectorPool, import_ray  # noqa: E402
from mitodet.synthetic import synthetic_pyramidal_tiff, synthetic_scene  # noqa: E402

#: heavy (subprocesses, clusters, whole benchmarks): run by scripts/test.sh and CI, not by a bare `pytest`
pytestmark = pytest.mark.slow


def _detector(model_dir) -> Detector:
    # 256 px tiles in batches of 2: a 300 x 340 field is 4 tiles in 2 batches, a 1024 px slide 9 tiles
    return Detector.load(model_dir, tile_px=256, batch_size=2)


@pytest.fixture(scope="module")
def pool(tiny_model_dir):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the driver's own forward passes (the local reference) on a shared machine
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    p = RayDetectorPool(_detector(tiny_model_dir), num_workers=2)
    yield p
    p.close()
    ray.shutdown()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Three SYNTHETIC 300 x 340 px fields at 0.5 um/px and a text file posing as a PNG."""
    from PIL import Image

    src = tmp_path_factory.mktemp("fields")
    for k, name in enumerate("abc"):
        img, _, _ = synthetic_scene((300, 340), n_mitoses=2, n_lookalikes=2, mpp=0.5, seed=k)
        Image.fromarray(img).save(src / f"{name}.png", dpi=(25400 / 0.5, 25400 / 0.5))
    (src / "notes.png").write_text("this is a text file, not a PNG\n")
    return src


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A SYNTHETIC 1024 x 1024 px pyramidal TIFF at 0.25 um/px (9 tiles at the working resolution)."""
    path = tmp_path_factory.mktemp("slides") / "slide.tif"
    synthetic_pyramidal_tiff(path, size=(1024, 1024), mpp=0.25, levels=2, tile=256, seed=3)
    return path


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _assert_same_csv(a, b) -> None:
    ra, rb = _rows(a), _rows(b)
    assert len(ra) == len(rb)
    if a.read_bytes() == b.read_bytes():
        return
    for x, y in zip(ra, rb):  # same points and scores up to float noise between processes
        for k in x:
            assert abs(float(x[k]) - float(y[k])) <= 1e-6, (a.name, k, x[k], y[k])


def _index(out) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in _rows(out / "summary.csv")}


def test_ray_batch_equals_local_keeps_going_past_a_bad_file_and_skips_finished_files(
    pool, tiny_model_dir, fields, tmp_path
):
    src = fields
    local = detect_files([src], tmp_path / "local", detector=_detector(tiny_model_dir), threshold=0.0)
    out = tmp_path / "ray"
    remote = pool.detect_files([src], out, threshold=0.0)

    status = {r.name: r.status for r in remote.results}
    assert (
        status
        == {"a": "done", "b": "done", "c": "done", "notes": "failed"}
        == {r.name: r.status for r in local.results}
    )
    assert not remote.ok and remote.results[3].error == local.results[3].error
    assert [r.path for r in remote.results] == [r.path for r in local.results]
    for name in "abc":
        _assert_same_csv(tmp_path / "local" / f"{name}.csv", out / f"{name}.csv")
        assert json.loads((out / f"{name}.summary.json").read_text())["status"] == "complete"
    assert sum(len(_rows(out / f"{n}.csv")) for n in "abc") > 0  # something was compared
    li, ri = _index(tmp_path / "local"), _index(out)
    for name in li:
        for col in ("file", "status", "kind", "mpp", "count", "error"):
            assert li[name][col] == ri[name][col], (name, col)

    # a rerun skips the finished files (nothing rewritten) and reports the bad one again
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("[abc].*")}
    again = pool.detect_files([src], out, threshold=0.0)
    assert [r.status for r in again.results] == ["skipped"] * 3 + ["failed"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("[abc].*")} == mtimes
    assert {n: r["status"] for n, r in _index(out).items()} == {
        "a": "skipped",
        "b": "skipped",
        "c": "skipped",
        "notes": "failed",
    }
    # the run key is the local path's: a Ray run over the local outputs skips them too
    cross = pool.detect_files([src], tmp_path / "local", threshold=0.0)
    assert [r.status for r in cross.results] == ["skipped"] * 3 + ["failed"]


def test_one_slide_split_over_the_workers_equals_the_single_process_detections(pool, tiny_model_dir, slide, tmp_path):
    det = _detector(tiny_model_dir)

    one = det.detect_path(slide, threshold=0.0)
    split = pool.detect_path(slide, threshold=0.0)
    assert split.info["tiles_run"] == one.info["tiles_run"] == 9 and split.info["ray_workers"] == 2
    assert len(one) > 0 and split.points.shape == one.points.shape
    np.testing.assert_allclose(split.points, one.points, rtol=0, atol=1e-6)
    np.testing.assert_allclose(split.scores, one.scores, rtol=0, atol=1e-6)
    assert split.image_shape == one.image_shape and split.threshold == one.threshold

    # through the batch: one file, more tiles than the minimum -> split, same outputs as the local path
    detect_files([slide.parent], tmp_path / "local", detector=det, threshold=0.0)
    out = tmp_path / "ray"
    batch = pool.detect_files([slide.parent], out, threshold=0.0, tile_parallel_min_tiles=4)
    assert [r.status for r in batch.results] == ["done"]
    summary = json.loads((out / "slide.summary.json").read_text())
    assert summary["detection"]["backend"] == "ray"  # the split path ran
    _assert_same_csv(tmp_path / "local" / "slide.csv", out / "slide.csv")
    assert _index(out)["slide"]["count"] == _index(tmp_path / "local")["slide"]["count"]
    assert [
        r.status for r in pool.detect_files([slide.parent], out, threshold=0.0, tile_parallel_min_tiles=4).results
    ] == ["skipped"]


def test_a_worker_that_dies_is_replaced_and_its_work_runs_again(pool, tiny_model_dir, fields, slide, tmp_path):
    # a lost node looks the same to the driver: the actor is gone
    victim = pool._actors[0]
    ray.kill(victim, no_restart=True)
    batch = pool.detect_files([fields], tmp_path / "out", threshold=0.0)
    assert [r.status for r in batch.results] == ["done"] * 3 + ["failed"]
    assert victim not in pool._actors and pool.num_workers == 2

    # tile groups of a split slide too
    victim = pool._actors[0]
    ray.kill(victim, no_restart=True)
    split = pool.detect_path(slide, threshold=0.0)
    one = _detector(tiny_model_dir).detect_path(slide, threshold=0.0)
    np.testing.assert_allclose(split.scores, one.scores, rtol=0, atol=1e-6)
    assert victim not in pool._actors and pool.num_workers == 2


def test_an_onnx_detector_is_rebuilt_on_each_worker(tiny_model_dir, slide):
    """An ONNX Runtime session does not pickle: the workers get the torch model and rebuild the session."""
    pytest.importorskip("onnxruntime")
    import torch
    from ray import cloudpickle

    from mitodet.inference.ray_backend import _Worker
    from mitodet.inference.slide import open_image

    threads = torch.get_num_threads()
    det = Detector.load(tiny_model_dir, tile_px=256, batch_size=2, backend="onnx", threshold=0.3)
    try:
        worker = _Worker(cloudpickle.loads(cloudpickle.dumps(det)), 1)  # as Ray ships it
    finally:
        torch.set_num_threads(threads)
    w = worker.detector
    assert (w.backend, w.tile_px, w.overlap_px, w.batch_size, w.threshold, w.model_dir) == (
        "onnx",
        256,
        det.overlap_px,
        2,
        0.3,
        det.model_dir,
    )
    with open_image(slide) as src:
        plan = det.plan_tiles(src, 0.25, tissue="off")
        here = det.run_batch(src, plan, plan.batches[0])
    there = worker.run_tiles(str(slide), "auto", plan, plan.batches[:1])
    worker.close()
    assert len(here) == len(there) == 2
    for (p1, s1), (p2, s2) in zip(here, there):
        np.testing.assert_allclose(p2, p1, rtol=0, atol=1e-5)
        np.testing.assert_allclose(s2, s1, rtol=0, atol=1e-5)


def test_the_command_runs_on_ray_and_writes_what_the_local_path_writes(tiny_model_dir, fields, tmp_path):
    import os
    import subprocess

    detect_files([fields], tmp_path / "local", detector=_detector(tiny_model_dir), threshold=0.0)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local cluster
    cmd = [
        sys.executable,
        "-m",
        "mitodet.cli",
        "detect",
        str(fields),
        "--out",
        str(tmp_path / "ray"),
        "--model",
        str(tiny_model_dir),
        "--tile-px",
        "256",
        "--batch-size",
        "2",
        "--threshold",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--backend",
        "ray",
        "--ray-workers",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]  # 1: a file failed
    assert "3 done, 0 skipped (already done), 1 failed" in proc.stdout
    assert "notes.png: FAILED" in proc.stderr
    for name in "abc":
        _assert_same_csv(tmp_path / "local" / f"{name}.csv", tmp_path / "ray" / f"{name}.csv")


def test_bad_arguments_are_refused_before_any_work(pool, tmp_path):
    with pytest.raises(ValueError, match="num_workers must be a positive integer, got 0"):
        RayDetectorPool(pool.detector, num_workers=0)
    with pytest.raises(ValueError, match="tile_parallel_min_tiles"):
        pool.detect_files([tmp_path], tmp_path / "out", tile_parallel_min_tiles=0)
    with pytest.raises(ValueError, match="more CPUs|need 6 CPUs but the Ray cluster has 2"):
        RayDetectorPool(pool.detector, num_workers=3, cpus_per_worker=2)


def test_a_missing_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'mitodet\[ray\]'"):
        import_ray()


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_second_stage_travels_to_the_workers(tiny_model_dir, tmp_path, backend):
    """Ray ships a Detector with its second stage (the ONNX backend too), and the worker runs it."""
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    import shutil

    import torch
    from ray import cloudpickle

    from mitodet.inference.ray_backend import _Worker
    from mitodet.models.rescorer import Rescorer, RescorerConfig, save_rescorer

    folder = tmp_path / "two-stage"
    shutil.copytree(tiny_model_dir, folder)
    torch.manual_seed(0)
    save_rescorer(Rescorer(RescorerConfig(patch_px=32, threshold=0.4, min_candidate_score=0.0)), folder)
    threads = torch.get_num_threads()
    det = Detector.load(folder, tile_px=256, batch_size=2, backend=backend)
    try:
        worker = _Worker(cloudpickle.loads(cloudpickle.dumps(det)), 1)
    finally:
        torch.set_num_threads(threads)
    w = worker.detector
    assert w.rescorer is not None and w.rescorer.config == det.rescorer.config and w.threshold == 0.4
    img = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    here, there = det.detect_array(img, 0.5, threshold=0.0), w.detect_array(img, 0.5, threshold=0.0)
    worker.close()
    np.testing.assert_allclose(there.scores, here.scores, rtol=0, atol=1e-5)
    assert there.first_scores is not None
