"""``mitodet evaluate``: compare detected mitoses with ground truth (precision, recall, F1)."""

from __future__ import annotations

import argparse
import json

from mitodet.commands._common import fail

DESCRIPTION = """\
Compare detected mitotic figures (PRED) with annotated ones (GT) and report precision,
recall and F1. A detection counts as correct (true positive) when it lies within the
radius of an annotated mitosis; each detection can match one annotation only. Counts are
summed over all images before P/R/F1 are computed.

GT and PRED can each be: a CSV with header image,x,y[,score][,label] (or x,y,score for one
image, as written by 'mitodet detect'); a MITOS-ATYPIA-14 folder or *_mitosis.csv; a MIDOG
JSON (COCO-like, or grand-challenge "Multiple points" in millimetres); or a folder of such
files. Images are paired by file name without extension. Hard negatives (label 0) are ignored.
"""

EPILOG = """\
radius: 8 um is the MITOS-ATYPIA-14 / ICPR 2012 criterion (the RDLM paper's); MIDOG and
TUPAC16 use 7.5 um, the default when GT is a MIDOG JSON.
modes: 'optimal' finds the largest number of correct detections possible; 'midog_greedy'
reproduces the MIDOG challenge's scoring (evalutils score_detection), for comparison with
published MIDOG results.
examples:
  mitodet evaluate --gt data/mitos_atypia14 --pred preds/ --radius-um 8
  mitodet evaluate --gt MIDOG++.json --pred preds.csv --mpp 0.25 --mode midog_greedy --json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score detections against ground truth (precision, recall, F1)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--gt",
        required=True,
        metavar="PATH",
        help="ground-truth points (file or folder; a detect output folder means the reviews `mitodet view` saved in it)",
    )
    p.add_argument("--pred", required=True, metavar="PATH", help="detected points (file or folder)")
    p.add_argument(
        "--mpp",
        type=float,
        default=None,
        metavar="UM_PER_PX",
        help="pixel size in micrometres per pixel for every image (overrides what the files "
        "say; needed when they say nothing, e.g. MIDOG or a plain CSV)",
    )
    p.add_argument(
        "--radius-um",
        type=float,
        default=None,
        metavar="UM",
        help="largest distance between a detection and its annotation, in micrometres "
        "(default 8; 7.5 for MIDOG ground truth)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="only count detections with score >= T (default: all detections)",
    )
    p.add_argument(
        "--mode",
        choices=("optimal", "midog_greedy"),
        default="optimal",
        help="matching rule (default: optimal)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--per-image", action="store_true", help="also list every image")
    p.set_defaults(func=run)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _print_table(rep, notes: list[str]) -> None:
    thr = "all detections" if rep.threshold is None else f"score >= {rep.threshold:g}"
    print(
        f"mitodet evaluate: {rep.n_images} images, {rep.n_gt} annotated mitoses, "
        f"{rep.n_pred} detections ({thr}); radius {rep.radius_um:g} um, {rep.mode} matching"
    )
    cols = ("images", "TP", "FP", "FN")
    print(f"{'':24s} " + " ".join(f"{c:>6s}" for c in cols) + f" {'precision':>9s} {'recall':>7s} {'F1':>6s}")

    def line(label, n, r):
        print(f"{label[:24]:24s} {n:6d} {r.tp:6d} {r.fp:6d} {r.fn:6d} {r.precision:9.3f} {r.recall:7.3f} {r.f1:6.3f}")

    if len(rep.domains) > 1 or (rep.domains and rep.domains[0].domain):
        for d in rep.domains:
            line(d.domain or "(no domain)", d.n_images, d)
    line("pooled", rep.n_images, rep)
    print(
        f"best F1 {_fmt(rep.best_f1)} at threshold {_fmt(rep.best_threshold)}; "
        f"average precision {_fmt(rep.average_precision)}"
    )
    for n in notes:
        print(f"note: {n}")


def _print_images(rep) -> None:
    print(f"{'image':24s} {'GT':>5s} {'det':>5s} {'TP':>5s} {'FP':>5s} {'FN':>5s} {'F1':>6s}")
    for r in rep.images:
        print(f"{r.name[:24]:24s} {r.n_gt:5d} {r.n_pred:5d} {r.tp:5d} {r.fp:5d} {r.fn:5d} {r.f1:6.3f}")


def _fail(msg: str) -> int:
    return fail("evaluate", msg)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mitodet.checks import check_mpp
    from mitodet.data.records import DataFormatError
    from mitodet.evaluation.io import load_points
    from mitodet.evaluation.pairing import GroundTruthError, evaluate_point_sets

    if args.mpp is not None:
        try:
            check_mpp(args.mpp, "--mpp")  # the range detect accepts too
        except ValueError as exc:
            return _fail(str(exc))
    if args.radius_um is not None and not (np.isfinite(args.radius_um) and args.radius_um > 0):
        return _fail(f"--radius-um must be a positive number of micrometres, got {args.radius_um}")
    try:
        gt = load_points(args.gt, reviewed=True)
        pred = load_points(args.pred)
    except DataFormatError as exc:
        return _fail(str(exc))
    try:
        rep, notes = evaluate_point_sets(
            gt, pred, mpp=args.mpp, radius_um=args.radius_um, threshold=args.threshold, mode=args.mode
        )
    except GroundTruthError as exc:
        return _fail(f"{args.gt}: {exc}")
    except ValueError as exc:
        return _fail(str(exc))

    if args.json:
        out = rep.to_dict(images=True)
        out["notes"] = notes
        print(json.dumps(out))
    else:
        if args.per_image:
            _print_images(rep)
        _print_table(rep, notes)
    return 0
