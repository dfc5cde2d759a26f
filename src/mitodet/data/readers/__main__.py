"""Print one line per real data set: ``python -m mitodet.data.readers [DATA_ROOT]``.

``DATA_ROOT`` defaults to ``$MITODET_DATA``, else ``../shared/data`` from the current folder.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mitodet.data.readers import (
    read_amibr,
    read_atnorm,
    read_icpr12,
    read_midog,
    read_mitos_atypia14,
    read_mitos_atypia14_patches,
    read_tupac16_patches,
)
from mitodet.data.records import ImageRecord

#: folder -> (reader name, call)
SETS: dict[str, tuple[str, Callable[[Path], list[ImageRecord]]]] = {
    "amibr": ("amibr", read_amibr),
    "atnorm_br": ("atnorm", read_atnorm),
    "atnorm_md": ("atnorm", read_atnorm),
    "icpr12_train_labels": ("icpr12", read_icpr12),
    "midogpp": ("midog", lambda p: read_midog(p / "MIDOG++.json", p / "images")),
    "mitos_atypia14": ("mitos_atypia14", read_mitos_atypia14),
    "mitos_atypia14_h03_patches": ("mitos_atypia14_patches", read_mitos_atypia14_patches),
    "mitos_atypia14_labels": ("mitos_atypia14", read_mitos_atypia14),
    "tupac16_patches": ("tupac16_patches", read_tupac16_patches),
}


def main(argv: list[str] | None = None) -> int:
    """Read every known set under the data root and print records / mitoses / negatives."""
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else os.environ.get("MITODET_DATA", "../shared/data"))
    if not root.is_dir():
        print(f"data root {root} not found: pass it as an argument or set MITODET_DATA", file=sys.stderr)
        return 2
    header = (
        f"{'folder':<28} {'reader':<24} {'records':>8} {'mitoses':>8} {'hard neg':>8} "
        f"{'slides':>7} {'empty':>6} {'s':>6}"
    )
    print(header)
    print("-" * len(header))
    for folder, (name, reader) in SETS.items():
        path = root / folder
        if not path.exists():
            print(f"{folder:<28} {name:<24} (absent)")
            continue
        start = time.perf_counter()
        records = reader(path)
        seconds = time.perf_counter() - start
        mitoses = sum(len(r.mitoses) for r in records)
        negatives = sum(len(r.hard_negatives) for r in records)
        slides = len({r.slide for r in records})
        empty = sum(1 for r in records if len(r.points) == 0)
        print(
            f"{folder:<28} {name:<24} {len(records):>8} {mitoses:>8} {negatives:>8} "
            f"{slides:>7} {empty:>6} {seconds:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
