"""Translation stability: how much a mitosis's score and a frame's count change when the tile grid shifts.

Usage: python benchmarks/shift_stability.py [--model default|DIR] [--shifts 16] [--no-second-stage]
       [--threads 2] [--quick] [--doc docs/benchmarks/shift_stability.md]

Each MITOS-ATYPIA-14 frame is shifted by random offsets (dx, dy in [0, 420) px, the same
offsets for every frame and variant, seed 0; the frame is padded by mirroring on the top
and left), which moves the tissue against the tile grid, and run through
``Detector.detect_array``. Per labelled mitosis: the score of the best detection within
8 um (0 when none). Printed: per mitosis the range and standard deviation of that score over
the shifts, the mean of those, and per frame the range of the count at the operating
threshold (detections on the original frame only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, environment_line, write_doc  # noqa: E402

MAX_SHIFT = 420


def run(model: str, data: Path, shifts: int, second_stage: bool, max_frames: int | None = None) -> dict:
    from mitodet.data.images import read_rgb
    from mitodet.data.readers import read_mitos_atypia14
    from mitodet.inference.predictor import Detector

    det = Detector.load(model, second_stage=second_stage)
    rng = np.random.default_rng(0)
    offsets = [(0, 0)] + [tuple(int(v) for v in rng.integers(0, MAX_SHIFT, 2)) for _ in range(shifts - 1)]
    frames = read_mitos_atypia14(data / "mitos_atypia14", require_images=True)[:max_frames]
    per_mitosis, counts = [], {}
    for rec in frames:
        img = read_rgb(rec.image)
        radius = 8.0 / rec.mpp
        mit = list(rec.mitoses)
        scores = np.zeros((len(offsets), len(mit)))
        n = []
        for k, (dx, dy) in enumerate(offsets):
            shifted = np.pad(img, ((dy, 0), (dx, 0), (0, 0)), mode="reflect")
            found = det.detect_array(shifted, rec.mpp, threshold=0.0)
            pts = found.points - [dx, dy]
            for j, m in enumerate(mit):
                d = np.hypot(*(pts - m).T) if len(pts) else np.zeros(0)
                near = found.scores[d <= radius] if len(d) else np.zeros(0)
                scores[k, j] = near.max() if len(near) else 0.0
            inside = (pts[:, 0] >= 0) & (pts[:, 1] >= 0) if len(pts) else np.zeros(0, bool)
            n.append(int(((found.scores >= det.threshold) & inside).sum()))
        counts[rec.image.stem] = n
        for j, m in enumerate(mit):
            per_mitosis.append(
                {
                    "frame": rec.image.stem,
                    "x": float(m[0]),
                    "y": float(m[1]),
                    "min": float(scores[:, j].min()),
                    "max": float(scores[:, j].max()),
                    "sd": float(scores[:, j].std()),
                    "kept": int((scores[:, j] >= det.threshold).sum()),
                }
            )
    return {
        "model": str(det.model_dir),
        "second_stage": det.rescorer is not None,
        "threshold": det.threshold,
        "offsets": offsets,
        "mitoses": per_mitosis,
        "counts": counts,
        "mean_sd": float(np.mean([m["sd"] for m in per_mitosis])) if per_mitosis else float("nan"),
        "mean_range": float(np.mean([m["max"] - m["min"] for m in per_mitosis])) if per_mitosis else float("nan"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", type=Path, default=None, help="default: $MITODET_DATA or ../shared/data")
    ap.add_argument("--shifts", type=int, default=16)
    ap.add_argument("--no-second-stage", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="one frame, 2 shifts")
    ap.add_argument("--doc", type=Path, default=None, help="also write the table to this Markdown file")
    args = ap.parse_args(argv)
    import torch

    from mitodet.data.spec import default_data_root

    torch.set_num_threads(args.threads)
    data = args.data or default_data_root()
    res = run(
        args.model,
        data,
        2 if args.quick else args.shifts,
        not args.no_second_stage,
        max_frames=1 if args.quick else None,
    )
    lines = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {environment_line(args.threads)}",
        "",
        f"Model `{res['model']}`, second stage {'on' if res['second_stage'] else 'off'}, threshold "
        f"{res['threshold']:.3f}; {len(res['offsets'])} shifts by (dx, dy) in [0, {MAX_SHIFT}) px.",
        "",
        "| frame | mitosis (x, y) | score min | score max | sd | shifts kept at threshold |",
        "|---|---|---|---|---|---|",
    ]
    for m in res["mitoses"]:
        lines.append(
            f"| {m['frame']} | ({m['x']:.0f}, {m['y']:.0f}) | {m['min']:.3f} | {m['max']:.3f} | {m['sd']:.3f} | "
            f"{m['kept']} of {len(res['offsets'])} |"
        )
    lines += ["", f"Mean over mitoses: score sd {res['mean_sd']:.3f}, score range {res['mean_range']:.3f}.", ""]
    lines += [f"- {frame}: count at threshold {min(n)}-{max(n)} over the shifts" for frame, n in res["counts"].items()]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_doc(args.doc, "Stability of scores and counts under tile-grid shifts", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
