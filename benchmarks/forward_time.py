"""Parameter count and CPU forward time per 600x600 image of the detector presets.

Usage: python benchmarks/forward_time.py [--presets fpn glb-fpn rdlm rdlm-cpu] [--threads 2]
       [--repeats 5] [--size 600] [--quick]
Prints a markdown table. Random weights: speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from mitodet.models import build_detector
from mitodet.models.builder import count_parameters


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["fpn", "glb-fpn", "rdlm", "rdlm-cpu"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=600)
    ap.add_argument("--quick", action="store_true", help="2 repeats at 256 px (a smoke run, < 1 min)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.size = 2, 256
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = [torch.rand(3, args.size, args.size)]
    print(
        f"CPU forward time per {args.size}x{args.size} image, {args.threads} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}; median of {args.repeats} after 1 warm-up"
    )
    print()
    print("| preset | parameters | forward s/image |")
    print("|---|---:|---:|")
    for name in args.presets:
        model = build_detector(name).eval()
        with torch.inference_mode():
            model(x)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t)
        print(f"| {name} | {count_parameters(model):,} | {statistics.median(times):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
