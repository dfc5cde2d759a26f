"""Detector A/B: first-stage whole-field accuracy of training runs, per arm, mean +- sd over seeds.

Usage: python benchmarks/mining_ab.py --arm control=runs/ft-control-s0,runs/ft-control-s1
       --arm mined=runs/ft-mined-s0,runs/ft-mined-s1 [--threads 2] [--doc docs/benchmarks/X.md] [--quick]

Made for the hard-negative mining A/B (``configs/experiments/rdlm-cpu-finetune-{control,mined}.json``:
the bundled detector fine-tuned under the same budget, with and without its own mined false
positives as look-alike centres), but it reads any detector runs. Per run (``RUN/model``, the
first stage alone):

- whole-field validation (:mod:`mitodet.evaluation.wholefield`): the label-complete crops of the
  validation slides, recall / FP per mm2 / F1 at 10 mitoses per mm2 at the threshold that
  maximises that F1 there (chosen per run on these crops, so optimistic, equally for every arm);
- at that threshold, the MITOS-ATYPIA-14 frames (a lab no run trained on) through the
  whole-image path, and the recall on the AtNorM mitosis crops (TCGA, MIDOG++: labs the
  detector never trained on; no negatives, recall only).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, environment_line, mean_sd, write_doc  # noqa: E402


def measure(run: Path, density: float, quick: bool = False) -> dict:
    from mitodet.data.spec import load_spec, training_data
    from mitodet.engine.rescorer_train import RescorerTrainConfig, split_records
    from mitodet.evaluation import wholefield as W
    from mitodet.inference.predictor import Detector

    model = run / "model" if (run / "model" / "config.json").is_file() else run
    det = Detector.load(model, second_stage=False)
    spec = load_spec(training_data(model))
    val = W.validation_records(spec, "val")
    # the AtNorM crops come in through the second stage's positive sources (the detector's spec has none)
    atnorm = [r for r in sum(split_records(spec, RescorerTrainConfig()), []) if W.lab_group(r) in ("tcga", "midogpp")]
    if quick:
        val, atnorm = val[:12], atnorm[:12]
    sw = W.sweep(W.collect(det, val, progress=False))
    thr = W.best_threshold(sw, density)
    at = sw.at(thr, density)
    frames = W.frame_row(W.full_frame_results(det, spec), thr) if spec.full_frames and not quick else None
    out = {
        "run": str(run),
        "threshold": thr,
        "recall": at["recall"],
        "fp_per_mm2": at["fp_per_mm2"],
        "f1": at["f1_at_density"],
        "atnorm_recall": W.sweep(W.collect(det, atnorm, progress=False)).at(thr)["recall"] if atnorm else None,
    }
    if frames:
        out.update(frames_f1=frames["f1"], frames_tp=frames["tp"], frames_fp=frames["fp"], frames_fn=frames["fn"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", action="append", required=True, metavar="NAME=RUN[,RUN...]", help="one arm's runs")
    ap.add_argument("--density", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--doc", type=Path, default=None, help="also write the table to this Markdown file")
    ap.add_argument("--quick", action="store_true", help="12 crops per set, no frames: checks the plumbing")
    args = ap.parse_args(argv)
    arms = []
    for a in args.arm:
        name, _, runs = a.partition("=")
        paths = [Path(p) for p in runs.split(",") if p]
        missing = [
            p for p in paths if not (p / "model" / "config.json").is_file() and not (p / "config.json").is_file()
        ]
        if not name or not paths or missing:
            ap.error(f"--arm {a!r}: give NAME=RUN[,RUN...] with trained runs (no model in {missing})")
        arms.append((name, paths))
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.time()
    lines = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {environment_line(args.threads)}",
        "",
        f"First stage alone. Threshold per run: the best whole-field F1 at {args.density:g} mitoses/mm2 on the "
        "validation slides' label-complete crops (optimistic, equally for every arm); the frames and AtNorM at it.",
        "",
        "| arm | runs | threshold | recall | FP/mm2 | F1@D | frames F1 (TP, FP, FN per run) | AtNorM recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, paths in arms:
        rows = []
        for p in paths:
            rows.append(measure(p, args.density, args.quick))
            print(rows[-1], flush=True)
        get = lambda k: mean_sd([r.get(k) for r in rows])  # noqa: E731
        counts = "; ".join(f"{r['frames_tp']}, {r['frames_fp']}, {r['frames_fn']}" for r in rows if "frames_tp" in r)
        lines.append(
            f"| {name} | {len(rows)} | {get('threshold')} | {get('recall')} | {get('fp_per_mm2')} | {get('f1')} | "
            f"{get('frames_f1')} ({counts or '-'}) | {get('atnorm_recall')} |"
        )
    lines += ["", f"Total {(time.time() - t0) / 60:.1f} min."]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_doc(args.doc, "Detector A/B: first-stage whole-field accuracy per arm", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
