"""Negative control: detections on normal tissue from a lab, scanner and magnification in none
of the training data (the shipped CC0 sample ``samples/CMU-1-Small-Region.svs``: skin, Aperio,
20x, 0.499 um/px). Normal skin holds few if any mitoses, so (nearly) every detection is a
false positive; detections per mm2 of tissue is an upper bound of the false-positive rate
there. Not a tuning set: nothing is chosen on it.

Usage: python benchmarks/negative_control.py [--model default] [--combine geometric:0.9265 product:0.85 ...]
       [--threads 2] [--out docs/benchmarks/negative_control.md] [--quick]

Rows: the first stage alone at its threshold; the pipeline as shipped; and, for each
``--combine RULE:THRESHOLD``, the same second stage with that score combination and threshold
(thresholds to be taken from the whole-field validation, ``benchmarks/generalisation.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOCS, command_line, environment_line, write_doc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "CMU-1-Small-Region.svs"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--image", type=Path, default=SAMPLE)
    ap.add_argument("--combine", nargs="*", default=[], metavar="RULE:THRESHOLD")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DOCS / "negative_control.md")
    ap.add_argument("--quick", action="store_true", help="the two shipped rows only; writes no doc")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from mitodet.inference.predictor import Detector

    rows = []

    def run(label: str, det) -> None:
        t0 = time.perf_counter()
        found = det.detect_path(args.image)
        area = found.tissue.area_mm2(found.mpp) if found.tissue is not None else float("nan")
        rows.append((label, det.threshold, len(found.scores), area, time.perf_counter() - t0))
        print(f"{label}: {len(found.scores)} detections on {area:.3f} mm2", flush=True)

    run("first stage alone", Detector.load(args.model, second_stage=False))
    shipped = Detector.load(args.model)
    if shipped.rescorer is not None:
        run(f"pipeline as shipped ({shipped.rescorer.config.combine})", shipped)
        base = shipped.rescorer.config
        for spec in [] if args.quick else args.combine:
            rule, _, thr = spec.partition(":")
            det = Detector.load(args.model, threshold=float(thr))
            det.rescorer.config = base.replace(combine=rule, threshold=float(thr))
            run(f"second stage combined by {rule}", det)
    lines = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {environment_line(args.threads)}",
        "",
        f"Image: `{args.image.relative_to(ROOT) if args.image.is_relative_to(ROOT) else args.image}` "
        "(normal skin, Aperio 20x, 0.499 um/px; CC0, see `samples/README.md`). Every detection is "
        "counted as a false positive (normal skin: few if any mitoses).",
        "",
        "| variant | threshold | detections | tissue mm2 | detections / mm2 | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for label, thr, n, area, sec in rows:
        lines.append(f"| {label} | {thr:.4f} | {n} | {area:.3f} | {n / area:.1f} | {sec:.1f} |")
    md = "\n".join(lines) + "\n"
    print(md)
    if not args.quick:
        write_doc(args.out, "Negative control: normal skin from an unseen lab", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
