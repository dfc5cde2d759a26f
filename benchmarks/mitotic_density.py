"""Mitotic density of the labelled sets: mitoses per mm2 of labelled tissue (the F1 density's basis).

Usage: python benchmarks/mitotic_density.py [--data ../shared/data]

MIDOG++ (per tumour type; images flagged unlabelled are left out; 0.25 um/px assumed for the
area, the MIDOG scanners' 0.23-0.26) and the MITOS-ATYPIA-14 label files (1,200 Aperio frames
of 1539 x 1376 px at 0.2455 um/px, images not included). Read through mitodet's readers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args(argv)
    from mitodet.data.readers import read_midog, read_mitos_atypia14
    from mitodet.data.spec import default_data_root

    data = args.data or default_data_root()
    jpath = data / "midogpp" / "MIDOG++.json"
    if not jpath.is_file():
        print(f"{jpath} not found: pass --data", file=sys.stderr)
        return 2
    doc = json.loads(jpath.read_text())
    sizes = {im["file_name"]: (im["width"], im["height"], im.get("tumor_type", "?")) for im in doc["images"]}
    by_type: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for rec in read_midog(jpath, data / "midogpp" / "images"):
        if not rec.labelled:
            continue
        w, h, kind = sizes[rec.image.name]
        row = by_type[kind]
        row[0] += len(rec.mitoses)
        row[1] += w * h * 0.25**2 * 1e-6
        row[2] += 1
    print("| set | images | mitoses | mm2 | mitoses / mm2 |")
    print("|---|---:|---:|---:|---:|")
    for kind, (n, area, k) in sorted(by_type.items()):
        print(f"| MIDOG++ {kind} | {k} | {n} | {area:.1f} | {n / area:.1f} |")
    recs = read_mitos_atypia14(data / "mitos_atypia14_labels")
    n = sum(len(r.mitoses) for r in recs)
    area = len(recs) * 1539 * 1376 * 0.2455**2 * 1e-6
    print(f"| MITOS-ATYPIA-14 Aperio label files | {len(recs)} | {n} | {area:.1f} | {n / area:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
