"""Full-frame validation: a model on the MITOS-ATYPIA-14 frames through the whole-image path.

Usage: python benchmarks/full_frames.py [--model default|DIR] [--data ../shared/data]
       [--threshold T] [--flip-tta] [--json] [--threads 2] [--quick]

For every frame of ``<data>/mitos_atypia14`` it runs the same detection path as
``mitodet detect`` (resampling to the model's um/px, tiling with ownership), then matches
the detections at the operating threshold to the labelled mitoses (8 um, optimal
matching), and says for each labelled hard negative (not-mitosis row) whether the model
rejected it (no detection within 8 um). Prints every detection with its score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def run(
    model: str,
    data: Path,
    threshold: float | None,
    flip_tta: bool,
    max_frames: int | None = None,
    second_stage: bool = True,
) -> dict:
    from mitodet.data.images import read_rgb
    from mitodet.data.readers import read_mitos_atypia14
    from mitodet.evaluation.matching import match_points
    from mitodet.evaluation.metrics import evaluate_images
    from mitodet.inference.predictor import Detector

    det = model if isinstance(model, Detector) else Detector.load(model, flip_tta=flip_tta, second_stage=second_stage)
    thr = det.threshold if threshold is None else threshold
    records = read_mitos_atypia14(data / "mitos_atypia14", require_images=True)[:max_frames]
    rows, gts, preds, scores, mpps = [], [], [], [], []
    for rec in records:
        found = det.detect_array(read_rgb(rec.image), rec.mpp, threshold=0.0)
        kept = found.above(thr)
        radius_px = 8.0 / rec.mpp
        m = match_points(rec.mitoses, kept.points, radius_px)
        hn = rec.hard_negatives
        hn_hit = match_points(hn, kept.points, radius_px).matched_gt if len(hn) else np.zeros(0, bool)
        rows.append(
            {
                "frame": rec.image.stem,
                "mitoses": len(rec.mitoses),
                "hard_negatives": len(hn),
                "detections": len(kept.points),
                "tp": m.tp,
                "fp": m.fp,
                "fn": m.fn,
                "hard_negatives_rejected": int((~hn_hit).sum()),
                "detections_list": [
                    {"x": round(float(x), 1), "y": round(float(y), 1), "score": round(float(s), 4), "tp": bool(t)}
                    for (x, y), s, t in zip(kept.points, kept.scores, m.matched_pred)
                ],
                "top_candidates_below_threshold": [round(float(s), 4) for s in found.scores[found.scores < thr][:5]],
            }
        )
        gts.append(rec.mitoses), preds.append(found.points), scores.append(found.scores), mpps.append(rec.mpp)
    rep = evaluate_images(gts, preds, scores, mpps, radius_um=8.0, threshold=thr)
    return {
        "model": str(model),
        "threshold": thr,
        "flip_tta": flip_tta,
        "second_stage": det.rescorer is not None,
        "precision": rep.precision,
        "recall": rep.recall,
        "f1": rep.f1,
        "tp": rep.tp,
        "fp": rep.fp,
        "fn": rep.fn,
        "best_f1_any_threshold": rep.best_f1,
        "best_threshold": rep.best_threshold,
        "hard_negatives_rejected": sum(r["hard_negatives_rejected"] for r in rows),
        "hard_negatives": sum(r["hard_negatives"] for r in rows),
        "frames": rows,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", type=Path, default=None, help="default: $MITODET_DATA or ../shared/data")
    ap.add_argument("--threshold", type=float, default=None, help="default: the model's operating threshold")
    ap.add_argument("--flip-tta", action="store_true")
    ap.add_argument("--no-second-stage", action="store_true", help="the detector alone, at its own threshold")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the first frame only (a smoke run)")
    args = ap.parse_args(argv)
    import torch

    from mitodet.data.spec import default_data_root

    torch.set_num_threads(args.threads)
    res = run(
        args.model,
        args.data or default_data_root(),
        args.threshold,
        args.flip_tta,
        second_stage=not args.no_second_stage,
        max_frames=1 if args.quick else None,
    )
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(
        f"model {res['model']}  threshold {res['threshold']:.3f}  flip TTA {res['flip_tta']}  "
        f"second stage {res['second_stage']}"
    )
    print(
        f"pooled: P {res['precision']:.3f}  R {res['recall']:.3f}  F1 {res['f1']:.3f}  "
        f"(TP {res['tp']}, FP {res['fp']}, FN {res['fn']}); best F1 over thresholds {res['best_f1_any_threshold']:.3f} "
        f"at {res['best_threshold']}"
    )
    print(f"hard negatives rejected: {res['hard_negatives_rejected']} of {res['hard_negatives']}")
    for r in res["frames"]:
        print(
            f"- {r['frame']}: {r['mitoses']} MF, {r['hard_negatives']} hard neg; {r['detections']} detections; "
            f"TP {r['tp']} FP {r['fp']} FN {r['fn']}; hard negatives rejected {r['hard_negatives_rejected']}"
        )
        for d in r["detections_list"]:
            print(f"    ({d['x']:.0f}, {d['y']:.0f}) score {d['score']:.3f} {'TP' if d['tp'] else 'FP'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
