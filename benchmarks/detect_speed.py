"""Detection speed and memory: seconds per HPF, seconds per mm^2 of tissue on a slide, peak memory.

Part 1 (HPF): a SYNTHETIC 2084 x 2084 px field at 0.25 um/px (an ICPR-2012-sized x40 frame,
0.27 mm^2) through ``Detector.detect_array`` (every candidate kept, ``threshold=0``), one
warm-up tile, then the median of ``--repeats`` calls.

Part 2 (slide): a SYNTHETIC pyramidal TIFF (0.25 um/px, 256 px JPEG tiles, halved levels
down to < 2048 px, one page per level, so both tifffile and OpenSlide read it) is written
tile by tile from a generator: the image is never held in memory. It is mostly glass with
a few elliptical "tissue" patches (tiles of synthetic H&E) covering ``--tissue-fraction``
of the slide. Detection runs through ``Detector.detect_path`` (tissue detection on, the
default for slides) in a fresh Python process, which reports the wall time, the tissue
area it found, the tiles run and skipped, and its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after loading the model (and one warm-up
tile) and after the slide. Seconds per mm^2 of tissue = slide seconds / tissue area. Wall
times are printed with the process's CPU time (all threads): on a machine shared with other
work, CPU time / threads is closer to what an idle machine would take.

The full mode runs an 8,000 x 8,000 and a 50,000 x 50,000 px slide (the second shows that
memory does not grow with the slide); ``--quick`` runs the 8,000 px slide only and a
1042 px field instead of 2084 px, and finishes in under a minute on an idle 2-core machine.

Random weights (when ``--model`` is absent or not built yet) cost the same per tile as the
trained model of the same architecture for the backbone; the RoI head's cost depends on
the number of proposals, which the trained model may change a little.

Usage: python benchmarks/detect_speed.py [--model default|DIR] [--threads 2] [--repeats 3]
       [--sizes 8000 50000] [--tissue-fraction 0.03] [--work DIR] [--keep] [--quick]
The synthetic images are timing inputs only (never accuracy).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import HPF_MPP, HPF_PX, command_line, environment_line

TILE = 256
GLASS = 244


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def load_detector(model: str):
    """The detector from ``model``; a random rdlm-cpu when the default model is not there."""
    import torch

    from mitodet.inference.predictor import DEFAULT_MODEL_DIR, Detector
    from mitodet.models import build_detector

    if model != "default" or (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        return Detector.load(model), str(model)
    torch.manual_seed(0)
    return Detector(build_detector("rdlm-cpu")), "random-weights rdlm-cpu (the bundled model is not built yet)"


# ----------------------------------------------------------------------------- the slide


def _patches(side: int, fraction: float, seed: int = 0) -> list[tuple[float, float, float, float]]:
    """Ellipses (cx, cy, rx, ry) in level-0 px, together about ``fraction`` of the slide."""
    rng = np.random.default_rng(seed)
    n = 3
    area_each = fraction * side * side / n
    out = []
    for k in range(n):
        ratio = rng.uniform(0.6, 1.0)
        ry = math.sqrt(area_each / (math.pi * ratio))
        rx = ry * ratio
        cx = side * (0.25 + 0.25 * k) + rng.uniform(-0.05, 0.05) * side
        cy = side * rng.uniform(0.3, 0.7)
        out.append((cx, cy, rx, ry))
    return out


def write_slide(path: Path, side: int, mpp: float, fraction: float) -> dict:
    """Write the synthetic pyramidal TIFF tile by tile; returns facts about it."""
    import tifffile

    from mitodet.synthetic import synthetic_scene

    patches = _patches(side, fraction)
    levels = 1
    while side / 2 ** (levels - 1) >= 2048:
        levels += 1
    try:
        import imagecodecs  # noqa: F401

        comp = dict(compression="jpeg", compressionargs={"level": 90})
    except ImportError:
        comp = dict(compression="zlib", compressionargs={"level": 1})
    rng = np.random.default_rng(1)
    glass = np.clip(GLASS + rng.integers(-2, 3, (TILE, TILE, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    t0 = time.perf_counter()
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for k in range(levels):
            d = 2**k
            lv_side = math.ceil(side / d)
            lv_mpp = mpp * d
            bank = [synthetic_scene((TILE, TILE), n_mitoses=1, n_lookalikes=1, mpp=lv_mpp, seed=s)[0] for s in range(6)]
            n = math.ceil(lv_side / TILE)
            yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32)

            def tiles():
                for r in range(n):
                    for c in range(n):
                        x0, y0 = c * TILE * d, r * TILE * d  # level-0 px of the tile corner
                        near = [
                            p
                            for p in patches
                            if x0 - p[2] <= p[0] <= x0 + TILE * d + p[2] and y0 - p[3] <= p[1] <= y0 + TILE * d + p[3]
                        ]
                        if not near:
                            yield glass
                            continue
                        inside = np.zeros((TILE, TILE), bool)
                        for cx, cy, rx, ry in near:
                            inside |= (((x0 + xx * d - cx) / rx) ** 2 + ((y0 + yy * d - cy) / ry) ** 2) <= 1.0
                        if not inside.any():
                            yield glass
                            continue
                        yield np.where(inside[..., None], bank[(r * 7 + c * 3) % len(bank)], glass)

            res = 1e4 / lv_mpp
            tif.write(
                tiles(),
                shape=(lv_side, lv_side, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                subfiletype=1 if k else 0,
                description="mitodet SYNTHETIC benchmark slide (not real data)" if k == 0 else None,
                metadata=None,
                **comp,
            )
    tissue_mm2 = sum(math.pi * p[2] * p[3] for p in patches) * (mpp / 1000) ** 2
    return {
        "side_px": side,
        "levels": levels,
        "seconds_to_write": time.perf_counter() - t0,
        "bytes": path.stat().st_size,
        "tissue_mm2_drawn": tissue_mm2,
        "compression": comp["compression"],
    }


def child(args) -> None:
    """Detect on one slide in this (fresh) process and print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    det, note = load_detector(args.model)
    det.predict_working([np.full((det.tile_px, det.tile_px, 3), 200, np.uint8)])  # warm-up
    rss_loaded = _maxrss_mb()
    t, c = time.perf_counter(), time.process_time()
    found = det.detect_path(args._child, threshold=0.0)
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    tissue = found.tissue.area_mm2(found.mpp) if found.tissue is not None else None
    print(
        json.dumps(
            {
                "seconds": secs,
                "cpu_seconds": cpu,
                "tissue_mm2": tissue,
                "tiles": found.info["tiles"],
                "tiles_run": found.info["tiles_run"],
                "level": found.info["level"],
                "candidates": len(found),
                "rss_after_load_mb": rss_loaded,
                "rss_peak_mb": _maxrss_mb(),
                "model": note,
            }
        )
    )


def run_slide(path: Path, args) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_child",
        str(path),
        "--model",
        args.model,
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"slide run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="'default' or a model folder (random rdlm-cpu if absent)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8000, 50000], help="slide sides in px")
    ap.add_argument("--tissue-fraction", type=float, default=0.03)
    ap.add_argument("--work", type=Path, default=None, help="folder for the synthetic slides (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic slides")
    ap.add_argument("--quick", action="store_true", help="8,000 px slide and a 1042 px field only (< 1 min)")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(args)
        return

    import torch

    from mitodet.synthetic import synthetic_scene

    torch.set_num_threads(args.threads)
    sizes = [8000] if args.quick else args.sizes
    frac = 0.05 if args.quick and args.tissue_fraction == 0.03 else args.tissue_fraction
    hpf_px = HPF_PX // 2 if args.quick else HPF_PX
    repeats = 1 if args.quick else args.repeats
    print(f"$ {command_line()}")
    print(environment_line(args.threads))

    det, note = load_detector(args.model)
    print(
        f"model: {note}; working {det.mpp} um/px, tiles {det.tile_px} px, overlap {det.overlap_px} px, "
        f"batch {det.batch_size}"
    )
    img, _, _ = synthetic_scene((hpf_px, hpf_px), n_mitoses=6, n_lookalikes=6, mpp=HPF_MPP, seed=0)
    det.detect_array(np.ascontiguousarray(img[:600, :600]), HPF_MPP, threshold=0.0)  # warm-up (one tile)
    times, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        found = det.detect_array(img, HPF_MPP, threshold=0.0)
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    sec, cpu = statistics.median(times), statistics.median(cpus)
    mm2 = (hpf_px * HPF_MPP / 1000) ** 2
    per_hpf = sec * (HPF_PX / hpf_px) ** 2
    print(
        f"\nHPF {hpf_px} x {hpf_px} px at {HPF_MPP} um/px ({mm2:.3f} mm2, {found.info['tiles']} tiles): "
        f"median {sec:.2f} s wall, {cpu:.2f} s CPU (all threads) of {repeats} "
        f"(all: {', '.join(f'{t:.2f}' for t in times)})"
    )
    print(
        f"  => {per_hpf:.2f} s per 2084 x 2084 HPF"
        + (" (scaled by area from the 1042 px field)" if hpf_px != HPF_PX else "")
        + f", {sec / mm2:.2f} s per mm2"
    )
    del img

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="mitodet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"\nslides (0.25 um/px, {frac:.1%} tissue, in {work}):")
    print(
        "| side px | levels | file MB | write s | tissue mm2 (found) | tiles run / all | detect s (CPU s) "
        "| s per mm2 tissue | peak RSS MB (after model load) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for side in sizes:
        path = work / f"synthetic_{side}.tif"
        info = write_slide(path, side, 0.25, frac)
        r = run_slide(path, args)
        per_mm2 = r["seconds"] / r["tissue_mm2"] if r["tissue_mm2"] else float("nan")
        print(
            f"| {side:,} | {info['levels']} | {info['bytes'] / 2**20:.0f} | {info['seconds_to_write']:.0f} "
            f"| {r['tissue_mm2']:.2f} ({info['tissue_mm2_drawn']:.2f} drawn) | {r['tiles_run']} / {r['tiles']} "
            f"| {r['seconds']:.1f} ({r['cpu_seconds']:.1f}) | {per_mm2:.2f} | {r['rss_peak_mb']:.0f} ({r['rss_after_load_mb']:.0f}) |",
            flush=True,
        )
        if not args.keep:
            path.unlink()
    if not args.keep and not args.work:
        try:
            os.rmdir(work)
        except OSError:
            pass


if __name__ == "__main__":
    main()
