"""``mitodet train-rescorer``: train the second stage for a detector (mined negatives, whole-field threshold)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mitodet.commands._common import EXIT_INTERRUPTED, fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-rescorer",
        help="train the second stage that re-scores a detector's candidates at native resolution",
        description="Mine the detector's candidates on its training images, train a small ImageNet-initialised "
        "CNN on patches around them (positives: every labelled mitosis; negatives: look-alikes and "
        "candidates away from every mitosis on label-complete images), choose the operating threshold "
        "by whole-field F1 on held-out slides, and write OUT/model: the detector's files plus rescorer/. "
        "Rerunning reuses the mined candidates (OUT/candidates.npz).",
    )
    p.add_argument("--model", default="default", help="the first-stage model folder ('default': the bundled one)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--config", type=Path, help="JSON file of RescorerTrainConfig settings (configs/rescorer.json)")
    p.add_argument("--data", help="data spec; default: the one the detector was trained on")
    p.add_argument(
        "--exclude-labs",
        nargs="+",
        help="lab groups to hold out of training (leave-one-lab-out); the "
        "threshold is then chosen on their validation slides",
    )
    p.add_argument("--epochs", type=int, help="passes over the samples")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--threads", type=int, help="torch CPU threads (0 = torch's default)")
    p.add_argument(
        "--weights-backbone",
        help="local torchvision MobileNetV2 ImageNet state-dict file "
        "(mobilenet_v2-b0353104.pth); without it the CNN starts from random",
    )
    p.add_argument(
        "--candidates",
        type=Path,
        help="the mined-candidates cache to use or fill (default "
        "OUT/candidates.npz); runs of one detector can share it",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    return fail("train-rescorer", msg)


def run(args: argparse.Namespace) -> int:
    from mitodet.engine.rescorer_train import RescorerTrainConfig, train_rescorer

    doc: dict = {}
    if args.config:
        try:
            doc = json.loads(args.config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _fail(f"config file {args.config} not found")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _fail(f"config file {args.config} is not valid JSON ({exc}); see configs/rescorer.json")
        if not isinstance(doc, dict):
            return _fail(f"config file {args.config} must hold a JSON object; see configs/rescorer.json")
    for key in ("epochs", "seed", "threads"):
        if getattr(args, key) is not None:
            doc[key] = getattr(args, key)
    if args.exclude_labs:
        doc["exclude_labs"] = args.exclude_labs
    if args.weights_backbone and not Path(args.weights_backbone).is_file():
        return _fail(f"--weights-backbone {args.weights_backbone} not found")
    try:
        cfg = RescorerTrainConfig.from_dict(doc)
        spec = None
        if args.data:
            from mitodet.data.spec import load_spec

            spec = load_spec(args.data)
        summary = train_rescorer(
            args.model,
            args.out,
            cfg,
            spec=spec,
            weights_backbone=args.weights_backbone,
            progress=not args.no_progress,
            candidates_cache=args.candidates,
        )
    except (FileNotFoundError, ValueError, TypeError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print(
        f"done: second stage in {args.out / 'model'}; threshold {summary['threshold']:.4f} "
        f"({summary['samples']['positives']} positives, {summary['samples']['negatives']} negatives)"
    )
    return 0
