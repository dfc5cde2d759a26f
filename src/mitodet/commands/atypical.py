"""``mitodet train-atypical``: train the atypical-or-normal classifier of detected mitoses."""

from __future__ import annotations

import argparse
from pathlib import Path

from mitodet.commands._common import fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-atypical",
        help="train the atypical / normal classifier of detected mitoses (AMi-Br)",
        description="Train the classifier that calls each detected mitosis atypical or normal, on AMi-Br's training "
        "part (the AMi-Br benchmark's protocol; AtNorM-Br and AtNorM-MD are never seen), and write it into a model "
        "folder's atypical/ with its measured balanced accuracy and AUROC. `benchmarks/atypical.py` runs the "
        "benchmark's five folds.",
    )
    p.add_argument(
        "--config", type=Path, default=None, help="training config JSON (default: configs/atypical.json's values)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the folder holding amibr/, atnorm_br/, atnorm_md/ (default ../shared/data)",
    )
    p.add_argument("--out", type=Path, required=True, help="model folder to write atypical/ into")
    p.add_argument(
        "--weights-backbone", type=Path, default=None, help="ImageNet MobileNetV2 weights (.pth, torchvision's)"
    )
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="train the benchmark's fold models (in --work, resumable) and write them as one averaged classifier",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=Path("runs/atypical-bench"),
        help="fold models for --ensemble (default runs/atypical-bench)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mitodet.data.spec import default_data_root
    from mitodet.engine.atypical_train import load_config, train_atypical

    try:
        cfg = load_config(args.config)
    except ValueError as exc:
        return fail("train-atypical", str(exc))
    root = args.data if args.data is not None else default_data_root()
    missing = [s for s in ("amibr", "atnorm_br", "atnorm_md") if not (Path(root) / s).is_dir()]
    if missing:
        return fail("train-atypical", f"{root} lacks {', '.join(missing)}/; give --data the folder holding them")
    if args.weights_backbone is not None and not args.weights_backbone.is_file():
        return fail("train-atypical", f"{args.weights_backbone}: no such weights file")
    try:
        if args.ensemble:
            from mitodet.engine.atypical_train import train_atypical_ensemble

            info = train_atypical_ensemble(cfg, root, args.out, args.work, args.weights_backbone, not args.no_progress)
        else:
            info = train_atypical(cfg, root, args.out, args.weights_backbone, progress=not args.no_progress)
    except ValueError as exc:
        return fail("train-atypical", str(exc))
    for name, m in info["measured"].items():
        print(f"{name}: balanced accuracy {m['balanced_accuracy']:.4f}, AUROC {m['auroc']:.4f} (n {m['n']})")
    print(f"wrote {Path(args.out) / 'atypical'}")
    return 0
