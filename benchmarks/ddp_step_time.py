"""Training step time: one process against DistributedDataParallel over N processes.

Both runs are the real command (``mitodet train``, and ``torchrun --standalone
--nproc-per-node N -m mitodet.cli train``) on the same recipe, the same global batch and
the same total number of CPU threads (one process with T threads against N processes with
T / N threads each), on a SYNTHETIC data set written to a temporary folder (timing input
only). The time of a step is read from the training log (``elapsed_s`` of consecutive
iterations, rank 0's clock); the first ``--warmup`` steps are left out, and the median and
mean of the rest are shown.

On one machine DDP over the CPU cannot beat one process using the same cores unless the
single process leaves them idle (small convolutions and the Python/RoI parts of a
detection step scale poorly over threads); it pays a gradient all-reduce over gloo every
step. The table states the size of that all-reduce.

Usage: python benchmarks/ddp_step_time.py [--preset rdlm-cpu] [--crop-px 112] [--batch-size 8]
       [--iterations 25] [--warmup 5] [--nproc 2] [--threads 2] [--work DIR] [--out FILE] [--quick]
--quick: crop 64, global batch 2, 6 iterations, no `single-small` or `single-glibc-defaults` row (under a minute), writes no docs.

Rows: ``single`` (1 process x T threads), ``single-glibc-defaults`` (the same with
``MITODET_MALLOC=system``: what :func:`mitodet.runtime.keep_freed_memory` gains in training),
``single-small`` (1 process x T/N threads: what one rank has, alone) and ``ddp`` (N processes
x T/N threads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DOCS, ROOT, command_line, environment_line, write_doc


def write_data(root: Path, n_images: int = 8, side: int = 256) -> Path:
    """SYNTHETIC fields as PNGs + a points CSV + a spec without a validation split."""
    import numpy as np
    from PIL import Image

    from mitodet.synthetic import synthetic_scene

    root.mkdir(parents=True, exist_ok=True)
    rows = ["image,x,y,label"]
    for i in range(n_images):
        img, pts, lab = synthetic_scene((side, side), n_mitoses=3, n_lookalikes=3, mpp=0.5, seed=i)
        Image.fromarray(np.asarray(img)).save(root / f"s{i}.png")
        rows += [f"s{i}.png,{x:.2f},{y:.2f},{int(c)}" for (x, y), c in zip(pts, lab)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    spec = root / "spec.json"
    spec.write_text(
        json.dumps({"sources": [{"reader": "points_csv", "path": "labels.csv", "mpp": 0.5}], "val_fraction": 0.0})
    )
    return spec


def step_times(out: Path, warmup: int) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    el = {r["iteration"]: r["elapsed_s"] for r in rows if r.get("kind") == "train"}
    its = sorted(i for i in el if i > warmup)
    return [el[i] - el[i - 1] for i in its if i - 1 in el]


def run_training(cmd: list[str], threads_per_process: int, extra_env: dict | None = None) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_process), PYTHONWARNINGS="ignore")
    env.pop("MITODET_MALLOC", None)
    env.update(extra_env or {})
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t


def trainable_parameters(preset: str, overrides: dict) -> int:
    from mitodet.engine.train import resolve_model_config, train_config_from_dict
    from mitodet.models.builder import build_detector

    cfg = train_config_from_dict({"preset": preset, "model_overrides": overrides})
    model = build_detector(resolve_model_config(cfg))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="rdlm-cpu")
    ap.add_argument("--norm", default="frozen_bn", help="model_overrides norm (the shipped model: frozen_bn)")
    ap.add_argument("--crop-px", type=int, default=112)
    ap.add_argument("--batch-size", type=int, default=8, help="global batch (the shipped recipe's)")
    ap.add_argument("--iterations", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    ap.add_argument("--nproc", type=int, default=2, help="DDP processes")
    ap.add_argument("--threads", type=int, default=2, help="total torch threads, the same for both runs")
    ap.add_argument("--work", type=Path, default=None, help="folder for data and runs (default: a temporary one)")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown file to write (full mode default: {DOCS / 'ddp_step_time.md'}; quick: none)",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: crop 64, batch 2, 6 iterations; no docs")
    args = ap.parse_args(argv)
    if args.quick:
        args.crop_px, args.batch_size, args.iterations, args.warmup = 64, 2, 6, 2
    elif args.out is None:
        args.out = DOCS / "ddp_step_time.md"
    if args.batch_size % args.nproc:
        ap.error(f"--batch-size {args.batch_size} must be divisible by --nproc {args.nproc}")
    if args.threads % args.nproc:
        ap.error(f"--threads {args.threads} must be divisible by --nproc {args.nproc} (equal cores for both runs)")
    if args.iterations <= args.warmup + 1:
        ap.error("--iterations must exceed --warmup + 1")
    per_rank_threads = args.threads // args.nproc

    tmp = tempfile.TemporaryDirectory(prefix="ddp_step_time_") if args.work is None else None
    work = Path(tmp.name) if tmp else args.work
    spec = write_data(work / "data")
    overrides = {"norm": args.norm}
    train = {
        "preset": args.preset,
        "model_overrides": overrides,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "lr": 0.01,
        "warmup_iters": 0,
        "val_every": 10**6,
        "checkpoint_every": 10**6,
        "log_every": 1,
        "seed": 0,
        "sampler": {"crop_px": args.crop_px},
    }
    plan = [("single", 1, args.threads, {}), ("ddp", args.nproc, per_rank_threads, {})]
    if not args.quick and per_rank_threads != args.threads:  # one rank's share of the cores, alone
        plan.insert(1, ("single-small", 1, per_rank_threads, {}))
    if not args.quick:  # the same as `single` with glibc's default allocator (see mitodet.runtime)
        plan.insert(1, ("single-glibc-defaults", 1, args.threads, {"MITODET_MALLOC": "system"}))
    runs = {}
    for name, nproc, threads, extra_env in plan:
        cfg = work / f"{name}.json"
        cfg.write_text(json.dumps({"train": {**train, "threads": threads}, "data": str(spec)}))
        out = work / name
        cli = ["train", "--config", str(cfg), "--out", str(out), "--no-resume", "--no-progress"]
        if nproc == 1:
            cmd = [sys.executable, "-m", "mitodet.cli", *cli]
        else:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                str(nproc),
                "-m",
                "mitodet.cli",
                *cli,
            ]
        print(f"running {name}: {nproc} process(es) x {threads} thread(s) ...", flush=True)
        wall = run_training(cmd, threads, extra_env)
        runs[name] = (nproc, threads, step_times(out, args.warmup), wall)

    n_params = trainable_parameters(args.preset, overrides)
    mb = n_params * 4 / 2**20
    lines = [
        f"Environment: {environment_line(args.threads)}.",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Recipe: preset `{args.preset}` (norm {args.norm}), crop {args.crop_px} px, global batch "
        f"{args.batch_size}, {args.iterations} iterations, the first {args.warmup} left out; SYNTHETIC data.",
        "",
        "| run | processes x threads | images / process / step | median s / step | mean s / step | images / s "
        "| x vs single | whole command s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = statistics.median(runs["single"][2])
    for name, (nproc, threads, times, wall) in runs.items():
        med, mean = statistics.median(times), statistics.fmean(times)
        lines.append(
            f"| {name} | {nproc} x {threads} | {args.batch_size // nproc} | {med:.3f} | {mean:.3f} | "
            f"{args.batch_size / med:.1f} | {base / med:.2f} | {wall:.1f} |"
        )
    lines += [
        "",
        "x > 1: faster than `single`. `single-glibc-defaults` is `single` with `MITODET_MALLOC=system` (glibc's "
        "default allocator thresholds instead of mitodet's `keep_freed_memory`). Each step, DDP all-reduces the "
        "gradients of the "
        f"{n_params:,} trainable parameters ({mb:.1f} MiB in float32, in buckets of at most 25 MiB); a ring "
        f"all-reduce sends about 2 (N-1)/N x {mb:.1f} MiB = {2 * (args.nproc - 1) / args.nproc * mb:.1f} MiB per "
        "process per step, plus one 7-float all-reduce (the 4 loss terms, their sum, a non-finite count and a "
        "stop flag).",
    ]
    if "measured under load" in lines[0]:
        lines += [
            "",
            "**Measured under load**: other processes were using the cores, so all times are "
            "pessimistic and their ratio is only indicative; re-run on an idle machine.",
        ]
    print("\n".join(lines), flush=True)
    write_doc(args.out, "DDP training step time on CPU", "\n".join(lines))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
