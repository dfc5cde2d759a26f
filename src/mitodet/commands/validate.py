"""``mitodet validate``: whole-field accuracy of a model, per lab, and its operating threshold."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mitodet.commands._common import fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="whole-field recall, false positives per mm2 and F1 per lab (and the threshold rule)",
        description="Run a model on label-complete tissue (AMi-Br crops of the slides its training held out; "
        "the MITOS-ATYPIA-14 frames through the whole-image path) and report, per lab and scanner, "
        "recall, false positives per mm2 and the F1 a user would see on tissue of a stated mitotic "
        "density. See mitodet.evaluation.wholefield for the method.",
    )
    p.add_argument("--model", default="default", help="'default' (the bundled model) or a model folder")
    p.add_argument("--no-second-stage", action="store_true", help="run the first stage (the detector) alone")
    p.add_argument("--data", help="data spec ('shared' or a JSON file); default: the one the model was trained on")
    p.add_argument(
        "--split",
        choices=("val", "all"),
        default="val",
        help="'val' (default): only the slides the detector's training held out; 'all': every slide",
    )
    p.add_argument("--labs", nargs="+", help="only these lab groups (e.g. midog21-aperio-cs2 tupac16)")
    p.add_argument(
        "--density",
        type=float,
        default=None,
        help="mitoses per mm2 of the tissue the F1 is stated for (default 10; see the docs)",
    )
    p.add_argument("--threshold", type=float, help="score threshold to report at (default: the model's)")
    p.add_argument("--no-frames", action="store_true", help="skip the full frames of the data spec")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, help="also write the table as Markdown to this file")
    p.add_argument(
        "--write-threshold",
        action="store_true",
        help="store the threshold that maximises whole-field F1 (all labs pooled) as the model's "
        "operating threshold (the second stage's when it is on, else the detector's)",
    )
    p.add_argument(
        "--snapshots",
        type=Path,
        metavar="RUN",
        help="pick the checkpoint: validate every RUN/snapshots/it* (first stage, no frames) and copy "
        "the one with the best whole-field F1 to RUN/model-wholefield, its threshold set",
    )
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    return fail("validate", msg)


def run(args: argparse.Namespace) -> int:
    from mitodet.evaluation import wholefield as W

    density = W.DEFAULT_DENSITY_PER_MM2 if args.density is None else args.density
    if not density > 0:
        return _fail(f"--density must be > 0 mitoses per mm2, got {args.density}")
    from mitodet.checks import check_threshold

    try:
        check_threshold(args.threshold, "--threshold")
    except ValueError as exc:
        return _fail(str(exc))
    if args.threads is not None:
        if args.threads < 1:
            return _fail(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.snapshots is not None:
        return _pick_snapshot(args, density)
    try:
        result = validate(
            args.model,
            second_stage=not args.no_second_stage,
            data=args.data,
            split=args.split,
            labs=args.labs,
            density=density,
            threshold=args.threshold,
            frames=not args.no_frames,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    if args.write_threshold:
        best = result["rows"][-1]["best_threshold"]
        write_threshold(
            result["model"],
            best,
            second_stage=result["second_stage"],
            rule=f"whole-field F1 at {density:g} mitoses/mm2, {args.split} slides, all labs pooled",
        )
        print(f"operating threshold {best:.4f} written to {result['model']}", file=sys.stderr)
    md = to_markdown(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
    print(json.dumps(result, indent=2) if args.json else md)
    return 0


def write_threshold(model_dir, threshold: float, second_stage: bool, rule: str) -> None:
    """Store ``threshold`` as the operating threshold of the model folder (atomic write)."""
    from mitodet.config import save_json

    folder = Path(model_dir) / ("rescorer" if second_stage else "")
    path = folder / "config.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    key = "rescorer" if second_stage else "model"
    doc[key]["threshold" if second_stage else "score_threshold"] = round(float(threshold), 4)
    doc.setdefault("extra", {})["threshold_rule"] = rule
    save_json(doc, path)


def _pick_snapshot(args: argparse.Namespace, density: float) -> int:
    import shutil

    snaps = sorted(p for p in (args.snapshots / "snapshots").glob("it*") if (p / "config.json").is_file())
    if not snaps:
        return _fail(f'{args.snapshots}/snapshots holds no model: train with "snapshots": true in the config')
    run_cfg = args.snapshots / "config.json"
    data = args.data
    run_doc = json.loads(run_cfg.read_text(encoding="utf-8")) if run_cfg.is_file() else {}
    if data is None:
        data = run_doc.get("data")
    # a leave-one-lab-out run's held-out labs choose neither its checkpoint nor its threshold
    exclude = tuple(run_doc.get("train", {}).get("exclude_labs", ()))
    if exclude:
        print(f"labs {list(exclude)} held out of the run: not used to choose", file=sys.stderr)
    scores = []
    for snap in snaps:
        try:
            res = validate(
                snap,
                second_stage=False,
                data=data,
                split="val",
                labs=args.labs,
                density=density,
                frames=False,
                progress=not args.no_progress,
                exclude_labs=exclude,
            )
        except (FileNotFoundError, ValueError) as exc:
            return _fail(str(exc))
        row = res["rows"][-1]
        scores.append((row["best_f1"], snap.name, snap, row["best_threshold"]))
        print(
            f"{snap.name}: best whole-field F1@{density:g} {row['best_f1']:.3f} at threshold "
            f"{row['best_threshold']:.3f} (recall {row['recall']:.3f} at the stored threshold)"
        )
    f1, name, snap, thr = max(scores)
    dest = args.snapshots / "model-wholefield"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(snap, dest)
    if run_cfg.is_file():
        shutil.copy(run_cfg, dest / "train_config.json")
    write_threshold(
        dest,
        thr,
        second_stage=False,
        rule=f"checkpoint {name} and threshold by whole-field F1 at {density:g} mitoses/mm2 (val slides"
        + (f", without the held-out labs {list(exclude)})" if exclude else ")"),
    )
    print(f"chosen: {name} (whole-field F1@{density:g} {f1:.3f}, threshold {thr:.4f}) -> {dest}")
    return 0


def validate(
    model="default",
    second_stage: bool = True,
    data=None,
    split: str = "val",
    labs=None,
    density: float = 10.0,
    threshold: float | None = None,
    frames: bool = True,
    progress: bool = True,
    exclude_labs=(),
) -> dict:
    """The whole-field validation of ``model`` as a JSON-able dict (see :func:`run`)."""
    from mitodet.data.spec import load_spec, training_data
    from mitodet.evaluation import wholefield as W
    from mitodet.inference.predictor import Detector, resolve_model_dir

    model_dir = resolve_model_dir(model)
    det = Detector.load(model_dir, second_stage=second_stage)
    spec = load_spec(data if data is not None else training_data(model_dir))
    records = W.validation_records(spec, split, labs, exclude=exclude_labs)
    if not records:
        raise ValueError(
            f"the data spec gives no label-complete {split} images"
            + (f" outside the held-out labs {list(exclude_labs)}" if exclude_labs else "")
        )
    thr = det.threshold if threshold is None else float(threshold)
    res = W.collect(det, records, progress=progress)
    rows = W.table_rows(res, thr, densities=sorted({*W.REPORT_DENSITIES, density}), density=density)
    frame = None
    if frames and spec.full_frames:
        fr = W.full_frame_results(det, spec)
        frame = W.frame_row(fr, thr) if fr else None
    return {
        "model": str(model_dir),
        "second_stage": det.rescorer is not None,
        "threshold": thr,
        "density_per_mm2": density,
        "split": split,
        "rows": rows,
        "frames": frame,
    }


def to_markdown(result: dict) -> str:
    d = result["density_per_mm2"]
    dens = sorted({float(k.split("@")[1]) for k in result["rows"][0] if k.startswith("f1@")})
    head = (
        "| lab | crops | mitoses | mm2 | recall | FP/mm2 | P@{d:g} | F1@{d:g} | ".format(d=d)
        + " | ".join(f"F1@{x:g}" for x in dens if x != d)
        + " | best thr | best F1@{:g} |".format(d)
    )
    lines = [
        f"Model `{result['model']}`, second stage {'on' if result['second_stage'] else 'off'}, threshold "
        f"{result['threshold']:.3f}, {result['split']} slides; F1@D = F1 on tissue of D mitoses per mm2.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['lab']} | {r['images']} | {r['mitoses']} | {r['area_mm2']:.2f} | {r['recall']:.3f} | "
            f"{r['fp_per_mm2']:.1f} | {r['precision_at_density']:.3f} | {r['f1_at_density']:.3f} | "
            + " | ".join(f"{r[f'f1@{x:g}']:.3f}" for x in dens if x != d)
            + f" | {r['best_threshold']:.3f} | {r['best_f1']:.3f} |"
        )
    f = result.get("frames")
    if f:
        lines += [
            "",
            f"Full frames ({f['lab']}, {f['images']} frames, {f['mitoses']} mitoses, {f['area_mm2']:.3f} mm2, "
            f"through `Detector.detect_path`): P {f['precision']:.3f}, R {f['recall']:.3f}, F1 {f['f1']:.3f} "
            f"(TP {f['tp']}, FP {f['fp']}, FN {f['fn']}), {f['fp_per_mm2']:.1f} FP/mm2, look-alikes rejected "
            f"{f['look_alikes_rejected']} of {f['look_alikes']}.",
        ]
    return "\n".join(lines) + "\n"
