"""Throughput of ``mitodet detect --backend ray``: slides per minute with 1 and 2 Ray workers.

Writes ``--slides`` SYNTHETIC pyramidal TIFFs (``mitodet.synthetic.synthetic_pyramidal_tiff``,
``--side`` px a side at 0.25 um/px, 2 levels; all tissue, so every tile runs) and times:

1. the local path: :func:`mitodet.inference.pipeline.detect_files` in this process with
   ``--threads`` torch threads (the reference);
2. the Ray backend on a local Ray cluster of ``max(--workers) x --threads`` CPUs, for each
   worker count in ``--workers``: :meth:`RayDetectorPool.detect_files` over the same slides,
   each worker holding the model and processing whole slides (``tile_parallel_min_tiles``
   off). The pool's start-up (worker processes, model from the object store) is timed
   apart, and one warm-up file per worker runs before the clock starts, as a long batch
   would amortise both;
3. one larger slide (``--split-side`` px) split tile by tile over the workers
   (:meth:`RayDetectorPool.detect_path`) against ``Detector.detect_path`` in this process.

Every Ray output is compared with the local one (CSV bytes; detections within 1e-6).
Slides per minute = slides / wall seconds of the batch (every output written: CSV, GeoJSON,
MIDOG JSON, overlay, summary). The model is a random-weights ``rdlm-cpu`` when the bundled
model is not built (same architecture, so the same backbone cost).

``--quick`` (4 slides of 1536 px, no split slide) finishes in under a minute on an idle
2-core machine. Usage: python benchmarks/ray_throughput.py [--quick] [--slides 12]
[--side 2048] [--workers 1 2] [--threads 1] [--split-side 4096] [--work DIR] [--model DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import command_line, environment_line


def load_detector(model: str | None):
    import torch

    from mitodet.inference.predictor import DEFAULT_MODEL_DIR, Detector
    from mitodet.models import build_detector

    if model is not None or (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        return Detector.load(model or "default"), str(model or "default")
    torch.manual_seed(0)
    return Detector(build_detector("rdlm-cpu")), "random-weights rdlm-cpu (the bundled model is not built yet)"


def same_outputs(a: Path, b: Path, names: list[str]) -> str:
    """'byte-identical', 'equal within 1e-6' or what differs, for the CSVs of ``names``."""
    import csv

    exact = True
    for n in names:
        fa, fb = a / f"{n}.csv", b / f"{n}.csv"
        if fa.read_bytes() == fb.read_bytes():
            continue
        exact = False
        with open(fa, newline="") as ha, open(fb, newline="") as hb:
            ra, rb = list(csv.DictReader(ha)), list(csv.DictReader(hb))
        if len(ra) != len(rb):
            return f"DIFFERENT ({n}: {len(ra)} vs {len(rb)} detections)"
        for x, y in zip(ra, rb):
            if any(abs(float(x[k]) - float(y[k])) > 1e-6 for k in x):
                return f"DIFFERENT ({n})"
    return "byte-identical CSVs" if exact else "CSVs equal within 1e-6"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slides", type=int, default=12)
    ap.add_argument("--side", type=int, default=2048, help="slide side in level-0 px at 0.25 um/px")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (and for the local run)")
    ap.add_argument("--split-side", type=int, default=4096, help="side of the slide split tile by tile; 0: skip")
    ap.add_argument("--work", default=None, help="folder for the slides and outputs (default: a temporary one)")
    ap.add_argument("--model", default=None, help="model folder (default: bundled, else random rdlm-cpu)")
    ap.add_argument("--quick", action="store_true", help="4 slides of 1536 px, no split slide: < 1 min idle")
    args = ap.parse_args()
    if args.quick:
        args.slides, args.side, args.split_side = 4, 1536, 0

    import torch

    torch.set_num_threads(args.threads)
    import ray

    from mitodet.inference.pipeline import detect_files
    from mitodet.inference.ray_backend import RayDetectorPool
    from mitodet.synthetic import synthetic_pyramidal_tiff, synthetic_scene

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="mitodet-ray-"))
    work.mkdir(parents=True, exist_ok=True)
    det, model_name = load_detector(args.model)
    print(environment_line(args.threads))
    print(f"command: {command_line()}")
    print(
        f"model: {model_name}; working {det.mpp} um/px, tiles {det.tile_px} px, overlap {det.overlap_px} px, "
        f"batch {det.batch_size}"
    )

    t = time.perf_counter()
    slides = work / "slides"
    slides.mkdir(exist_ok=True)
    for k in range(args.slides):
        p = slides / f"slide{k:03d}.tif"
        if not p.exists():
            synthetic_pyramidal_tiff(p, size=(args.side, args.side), mpp=0.25, levels=2, tile=256, seed=k)
    warm = work / "warm"
    warm.mkdir(exist_ok=True)
    from PIL import Image

    for k in range(max(args.workers)):
        img, _, _ = synthetic_scene((256, 256), mpp=0.5, seed=100 + k)
        Image.fromarray(img).save(warm / f"warm{k}.png", dpi=(50800, 50800))
    names = [f"slide{k:03d}" for k in range(args.slides)]
    print(
        f"{args.slides} slides of {args.side} x {args.side} px at 0.25 um/px written in "
        f"{time.perf_counter() - t:.1f} s ({work})"
    )

    rows = []
    detect_files([warm / "warm0.png"], work / "out-warm", detector=det, overwrite=True)
    t = time.perf_counter()
    local = detect_files([slides], work / "out-local", detector=det, overwrite=True)
    wall = time.perf_counter() - t
    assert local.ok, [r.error for r in local.results if r.error]
    tiles = local.results[0].summary["detection"]["tiles_run"]
    rows.append(("local (1 process)", "-", "-", wall, "reference"))

    ray.init(num_cpus=max(args.workers) * args.threads, include_dashboard=False, log_to_driver=False)
    split_rows = []
    try:
        if args.split_side:
            big = work / f"split{args.split_side}.tif"
            if not big.exists():
                synthetic_pyramidal_tiff(
                    big, size=(args.split_side, args.split_side), mpp=0.25, levels=3, tile=256, seed=99
                )
            t = time.perf_counter()
            one = det.detect_path(big, threshold=0.0)
            split_rows.append(("local (1 process)", time.perf_counter() - t, "reference", one.info["tiles_run"]))
        for w in args.workers:
            t = time.perf_counter()
            with RayDetectorPool(det, num_workers=w, cpus_per_worker=args.threads) as pool:
                start = time.perf_counter() - t
                pool.detect_files([warm / f"warm{k}.png" for k in range(w)], work / "out-warm", overwrite=True)
                t = time.perf_counter()
                out = work / f"out-ray{w}"
                res = pool.detect_files([slides], out, overwrite=True, tile_parallel_min_tiles=None)
                wall = time.perf_counter() - t
                assert res.ok, [r.error for r in res.results if r.error]
                rows.append((f"Ray, {w} worker(s)", w, start, wall, same_outputs(work / "out-local", out, names)))
                if args.split_side:
                    t = time.perf_counter()
                    sp = pool.detect_path(big, threshold=0.0)
                    s = time.perf_counter() - t
                    same = sp.points.shape == one.points.shape
                    if same and np.array_equal(sp.points, one.points) and np.array_equal(sp.scores, one.scores):
                        verdict = "identical"
                    elif (
                        same
                        and np.allclose(sp.points, one.points, rtol=0, atol=1e-6)
                        and np.allclose(sp.scores, one.scores, rtol=0, atol=1e-6)
                    ):
                        verdict = "equal within 1e-6"
                    else:
                        verdict = "DIFFERENT"
                    split_rows.append((f"Ray, {w} worker(s)", s, verdict, sp.info["tiles_run"]))
    finally:
        ray.shutdown()

    print(
        f"\nbatch of {args.slides} slides ({tiles} tiles each), every output written (load: see the first "
        "line, taken before the run):\n"
    )
    print("| run | workers | pool start s | batch wall s | slides / min | outputs vs local |")
    print("|---|---|---|---|---|---|")
    for name, w, start, wall, same in rows:
        st = "-" if start == "-" else f"{start:.1f}"
        print(f"| {name} | {w} | {st} | {wall:.1f} | {60 * args.slides / wall:.1f} | {same} |")
    if split_rows:
        print(
            f"\none {args.split_side} x {args.split_side} px slide split tile by tile (detect_path, every candidate):\n"
        )
        print("| run | tiles run | wall s | detections vs local |")
        print("|---|---|---|---|")
        for name, s, same, n in split_rows:
            print(f"| {name} | {n} | {s:.1f} | {same} |")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
