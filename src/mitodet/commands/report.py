"""``mitodet report``: one self-contained HTML file per case, for sharing (no server)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mitodet.commands._common import fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML report per case of a detect output folder",
        description="Write OUT/report/<case>.html for every case of a `mitodet detect` output folder: the counts, the "
        "score with its rule, the hotspot and a gallery of the detections, pictures embedded, no external links (it "
        "opens from an e-mail attachment). Reviewed points (NAME.reviewed.geojson) are used where they exist.",
    )
    p.add_argument("out", type=Path, help="the --out folder of a `mitodet detect` run")
    p.add_argument("--dest", type=Path, default=None, help="where to write the HTML files (default OUT/report)")
    p.add_argument(
        "--max-gallery", type=int, default=60, help="at most this many detection crops per image (default 60)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mitodet.checks import positive_int

    try:
        positive_int(args.max_gallery, "--max-gallery")
        from mitodet.report.html import write_reports

        paths = write_reports(args.out, args.dest, max_gallery=args.max_gallery)
    except ImportError as exc:
        return fail("report", f"the report needs the viewer's extra ({exc}); pip install 'mitodet[view]'")
    except ValueError as exc:
        return fail("report", str(exc))
    for p in paths:
        print(p)
    return 0
