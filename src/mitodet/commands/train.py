"""``mitodet train``: train any preset on any data spec, resumable."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mitodet.commands._common import EXIT_INTERRUPTED, EXIT_STOPPED, fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a detector preset on a data spec (resumable)",
        description="Train a detector. Defaults follow the paper (SGD 0.9, wd 1e-4, lr 1e-3, 20k iterations, "
        "warm-up). Run the same command again after a kill to resume from the last checkpoint.",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="JSON file with a 'train' object (TrainConfig fields) and "
        "optionally 'data' (a data spec object or 'shared')",
    )
    p.add_argument("--preset", help="preset name (see `mitodet presets`); default rdlm")
    p.add_argument("--data", help="data spec: 'shared' (../shared/data) or a JSON spec file")
    p.add_argument("--out", type=Path, required=True, help="output folder (checkpoints, metrics, model/)")
    p.add_argument("--iterations", type=int, help="training steps (default 20,000, the paper's)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="crops per step, over all processes (under torchrun each process takes an equal share)",
    )
    p.add_argument("--lr", type=float, help="peak SGD learning rate (default 1e-3, the paper's)")
    p.add_argument("--warmup-iters", type=int, help="linear learning-rate warm-up steps")
    p.add_argument("--val-every", type=int, help="validate (and keep the best model) every N steps")
    p.add_argument("--val-crops", type=int, help="fixed validation crops of the held-out slides")
    p.add_argument("--checkpoint-every", type=int, help="write a resumable checkpoint every N steps")
    p.add_argument("--seed", type=int, help="seed of sampling, augmentation and initialisation")
    p.add_argument("--threads", type=int, help="torch CPU threads (0 = torch's default)")
    p.add_argument(
        "--weights-backbone",
        help="local ImageNet state-dict file for the encoder, or 'imagenet' "
        "to let torchvision download it (online only)",
    )
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")
    g = p.add_argument_group(
        "distributed (data-parallel) training",
        "Launch with torchrun, e.g. `torchrun --nproc-per-node 4 -m mitodet.cli train ...`; every process "
        "gets its share of each global batch (--batch-size is the global batch and must divide by the "
        "process count) and rank 0 writes all files. See docs/distributed.md.",
    )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="use DistributedDataParallel even with one process (it is on by itself when torchrun "
        "starts more than one, i.e. WORLD_SIZE > 1)",
    )
    g.add_argument(
        "--device",
        help="cpu, cuda or cuda:N (default: the CPU for one process; under torchrun "
        "the GPU LOCAL_RANK when there are GPUs, else the CPU)",
    )
    g.add_argument(
        "--sync-bn",
        action="store_true",
        help="GPUs only: turn trainable BatchNorm (norm 'bn') into SyncBatchNorm, so batch statistics "
        "cover the global batch",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from mitodet.data.spec import load_spec
    from mitodet.engine.train import NonFiniteLossError, TrainConfig, train, train_config_from_dict

    doc: dict = {}
    if args.config:
        if not args.config.is_file():
            return fail("train", f"config file {args.config} not found")
        try:
            doc = json.loads(args.config.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return fail(
                "train",
                f"config file {args.config} is not valid JSON ({exc}); see configs/rdlm-cpu-shared.json for the layout",
            )
        if not isinstance(doc, dict) or not isinstance(doc.get("train", {}), dict):
            return fail(
                "train",
                f'config file {args.config} must be a JSON object {{"train": {{...}}, "data": ...}}; '
                "see configs/rdlm-cpu-shared.json",
            )
    tdict = dict(doc.get("train", {}))
    # every flag named like a TrainConfig field overrides the config file's value
    for f in fields(TrainConfig):
        val = getattr(args, f.name, None)
        if val is not None and not isinstance(val, bool):
            tdict[f.name] = val
    if args.weights_backbone:
        tdict.setdefault("model_overrides", {})
        tdict["model_overrides"] = {**tdict["model_overrides"], "weights_backbone": args.weights_backbone}
    data = args.data or doc.get("data")
    if data is None:
        return fail("train", "no data: pass --data shared, --data SPEC.json, or a config with a 'data' entry")
    try:
        cfg = train_config_from_dict(tdict)
        spec = load_spec(data)
        summary = train(
            cfg,
            spec,
            args.out,
            resume=not args.no_resume,
            progress=not args.no_progress,
            distributed=True if args.distributed else None,
            device=args.device,
            sync_bn=args.sync_bn,
        )
    except NonFiniteLossError as exc:
        return fail("train", str(exc), EXIT_STOPPED)
    except (ValueError, FileNotFoundError) as exc:
        return fail("train", str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 reports for the whole job
    best = summary["best"]
    print(f"done: {summary['iterations']} iterations; model in {summary['model_dir']}")
    if best.get("val_f1", -1) >= 0:
        print(
            f"best validation F1 {best['val_f1']:.3f} (P {best['val_precision']:.3f}, R {best['val_recall']:.3f}) "
            f"at threshold {best['val_threshold']:.3f}, iteration {best['iteration']}"
        )
    return 0
