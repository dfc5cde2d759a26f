"""Whole-tissue A/B of trained second-stage variants: what the label-complete crops cannot see.

Usage: python benchmarks/whole_tissue_ab.py --runs NAME=DIR [NAME=DIR ...] [--threads 2]
       [--out docs/benchmarks/whole_tissue_ab.md] [--quick]

Each ``DIR`` is a folder of seed runs of ``benchmarks/generalisation.py`` (``DIR/seed<k>/model``:
the first stage and that seed's second stage, with the threshold it chose on its calibration
crops). For every model: the three MITOS-ATYPIA-14 frames through the whole-image path
(TP / FP / FN at the stored threshold, ``full_frames.run``) and the negative control, the shipped
normal-skin sample (detections per mm2 of tissue, all false positives; see
``benchmarks/negative_control.py``). At the thresholds chosen, the crops hold almost no false
positives, so these two are where a variant's cost in false positives shows. Nothing is chosen on
them. Rows give mean +- sd over the seeds found.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOCS, command_line, environment_line, mean_sd, write_doc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "CMU-1-Small-Region.svs"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, metavar="NAME=DIR")
    ap.add_argument("--data", type=Path, default=None, help="default: $MITODET_DATA or ../shared/data")
    ap.add_argument("--combine", default="geometric", help="score combination (its threshold from the run's rows.json)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DOCS / "whole_tissue_ab.md")
    ap.add_argument("--quick", action="store_true", help="the first frame only, no document")
    args = ap.parse_args(argv)

    import os

    import torch

    torch.set_num_threads(args.threads)
    from full_frames import run as run_frames
    from mitodet.inference.predictor import Detector

    data = args.data or Path(os.environ.get("MITODET_DATA", ROOT.parent / "shared" / "data"))
    rows = []
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        models = sorted(Path(folder).glob("seed*/model"))
        if not models:
            print(f"error: no seed*/model under {folder}", file=sys.stderr)
            return 2
        per = []
        rows_file = Path(folder).parent / "rows.json"
        if not rows_file.is_file():
            print(f"error: {rows_file} not found: give a run folder of benchmarks/generalisation.py", file=sys.stderr)
            return 2
        rows_json = json.loads(rows_file.read_text())
        for m in models:
            seed = int(m.parent.name[len("seed") :])
            # the threshold generalisation.py chose for this combination on this run's calibration crops
            thr = next(
                (
                    r["threshold"]
                    for r in rows_json
                    if r.get("seed") == seed
                    and r["variant"].endswith(f"({args.combine})")
                    and re.sub(r"[^\w.-]+", "_", r["variant"][: -len(f" ({args.combine})")]).strip("_")
                    == Path(folder).name
                ),
                None,
            )
            if thr is None:
                print(
                    f"error: {rows_file} has no {args.combine!r} row of {Path(folder).name} seed {seed}",
                    file=sys.stderr,
                )
                return 2
            det = Detector.load(m)
            det.rescorer.config = det.rescorer.config.replace(combine=args.combine, threshold=thr)
            det.threshold = thr
            fr = run_frames(det, data, None, False, max_frames=1 if args.quick else None)
            found = det.detect_path(SAMPLE)
            area = found.tissue.area_mm2(found.mpp) if found.tissue is not None else 0.0
            if not area > 0:
                print(f"error: no tissue found in {SAMPLE}", file=sys.stderr)
                return 2
            per.append(
                {
                    "thr": fr["threshold"],
                    "tp": fr["tp"],
                    "fp": fr["fp"],
                    "fn": fr["fn"],
                    "f1": fr["f1"],
                    "neg": len(found.scores) / area,
                }
            )
            print(
                f"{name} {m.parent.name}: frames TP {fr['tp']} FP {fr['fp']} FN {fr['fn']} F1 {fr['f1']:.3f}; "
                f"negative control {len(found.scores)} detections ({per[-1]['neg']:.1f}/mm2)",
                flush=True,
            )
        rows.append((name, folder, per))
    lines = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {environment_line(args.threads)}",
        "",
        "Frames: the three MITOS-ATYPIA-14 Aperio frames (8 mitoses, 0.38 mm2 of label-complete tissue) at "
        "each model's stored threshold, 8 um matching. Negative control: `samples/CMU-1-Small-Region.svs` "
        "(normal skin, 20x, another lab), every detection counted as a false positive.",
        "",
        "| variant | runs | seeds | threshold | frames TP | frames FP | frames FN | frames F1 | negative control / mm2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, folder, per in rows:
        col = lambda k, f="{:.3f}": mean_sd([p[k] for p in per], f)  # noqa: E731
        lines.append(
            f"| {name} | `{folder}` | {len(per)} | {col('thr', '{:.4f}')} | {col('tp', '{:.1f}')} | "
            f"{col('fp', '{:.1f}')} | {col('fn', '{:.1f}')} | {col('f1')} | {col('neg', '{:.1f}')} |"
        )
    md = "\n".join(lines) + "\n"
    print(md)
    if not args.quick:
        write_doc(args.out, "Whole-tissue A/B of the second-stage variants", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
