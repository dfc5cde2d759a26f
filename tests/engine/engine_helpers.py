"""Helpers for the training-engine tests: a tiny recipe and the real commands.

Four 96 x 96 synthetic H&E fields at 0.5 um/px (two mitoses and one look-alike each) are
written as PNGs with a generic points CSV (the ``tiny_data`` fixture in conftest.py), so
the tests never need ../shared/data. With ``split_seed`` 1 and ``val_fraction`` 0.3 the
slide ``s2`` is the validation split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tiny_train(**changes) -> dict:
    """A recipe that trains in well under a second per iteration on one CPU thread."""
    cfg = {
        "preset": "rdlm-cpu",
        "model_overrides": {"norm": "frozen_bn"},
        "iterations": 3,
        "batch_size": 2,
        "lr": 0.02,
        "warmup_iters": 0,
        "val_every": 1000,
        "val_crops": 2,
        "checkpoint_every": 1000,
        "log_every": 1,
        "threads": 1,
        "seed": 0,
        "sampler": {"crop_px": 64, "piece_px": [16, 32]},
    }
    cfg.update(changes)
    return cfg


def write_config(path: Path, train: dict, data: Path) -> Path:
    path.write_text(json.dumps({"train": train, "data": str(data)}))
    return path


def mitodet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mitodet.cli", *args]


def torchrun_cmd(nproc: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "mitodet.cli",
        *args,
    ]


def subprocess_env() -> dict[str, str]:
    """This environment without a torchrun job's variables, one thread, quiet warnings."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
