"""Whole-slide path: detection time and peak memory against slide area.

For each size (in HPF-equivalents: one is a 2084 x 2084 px field at 0.25 um/px, so n of
them make a square slide of side 2084 * sqrt(n) px), the script writes a SYNTHETIC tiled
pyramidal TIFF tile by tile (a periodic tiling of one synthetic scene, so no image larger
than that scene is ever held in memory), then detects mitoses in it through the WSI path,
``Detector.detect_path``, in a fresh Python process, and records:

* wall time of ``detect_path`` (model loading excluded) and time per HPF-equivalent;
* peak resident memory of that process (VmHWM: model, torch and detection together), and
  the peak during detection alone (VmHWM is reset after loading the model and running one
  warm-up batch of ``batch_size`` tiles of ``tile_px``, the largest network input, through
  /proc/self/clear_refs; where that is refused the whole-process peak is shown instead).
  The warm-up puts the fixed costs (model, one batch of activations, oneDNN primitives)
  into the baseline, so the peak shows what grows with the slide;
* the tiles run.

All slides are written first; then each is measured ``--repeats`` times (a fresh process
each time) in round-robin order, so a slow spell of a shared machine falls on every size
rather than on one. The table shows the median detection time with its range, and the
largest peak.

Time should grow linearly with area and memory should stay flat. The verdict printed
under the table uses stated tolerances: the marginal cost per added HPF-equivalent between
consecutive sizes (from the medians) within +-25 % of the largest step's; and for memory,
the detection peak of the largest slide within +10 % of the next smaller one's (4x less
area with the default sizes): a footprint that kept growing with area, such as detections
or decoded tiles piling up, fails it from about 0.5 MB per tile. The change of the peak
over the whole range is printed too: the smallest slide (9 tiles, 3 batches) does not run
long enough for the allocator to reach its steady state, so it sits lower. Detection runs
with the tissue mask off unless ``--tissue auto``/``on``, so every tile of the synthetic
slide is run.

Usage: python benchmarks/scaling.py [--sizes 1 4 16 64] [--hpf-px 2084] [--repeats 3] [--model DIR]
       [--threads 2] [--tissue off|auto] [--work DIR] [--keep] [--out docs/benchmarks/scaling.md] [--quick]
The synthetic slides are timing inputs only (never accuracy). --quick: sizes 1 and 4 with
a 512 px HPF-equivalent, one run each (< 1 min).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import DOCS, HPF_MPP, HPF_PX, command_line, environment_line, shipped_detector, write_doc

TILE = 256
TIME_TOL = 0.25
MEM_TOL = 0.10


# ----------------------------------------------------------------------------- writing
def _halve(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.uint16)
    s = x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8)


def n_levels(side: int, pool: int) -> int:
    """At least 2 levels (so the file is read as a slide, region by region), at most as many
    as the pool can be halved into whole tiles, and down to about 1024 px."""
    want = max(2, math.ceil(math.log2(max(side, 1) / 1024.0)) + 1)
    return int(min(want, int(math.log2(pool // TILE)) + 1))


def write_periodic_slide(path: Path, side: int, mpp: float, pool: np.ndarray, compression: str | None = "zlib") -> int:
    """Write a (side x side) RGB pyramidal TIFF whose level 0 is ``pool`` repeated periodically.

    Tiles are generated one at a time, so memory stays at the pool's size. Level k is the
    same periodic tiling of the pool halved k times (exactly the 2x2-mean pyramid of
    level 0, because the pool side is a multiple of TILE * 2**k). Returns the level count.
    """
    import tifffile

    p = pool.shape[0]
    if pool.shape[0] != pool.shape[1] or p % TILE:
        raise ValueError(f"the pool must be square with a side that is a multiple of {TILE}, got {pool.shape}")
    levels = n_levels(side, p)
    pools = [pool]
    for _ in range(1, levels):
        pools.append(_halve(pools[-1]))

    def tiles(k: int, h: int, w: int):
        pk = pools[k]
        period = pk.shape[0]
        for r in range(math.ceil(h / TILE)):
            y = (r * TILE) % period
            for c in range(math.ceil(w / TILE)):
                x = (c * TILE) % period
                yield pk[y : y + TILE, x : x + TILE]

    opts = dict(
        tile=(TILE, TILE), photometric="rgb", resolutionunit="CENTIMETER", metadata=None, compression=compression
    )
    if compression == "zlib":
        opts["compressionargs"] = {"level": 1}
    with tifffile.TiffWriter(path, bigtiff=side * side * 3 > 2**31) as tif:
        for k in range(levels):
            h = w = side // 2**k
            res = 1e4 / (mpp * 2**k)
            extra = {"subifds": levels - 1} if k == 0 else {"subfiletype": 1}
            if k == 0:
                extra["description"] = f"mitodet SYNTHETIC benchmark slide (not real data); mpp={mpp}"
            tif.write(tiles(k, h, w), shape=(h, w, 3), dtype=np.uint8, resolution=(res, res), **opts, **extra)
    return levels


# ----------------------------------------------------------------------------- child
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_kb() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux


def child(args) -> int:
    """Run in a fresh process: load the model, detect on one slide, print one JSON line."""
    import inspect

    import torch

    torch.set_num_threads(args.threads)
    from mitodet.runtime import malloc_state

    t0 = time.perf_counter()
    det, model_note = shipped_detector(args.model)
    if not hasattr(det, "detect_path"):
        print(json.dumps({"error": "Detector.detect_path does not exist yet: the WSI path is not available"}))
        return 3
    # one warm-up batch of the largest network input, so that fixed costs (one batch of
    # activations, oneDNN primitives) are in the baseline and not counted below
    det.predict_working([np.full((det.tile_px, det.tile_px, 3), 200, np.uint8)] * det.batch_size)
    load_s = time.perf_counter() - t0
    rss_loaded = _status_kb("VmRSS")
    reset = False
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        pass
    kwargs = {"threshold": 0.0}
    if "tissue" in inspect.signature(det.detect_path).parameters:
        kwargs["tissue"] = args.tissue
    t = time.perf_counter()
    res = det.detect_path(args._child, **kwargs)
    detect_s = time.perf_counter() - t
    peak_detect = _peak_kb()
    info = getattr(res, "info", {}) or {}
    print(
        json.dumps(
            {
                "load_s": load_s,
                "detect_s": detect_s,
                "rss_loaded_kb": rss_loaded,
                "peak_detect_kb": peak_detect if reset else None,
                "peak_kb": _peak_kb() if not reset else None,
                "hwm_reset": reset,
                "n_candidates": int(len(res.scores)),
                "tiles_run": info.get("tiles_run"),
                "level": info.get("level"),
                "model": model_note,
                "malloc": malloc_state(),
            }
        )
    )
    return 0


def measure(path: Path, args) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_child",
        str(path),
        "--threads",
        str(args.threads),
        "--tissue",
        args.tissue,
    ]
    if args.model:
        cmd += ["--model", str(args.model)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"the measuring process failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1])
    if "error" in out:
        raise RuntimeError(out["error"])
    if proc.returncode != 0:
        raise RuntimeError(f"the measuring process failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    import resource

    out["process_wall_s"] = wall
    if out.get("peak_kb") is None and not out.get("hwm_reset"):
        out["peak_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return out


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 4, 16, 64], help="slide areas in HPF-equivalents")
    ap.add_argument("--hpf-px", type=int, default=HPF_PX, help="side of one HPF-equivalent in pixels at 0.25 um/px")
    ap.add_argument("--repeats", type=int, default=3, help="detection runs per slide, each in a fresh process (median)")
    ap.add_argument("--model", default=None, help="model folder (default: the bundled one; random rdlm-cpu if missing)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tissue", choices=("off", "auto", "on"), default="off")
    ap.add_argument("--work", type=Path, default=None, help="folder for the synthetic slides (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic slides")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown file to write (full mode default: {DOCS / 'scaling.md'}; quick mode: none)",
    )
    ap.add_argument("--quick", action="store_true", help="sizes 1 and 4 with a 512 px HPF-equivalent (< 1 min)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        return child(args)
    if args.quick:
        args.sizes, args.hpf_px, args.repeats = [1, 4], 512, 1
    elif args.out is None:
        args.out = DOCS / "scaling.md"
    if any(s <= 0 for s in args.sizes):
        ap.error(f"--sizes must be positive, got {args.sizes}")
    if len(set(args.sizes)) != len(args.sizes):
        ap.error(f"--sizes must be different from each other, got {args.sizes}")
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")

    from mitodet.synthetic import synthetic_scene

    lines: list[str] = []

    def emit(s: str = "") -> None:
        lines.append(s)
        print(s, flush=True)

    pool_side = 1024 if args.quick else 2048
    t = time.perf_counter()
    pool, _, _ = synthetic_scene(
        (pool_side, pool_side),
        n_mitoses=4 if args.quick else 12,
        n_lookalikes=4 if args.quick else 12,
        mpp=HPF_MPP,
        seed=0,
    )
    pool_s = time.perf_counter() - t
    hpf_mm2 = (args.hpf_px * HPF_MPP / 1000.0) ** 2
    emit(f"Command: `{command_line()}`")
    emit()
    emit(f"Machine: {environment_line(args.threads)}.")
    emit()
    emit(
        f"Slides: SYNTHETIC tiled pyramidal TIFFs (zlib, {TILE} px tiles, 2x2-mean levels) at {HPF_MPP} um/px, each a "
        f"periodic tiling of one {pool_side} x {pool_side} px synthetic scene (drawn in {pool_s:.1f} s); "
        f"1 HPF-equivalent = {args.hpf_px} x {args.hpf_px} px = {hpf_mm2:.4f} mm^2"
        + (" (reduced for --quick; the full mode uses 2084 px)." if args.hpf_px != HPF_PX else ".")
        + f" Detection: `Detector.detect_path(path, threshold=0, tissue={args.tissue!r})` in a fresh process "
        f"per run, {args.threads} torch thread(s), {args.repeats} run(s) per slide."
    )
    emit()
    work_ctx = tempfile.TemporaryDirectory(prefix="mitodet-scaling-") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    reset_ok = True
    header = (
        "| HPF-equivalents | side (px) | levels | write s | tiles run | detect s (median) | range of runs (s) | "
        "s / HPF | s / tile | RSS after load + warm-up batch (MB) | peak RSS during detection (MB) |"
    )
    slides = []
    try:
        for n in args.sizes:
            side = int(round(args.hpf_px * math.sqrt(n)))
            path = work / f"synthetic_{n:g}hpf_{side}px.tif"
            t = time.perf_counter()
            levels = write_periodic_slide(path, side, HPF_MPP, pool)
            slides.append((n, side, path, levels, time.perf_counter() - t))
        runs: dict[float, list[dict]] = {n: [] for n in args.sizes}
        try:
            for k in range(args.repeats):
                for n, _side, path, _, _ in slides:
                    r = measure(path, args)
                    runs[n].append(r)
                    print(
                        f"  run {k + 1}/{args.repeats}, {n:g} HPF: {r['detect_s']:.2f} s", file=sys.stderr, flush=True
                    )
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
    finally:
        if not args.keep:
            for _, _, path, _, _ in slides:
                path.unlink(missing_ok=True)
        if work_ctx is not None:
            work_ctx.cleanup()
    first = runs[args.sizes[0]][0]
    emit(f"Model: {first['model']}. Allocator: {first.get('malloc', 'not reported')}.")
    emit()
    emit(header)
    emit("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, side, _, levels, write_s in slides:
        rs = runs[n]
        reset_ok = reset_ok and all(bool(x.get("hwm_reset")) for x in rs)
        times = [x["detect_s"] for x in rs]
        t_med = statistics.median(times)
        peak = max(x["peak_detect_kb"] if x.get("hwm_reset") else x["peak_kb"] for x in rs)
        loaded = statistics.median(x["rss_loaded_kb"] for x in rs)
        tiles_run = rs[0].get("tiles_run")
        rows.append((n, t_med, t_med / n, peak / 1024, (peak - loaded) / 1024, tiles_run or 0))
        per_tile = f"{t_med / tiles_run:.3f}" if tiles_run else "-"
        emit(
            f"| {n:g} | {side} | {levels} | {write_s:.1f} | {tiles_run} | {t_med:.2f} | "
            f"{min(times):.2f}-{max(times):.2f} | {t_med / n:.3f} | {per_tile} | {loaded / 1024:.0f} | "
            f"{peak / 1024:.0f} |"
        )
    emit()
    if not reset_ok:
        emit(
            "Peak RSS could not be reset after loading the model (/proc/self/clear_refs refused): the peak column "
            "is the whole process's."
        )
        emit()
    if len(rows) >= 2:
        ns = [x[0] for x in rows]
        ts = [x[1] for x in rows]
        mem = [x[3] for x in rows]
        added = [x[4] for x in rows]
        # marginal cost between consecutive sizes: constant when time = fixed cost + rate * area
        marg = [(ts[i] - ts[i - 1]) / (ns[i] - ns[i - 1]) for i in range(1, len(rows))]
        t_dev = max(abs(m / marg[-1] - 1) for m in marg) if marg[-1] > 0 else math.inf
        m_dev = max(m / mem[0] - 1 for m in mem)
        m_last = mem[-1] / mem[-2] - 1
        tiles = [x[5] for x in rows]
        per_tile = (mem[-1] - mem[-2]) / max(1, tiles[-1] - tiles[-2])
        lin = "linear" if t_dev <= TIME_TOL else "NOT linear"
        flat = "flat" if m_last <= MEM_TOL else "NOT flat"
        emit(
            "Marginal seconds per added HPF-equivalent between consecutive sizes: "
            + ", ".join(f"{ns[i - 1]:g}->{ns[i]:g}: {m:.3f}" for i, m in enumerate(marg, start=1))
            + "."
        )
        emit()
        emit(
            f"Time is **{lin}** in area here: the marginal cost per HPF-equivalent stays within "
            f"{100 * t_dev:.0f} % of the largest step's (tolerance {100 * TIME_TOL:.0f} %; small slides pay a "
            f"relatively larger tile-overlap and file-opening share, which shows in s / HPF but not in the "
            f"marginal cost). Memory is **{flat}**: from {ns[-2]:g} to {ns[-1]:g} HPF-equivalents "
            f"({ns[-1] / ns[-2]:g}x the area, {tiles[-1] - tiles[-2]} more tiles) the detection peak changes by "
            f"{100 * m_last:+.0f} % ({mem[-2]:.0f} MB -> {mem[-1]:.0f} MB, {per_tile:+.2f} MB per added tile; "
            f"tolerance +{100 * MEM_TOL:.0f} %). Over the whole range ({ns[-1] / ns[0]:g}x the area) the peak "
            f"rises by at most {100 * max(m_dev, 0):.0f} % ({mem[0]:.0f} MB -> {max(mem):.0f} MB); memory added "
            f"over the loaded model and its warm-up batch, smallest to largest slide: "
            f"{', '.join(f'{a:.0f}' for a in added)} MB."
        )
    write_doc(args.out, "Whole-slide scaling: time and memory against slide area", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
