"""``mitodet presets``: one line per preset with its parameter count and settings."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "presets",
        help="list the detector presets (paper Table 1 rows and CPU twins)",
        description="List every preset: name, parameter count, and the settings that distinguish it.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mitodet.models.builder import build_detector, count_parameters
    from mitodet.models.presets import PAPER_RESULTS, describe, get_preset, list_presets

    torch.set_grad_enabled(False)
    for name in list_presets():
        cfg = get_preset(name)
        n = count_parameters(build_detector(cfg))
        paper = PAPER_RESULTS.get(name)
        tail = f"  paper P/R/F1 {paper[0]:.3f}/{paper[1]:.3f}/{paper[2]:.3f}" if paper else ""
        print(f"{name:14s} {n / 1e6:7.2f}M params  {describe(cfg)}{tail}")
    return 0
