"""``mitodet readout``: the read-out recomputed from reviewed points (the review loop's step 3).

After a pathologist has corrected the detections in QuPath (``docs/review.md``), the signed
numbers come from *their* points, not the model's: per image the count, tissue area, per mm2,
per 10 HPF, the hotspot and the Nottingham score, and the case read-out over the images, exactly
as ``mitodet detect`` computes them from its own detections (the same tissue mask rule: slides
get one, HPF images are all tissue unless ``--tissue on``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mitodet.commands._common import fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "readout",
        help="recompute the read-out (counts, hotspot, score, case) from reviewed points",
        description="Recompute the clinical read-out of images from points reviewed in QuPath (GeoJSON), or any "
        "point file `mitodet evaluate` reads; only points labelled mitosis count.",
    )
    p.add_argument("images", nargs="+", type=Path, help="the images the points belong to")
    p.add_argument("--points", type=Path, required=True, help="the reviewed points: a file or a folder of them")
    p.add_argument("--out", type=Path, default=Path("mitodet-readout"), help="output folder (default mitodet-readout)")
    p.add_argument("--mpp", type=float, default=None, help="um per pixel, when the images do not say")
    p.add_argument("--tissue", choices=("auto", "on", "off"), default="auto", help="tissue mask (as detect's)")
    p.add_argument("--field-area-mm2", type=float, default=0.237, help="area of one HPF (default 0.237)")
    p.add_argument("--case-by", choices=("folder", "file", "all"), default="folder", help="which images form a case")
    p.add_argument("--extrapolate-score", action="store_true", help="a score for cases under 10 HPF, flagged")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mitodet import __version__
    from mitodet.checks import atomic_write_text, check_mpp
    from mitodet.data.records import DataFormatError
    from mitodet.evaluation.io import image_key, load_points
    from mitodet.inference.pipeline import FileResult, FileSummary, describe_result, readout_summary
    from mitodet.inference.predictor import THUMBNAIL_MAX_SIDE, tissue_from_thumbnail
    from mitodet.inference.slide import open_image, read_thumbnail, resolve_mpp
    from mitodet.report.case import write_cases
    from mitodet.report.outputs import summary_markdown
    from mitodet.report.readout import Readout

    try:
        if args.mpp is not None:
            check_mpp(args.mpp, "--mpp")
        points = load_points(args.points, reviewed=True)
    except (ValueError, DataFormatError) as exc:
        return fail("readout", str(exc))
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        return fail("readout", f"no such image file(s): {', '.join(missing)}; check the path(s)")
    unpaired = [p.name for p in args.images if image_key(p.name) not in points]
    if unpaired and not (len(args.images) == 1 and len(points) == 1):
        return fail("readout", f"{args.points} has no points for {unpaired[:3]}; files pair by name without extension")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for k, path in enumerate(args.images, 1):
        ps = points.get(image_key(path.name)) or next(iter(points.values()))
        try:
            with open_image(path) as src:
                mpp, mpp_source = resolve_mpp(path, src.pixel_size, args.mpp)
                h, w = src.shape
                mask = None
                if args.tissue == "on" or (args.tissue == "auto" and src.kind == "wsi"):
                    thumb, (dx, _) = read_thumbnail(src, THUMBNAIL_MAX_SIDE)
                    mask = tissue_from_thumbnail(thumb, dx * mpp, (h, w))
                kind = src.kind
            mitoses = ps.to_pixels(mpp).mitoses()[0]
            readout = Readout.from_json(readout_summary(mitoses, None, mpp, (h, w), mask, args.field_area_mm2))
            summary = FileSummary(
                readout,
                image=str(path),
                image_path=str(path.resolve()),
                name=path.stem,
                kind=kind,
                mpp_source=mpp_source,
                model={},
                detection={},
                tissue=mask.to_dict(mpp) if mask is not None else {"method": "none: the whole image counts as tissue"},
                source={},
                evaluation=None,
                notes=[f"read-out of the reviewed points in {ps.source} (not of a model's detections)"],
                outputs=[f"{path.stem}.summary.md", f"{path.stem}.summary.json"],
                seconds=0.0,
                mitodet_version=__version__,
                run={},
                extra={"points": str(ps.source)},
            )
            s = summary.to_json()
            atomic_write_text(args.out / f"{path.stem}.summary.md", summary_markdown(s))
            atomic_write_text(args.out / f"{path.stem}.summary.json", json.dumps(s, indent=2) + "\n")
            r = FileResult(path, path.stem, "done", summary=summary)
        except (ValueError, OSError, DataFormatError) as exc:
            r = FileResult(path, path.stem, "failed", error=f"{path}: {exc}")
        results.append(r)
        print(describe_result(k, len(args.images), r))
    for case in write_cases(results, args.out, args.case_by, args.field_area_mm2, extrapolate=args.extrapolate_score):
        print(case.line())
    return 0 if all(r.status == "done" for r in results) else 1
