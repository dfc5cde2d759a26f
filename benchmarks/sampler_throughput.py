"""Training-crop throughput of the mosaic sampler on the real data (crops per second).

Usage: python benchmarks/sampler_throughput.py [--crops 2000] [--crop-px 112] [--mpp 0.5] [--quick]
Needs ../shared/data (or MITODET_DATA). One process, as the training loop uses it.
"""

from __future__ import annotations

import argparse
import time

from mitodet.data.sampler import MosaicDataset, MosaicSampler, SamplerConfig, load_sources, split_by_slide
from mitodet.data.spec import load_spec, read_sources


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=2000)
    ap.add_argument("--crop-px", type=int, default=112)
    ap.add_argument("--mpp", type=float, default=0.5)
    ap.add_argument("--quick", action="store_true", help="200 crops")
    args = ap.parse_args(argv)
    n = 200 if args.quick else args.crops
    spec = load_spec("shared")
    t = time.perf_counter()
    recs = [r for r in read_sources(spec.sources, spec.base) if not r.extra.get("position_unknown")]
    train, _ = split_by_slide(recs, spec.val_fraction, spec.split_seed)
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    sources = load_sources(train, args.mpp)
    t_load = time.perf_counter() - t
    ds = MosaicDataset(MosaicSampler(sources, SamplerConfig(crop_px=args.crop_px), box_px=12.5 / args.mpp), n)
    t = time.perf_counter()
    for i in range(n):
        ds[i]
    dt = time.perf_counter() - t
    print(
        f"records read: {len(recs)} in {t_read:.2f} s; {len(sources)} training images decoded and resampled "
        f"to {args.mpp} um/px in {t_load:.2f} s"
    )
    print(
        f"sampler: {n} crops of {args.crop_px}x{args.crop_px} px (augmented, with targets) in {dt:.2f} s "
        f"= {n / dt:.0f} crops/s on one process"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
