"""A trained model on its run's validation crops, with and without flip test-time augmentation.

Usage: python benchmarks/validation_tta.py [--run runs/rdlm-cpu-shared] [--model DIR] [--quick]

Rebuilds exactly the validation crops the training run scored (same data spec, split,
sampler settings and seed, from the run's config.json; without --run, from the bundled
model's train_config.json) and prints P / R / F1 / AP at 8 um
for the plain and the flip-TTA pass, each at its own best threshold and at the model's
operating threshold.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--run",
        type=Path,
        default=None,
        help="a mitodet train output folder (default: the bundled model and its train_config.json)",
    )
    ap.add_argument("--model", default=None, help="default: RUN/model, or the bundled model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the first 16 validation crops only (a smoke run)")
    args = ap.parse_args(argv)
    import torch

    from mitodet.data.spec import load_spec
    from mitodet.engine.train import build_datasets, train_config_from_dict
    from mitodet.evaluation.metrics import evaluate_images
    from mitodet.inference.predictor import DEFAULT_MODEL_DIR, Detector

    torch.set_num_threads(args.threads)
    if args.run is not None:
        config_path, model = args.run / "config.json", args.model or args.run / "model"
    else:
        config_path, model = DEFAULT_MODEL_DIR / "train_config.json", args.model or "default"
    if not config_path.is_file():
        raise SystemExit(f"error: {config_path} not found; pass --run a mitodet train output folder")
    doc = json.loads(config_path.read_text())
    cfg = train_config_from_dict(doc["train"])
    if args.quick:
        cfg = dataclasses.replace(cfg, val_crops=16)
    det = Detector.load(model, second_stage=False)  # the network on crops: the first stage alone, its threshold
    _, val, info = build_datasets(cfg, det.config, load_spec(doc["data"]), progress=False)
    gts = [p for _, p in val]
    print(f"{len(val)} validation crops from {info['val_slides']} slides; operating threshold {det.threshold:.3f}")
    print("| pass | best F1 (P / R) at threshold | AP | F1 (P / R) at the operating threshold |")
    print("|---|---|---|---|")
    for tta in (False, True):
        det.flip_tta = tta
        preds, scores = [], []
        for i in range(0, len(val), 8):
            for pts, sc in det.predict_working([im for im, _ in val[i : i + 8]]):
                preds.append(pts)
                scores.append(sc)
        rep = evaluate_images(gts, preds, scores, det.mpp, radius_um=8.0)
        best = evaluate_images(gts, preds, scores, det.mpp, radius_um=8.0, threshold=rep.best_threshold)
        op = evaluate_images(gts, preds, scores, det.mpp, radius_um=8.0, threshold=det.threshold)
        print(
            f"| {'flip TTA' if tta else 'plain'} | {best.f1:.3f} ({best.precision:.3f} / {best.recall:.3f}) at "
            f"{rep.best_threshold:.3f} | {rep.average_precision:.3f} | {op.f1:.3f} ({op.precision:.3f} / "
            f"{op.recall:.3f}) |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
