"""What ``mitodet detect`` costs on top of the networks, and what it writes, per HPF.

For each real input image (by default the MITOS-ATYPIA-14 frames of ``../shared/data``; without
them the shipped sample in ``samples/``), with one loaded model:

- **networks**: the models alone on the image already in memory: ``Detector.detect_array``
  (first stage, tiling, merge, second stage) at threshold 0, then the atypical classifier on
  the detections at the operating threshold (what ``detect`` runs);
- **detect**: the whole per-file path of ``mitodet detect`` (``pipeline.detect_files`` with the
  same loaded model, ``overwrite=True``): read the file, both networks, the read-out, every
  output file written, the batch index. The model's loading is excluded from both (it is paid
  once per batch, not per HPF).

Both are the median of ``--repeats`` runs after one warm-up run of each. The ratio of the two
is the overhead the issue bounds (at most 1.3x). Each output variant (the defaults,
``--heatmap``, ``--no-overlay``) is timed and its bytes per HPF counted.

The code measured is the ``mitodet`` that Python imports: run it with
``PYTHONPATH=<an older checkout>/src`` to measure an earlier version the same way (keyword
arguments that version lacks are left out, and said so).

Usage: python benchmarks/detect_overhead.py [--model DIR] [--images F ...] [--threads 2]
       [--repeats 3] [--doc docs/benchmarks/detect_overhead.md] [--quick]
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, command_line, environment_line, hpf_equivalents, write_doc

SHARED_FRAMES = ("A03/frames/x40/A03_03Ab.tiff", "A03/frames/x40/A03_00Ab.tiff", "A05/frames/x40/A05_00Aa.tiff")

#: output variants: (label, keyword arguments of detect_files)
VARIANTS = (
    ("defaults", {}),
    ("--heatmap", {"heatmap": True}),
    ("--no-overlay", {"overlay": False}),
)


#: the MITOS-ATYPIA-14 x40 frames carry no pixel size; the data's README gives 0.2455 um/px
SHARED_MPP = 0.2455


def default_images() -> tuple[list[Path], float | None]:
    """(images, pixel size to pass): the shared frames, or the shipped sample (mpp in its metadata)."""
    root = Path(os.environ.get("MITODET_DATA", ROOT.parent / "shared" / "data")) / "mitos_atypia14"
    frames = [root / f for f in SHARED_FRAMES]
    if all(f.is_file() for f in frames):
        return frames, SHARED_MPP
    return [ROOT / "samples" / "CMU-1-Small-Region.svs"], None


def _median(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--images", nargs="+", type=Path, default=None, help="input images (default: see the docstring)")
    ap.add_argument("--mpp", type=float, default=None, help="pixel size of --images (default: from the files)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median), after a warm-up")
    ap.add_argument("--doc", type=Path, default=None, help="also write the tables to this markdown file")
    ap.add_argument("--quick", action="store_true", help="one image, one repeat, the defaults only (a smoke test)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import mitodet
    from mitodet.inference import pipeline
    from mitodet.inference.predictor import Detector
    from mitodet.inference.slide import ArraySource, open_image, resolve_mpp

    images, mpp_arg = (args.images, args.mpp) if args.images else default_images()
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise SystemExit(f"detect_overhead.py: no such image(s): {', '.join(missing)}; pass --images FILE ...")
    repeats = 1 if args.quick else args.repeats
    if args.quick:
        images = images[:1]
    variants = VARIANTS[:1] if args.quick else VARIANTS

    det = Detector.load(args.model or "default")
    accepted = set(inspect.signature(pipeline.detect_files).parameters)
    notes = []
    loaded = []  # (path, array, mpp, hpf)
    for p in images:
        with open_image(p) as src:
            mpp, _ = resolve_mpp(p, src.pixel_size, mpp_arg)
            arr = src.in_memory()
            if arr is None:
                arr = src.read_region(0, 0, src.shape[1], src.shape[0])
        loaded.append((p, arr, mpp, hpf_equivalents(arr.shape[:2], mpp)))
    hpf = sum(x[3] for x in loaded)

    def networks() -> None:
        for _p, arr, mpp, _h in loaded:
            cand = det.detect_array(arr, mpp, threshold=0.0)
            kept = cand.above(det.threshold)
            if getattr(det, "atypical", None) is not None and len(kept):
                det.classify_atypical(ArraySource(arr), kept.points, mpp)

    t_net = _median(networks, repeats)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mitodet_overhead_") as tmp:
        for label, kwargs in variants:
            kw = {k: v for k, v in kwargs.items() if k in accepted}
            if kw != kwargs:
                notes.append(f"`{label}`: this version's detect_files has no {sorted(set(kwargs) - set(kw))}")
            out = Path(tmp) / label.strip("-")

            def detect(out=out, kw=kw) -> None:
                res = pipeline.detect_files(
                    [str(p) for p in images], out, detector=det, mpp=mpp_arg, overwrite=True, **kw
                )
                if not res.ok:
                    raise SystemExit(f"detect_overhead.py: detect failed: {[r.error for r in res.results]}")

            t_det = _median(detect, repeats)
            by_kind: dict[str, int] = {}  # output kind (NAME.<kind>) -> bytes over all images
            for f in out.iterdir():
                if f.is_file():
                    kind = f.name.split(".", 1)[1] if "." in f.name else f.name
                    by_kind[kind] = by_kind.get(kind, 0) + f.stat().st_size
            big = max(by_kind, key=by_kind.get)
            rows.append((label, t_det, sum(by_kind.values()), big, by_kind[big]))

    lines = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {environment_line(args.threads)}",
        "",
        f"Code measured: mitodet {mitodet.__version__} from `{Path(mitodet.__file__).parent}`; model "
        f"{det.model_dir} (second stage: {'yes' if det.rescorer is not None else 'no'}, atypical classifier: "
        f"{'yes' if getattr(det, 'atypical', None) is not None else 'no'}).",
        "",
        f"Input: {len(loaded)} image(s), {hpf:.3f} HPF-equivalents (2084 x 2084 px at 0.25 um/px): "
        + ", ".join(f"{p.name} ({a.shape[1]} x {a.shape[0]} px at {m:g} um/px)" for p, a, m, _h in loaded)
        + f". Median of {repeats} run(s) after a warm-up; the model loaded once, outside the timings.",
        "",
        f"Networks alone: **{t_net / hpf:.3f} s per HPF**.",
        "",
        "| outputs | detect s / HPF | x networks | bytes written / HPF | largest output kind (bytes / HPF) |",
        "|---|---:|---:|---:|---|",
    ]
    for label, t_det, size, big, big_size in rows:
        lines.append(
            f"| {label} | {t_det / hpf:.3f} | {t_det / t_net:.2f} | {size / hpf:,.0f} | {big} ({big_size / hpf:,.0f}) |"
        )
    lines += [""] + [f"Note: {n}" for n in notes]
    body = "\n".join(lines)
    print(body, flush=True)
    write_doc(args.doc, "What mitodet detect costs beyond the networks, per HPF", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
