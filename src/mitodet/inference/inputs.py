"""The inputs of a batch and the names of their outputs.

:func:`collect_inputs` expands files and folders into the images to process;
:func:`output_names` gives each a unique ``NAME``; :func:`output_paths` the files ``NAME.*``
that :mod:`mitodet.inference.process` writes (:data:`OUTPUT_SUFFIXES`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

INDEX_NAME = "summary.csv"
OUTPUT_SUFFIXES: dict[str, str] = {
    "csv": ".csv",
    "candidates": ".candidates.csv",
    "geojson": ".geojson",
    "midog": ".midog.json",
    "overlay": ".overlay.jpg",
    "heatmap": ".heatmap.jpg",
    "tissue": ".tissue.png",
    "summary_md": ".summary.md",
    "summary_json": ".summary.json",
}

_RESERVED = {"summary"}  # would collide with the batch index summary.csv
_OWN_OUTPUT_ENDINGS = (
    ".overlay.jpg",
    ".heatmap.jpg",
    ".tissue.png",
    ".overlay.png",
    ".heatmap.png",
)  # (PNG: before 2026-12)


def collect_inputs(
    paths: Iterable[str | os.PathLike[str]], recursive: bool = False, exclude: Sequence[str | os.PathLike[str]] = ()
) -> list[Path]:
    """Expand files and folders into the list of images to process (folder contents sorted).

    Files given explicitly are kept whatever their ending (a missing one fails later, in the
    batch, with its name). From folders, files ending in
    :data:`~mitodet.inference.slide.IMAGE_SUFFIXES` are taken (sub-folders too when
    ``recursive``), except hidden files, mitodet's own ``.overlay.jpg`` / ``.heatmap.jpg`` (and the ``.png`` of older versions)
    outputs and anything under ``exclude`` (the output folder).

    Raises:
        ValueError: no paths given.
    """
    from mitodet.inference.slide import IMAGE_SUFFIXES

    excl = [Path(e).resolve() for e in exclude]
    out: list[Path] = []
    seen: set[Path] = set()
    given = list(paths)
    if not given:
        raise ValueError("no input given; pass image files or folders")

    def add(p: Path) -> None:
        key = p.resolve() if p.exists() else p.absolute()
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in given:
        p = Path(raw)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            for f in sorted(it):
                if not f.is_file() or f.name.startswith("."):
                    continue
                if f.suffix.lower() not in IMAGE_SUFFIXES or f.name.lower().endswith(_OWN_OUTPUT_ENDINGS):
                    continue
                rf = f.resolve()
                if any(rf == e or e in rf.parents for e in excl):
                    continue
                add(f)
        else:
            add(p)
    return out


def output_names(paths: Sequence[Path]) -> list[str]:
    """A unique output name per input: the file stem, with ``-2``, ``-3``... for repeats
    (and for the reserved name ``summary``)."""
    used: set[str] = set()
    names = []
    for p in paths:
        base = (
            p.name[: -len(".ome.tiff")]
            if p.name.lower().endswith(".ome.tiff")
            else (p.name[: -len(".ome.tif")] if p.name.lower().endswith(".ome.tif") else p.stem)
        )
        base = base or "image"
        name, k = base, 1
        while name.lower() in used or name.lower() in _RESERVED:
            k += 1
            name = f"{base}-{k}"
        used.add(name.lower())
        names.append(name)
    return names


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """``{kind: path}`` of every output of ``name`` (see :data:`OUTPUT_SUFFIXES`)."""
    return {k: out_dir / f"{name}{s}" for k, s in OUTPUT_SUFFIXES.items()}
