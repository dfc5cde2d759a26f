"""Small, self-contained loaders of point files for ``mitodet evaluate``.

Every loader returns ``{image_name: PointSet}`` where the image name is the file stem of the
image (``"A03_00Ab"``, ``"001"``), so ground truth and predictions from different formats
pair up by name. Formats recognised by :func:`load_points`:

* **generic CSV** with a header: ``image,x,y[,score][,label][,mpp][,domain]`` (one file, many
  images; a row with an image name and empty x, y declares an image without points), or a
  single-image CSV ``x,y[,score]`` (as written by ``mitodet detect``; the image name is the
  file stem). ``score`` may also be called ``probability`` or ``confidence``; ``label`` is 1
  (or ``mitosis``) for a mitotic figure and 0 (or 2, MIDOG's imposter category) for anything
  else; without a label column every row is a mitotic figure. x = column, y = row, level-0
  pixels.
* **MITOS-ATYPIA-14**: a dataset root (any folder holding ``<FRAME>_mitosis.csv`` files, in
  the official layout ``<SLIDE>/mitosis/``) or one ``<FRAME>_mitosis.csv`` /
  ``<FRAME>_not_mitosis.csv``: header-less rows ``x,y,confidence``. Mitosis rows get label 1,
  not-mitosis rows label 0 (hard negatives). Pixel size from the slide letter: A = Aperio
  ScanScope XT 0.2455 um/px, H = Hamamatsu NanoZoomer 2.0-HT 0.2273 um/px. The third column
  is kept as the score (for a prediction file in this layout it is the confidence).
* **MIDOG COCO-like JSON** (MIDOG 2021 / MIDOG++): ``images`` + ``annotations`` with ``bbox``
  = [x1, y1, x2, y2] in pixels (MIDOG's corner convention, not COCO's x, y, w, h); the point
  is the box centre; category 1 = mitotic figure (label 1), any other = label 0; optional
  ``score`` per annotation; ``tumor_type`` / ``scanner`` of an image is its domain.
* **grand-challenge "Multiple points" JSON** (MIDOG submissions): ``{"type": "Multiple
  points", "points": [{"name": ..., "point": [x_mm, y_mm, z], "probability": p}]}`` in
  millimetres, one image per file (name = file stem). As in the MIDOG evaluation, a point
  is a mitotic figure when it has no ``name`` or the name ``"mitotic figure"``; a missing
  ``probability`` counts as 0.5 (MIDOG's default) when other points have one.
* **MIDOG evaluation ground truth**: a JSON object ``{"001.tiff": [[x_mm, y_mm, z], ...]}``.
* **GeoJSON** (``.geojson``, or a ``.json`` FeatureCollection): ``mitodet detect``'s
  ``NAME.geojson`` or points exported from QuPath after review; the class gives the label.
* a **folder** of such CSV / JSON / GeoJSON files (not recursive), merged; a ``mitodet
  detect`` output folder (it holds ``*.summary.json``) is read through its ``NAME.csv`` files.

Points in millimetres are converted to pixels later, once the image's mpp is known
(:meth:`PointSet.to_pixels`).

The pixel formats are parsed by :mod:`mitodet.data.readers` (the same rules, label
spellings and scanner table as training): the generic CSV by
:func:`~mitodet.data.readers.generic.parse_points_csv`, the MITOS-ATYPIA-14 CSVs by
:func:`~mitodet.data.readers.mitos_atypia14.read_frame_csv`, MIDOG JSON by
:func:`~mitodet.data.readers.midog.read_midog` (whose never-annotated images come back with
``labelled`` False: evaluation skips them). What is this module's own: the millimetre
formats of the grand-challenge tools, and merging a folder of files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mitodet.data.records import DataFormatError

MIDOG_DEFAULT_PROBABILITY = 0.5


@dataclass(frozen=True, eq=False)
class PointSet:
    """The points of one image as read from a file.

    Attributes:
        name: image key (file stem of the image).
        points: float64 (N, 2) of (x, y) in ``units``.
        labels: int64 (N,), 1 = mitotic figure, 0 = other (hard negative / imposter).
        scores: float64 (N,) or ``None`` when the file has none.
        mpp: micrometres per pixel if the format says, else ``None``.
        domain: scanner / lab / tumour type if the format says, else ``""``.
        units: ``"px"`` (level-0 pixels) or ``"mm"`` (grand-challenge millimetres).
        source: the file the points came from (for error messages).
        fmt: short name of the format.
        labelled: False for an image listed in the file but never annotated (MIDOG++'s GT450
            scans): its truth is unknown, so evaluation skips it (no false positives there).
    """

    name: str
    points: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None
    mpp: float | None
    domain: str
    units: str
    source: str
    fmt: str
    labelled: bool = True

    def mitoses(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(points, scores) of the label-1 rows only."""
        keep = self.labels == 1
        return self.points[keep], None if self.scores is None else self.scores[keep]

    def to_pixels(self, mpp: float) -> PointSet:
        """The same set in level-0 pixels (converts millimetres with ``mpp`` um/px)."""
        if self.units == "px":
            return self
        return replace(self, points=self.points * 1000.0 / mpp, units="px")


#: compound endings stripped whole when pairing (``A03_00Ab.midog.json``, the viewer's
#: ``A03_00Ab.reviewed.geojson`` -> ``A03_00Ab``)
_COMPOUND = (".midog.json", ".reviewed.geojson", ".ome.tiff", ".ome.tif")


def image_key(name: str) -> str:
    """The key images are paired by: the file name without its extension (``"dir/001.tiff"``
    -> ``"001"``; ``mitodet detect``'s ``NAME.midog.json`` -> ``"NAME"``)."""
    base = Path(str(name)).name
    for ending in _COMPOUND:
        if base.lower().endswith(ending):
            return base[: -len(ending)]
    return Path(base).stem


def load_geojson(path: Path) -> dict[str, PointSet]:
    """A GeoJSON of one image's points (mitodet's own ``NAME.geojson``, or one exported from
    QuPath after review), through :func:`mitodet.data.readers.generic.read_qupath_geojson`:
    the class decides the label ("Mitotic figure" 1; "Not mitotic", "Hard negative", ... 0),
    a ``score`` measurement is kept. The image is the one named like the file."""
    from mitodet.data.readers.generic import read_qupath_geojson

    name = image_key(path.name)
    (rec,) = read_qupath_geojson(path, image=name, mpp=1.0)  # pixels; the pixel size comes from elsewhere
    return {name: _pointset(name, rec.points, rec.labels, rec.scores, None, "", "px", path, "geojson")}


def _detect_output_files(folder: Path, reviewed: bool = False) -> list[Path] | None:
    """The point files of a ``mitodet detect`` output folder (one ``NAME.csv`` per image,
    which holds the scores; its GeoJSON / MIDOG copies and the summaries are not read; with
    ``reviewed``, the ``NAME.reviewed.geojson`` that ``mitodet view`` saved instead, for the
    images that have one), or None when ``folder`` is not one."""
    summaries = sorted(folder.glob("*.summary.json"))
    if not summaries:
        return None
    names = [s.name[: -len(".summary.json")] for s in summaries]
    ending = ".reviewed.geojson" if reviewed else ".csv"
    return [folder / f"{n}{ending}" for n in names if (folder / f"{n}{ending}").is_file()]


def _pointset(name, pts, labels, scores, mpp, domain, units, source, fmt, labelled=True) -> PointSet:
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return PointSet(
        name=name,
        points=pts,
        labels=np.asarray(labels, dtype=np.int64).reshape(-1),
        scores=None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1),
        mpp=mpp,
        domain=domain,
        units=units,
        source=str(source),
        fmt=fmt,
        labelled=bool(labelled),
    )


def _mitos14_name(path: Path) -> tuple[str, int]:
    stem = path.stem
    if stem.endswith("_not_mitosis"):
        return stem[: -len("_not_mitosis")], 0
    if stem.endswith("_mitosis"):
        return stem[: -len("_mitosis")], 1
    return stem, 1


def _mitos14_scanner(name: str) -> tuple[str, float | None]:
    from mitodet.data.readers.mitos_atypia14 import frame_scanner

    return frame_scanner(name) or ("", None)


def _load_frame_csv(path: Path) -> dict[str, PointSet]:
    """A MITOS-ATYPIA-14 ``<FRAME>_mitosis.csv`` / ``_not_mitosis.csv`` (header-less
    ``x,y,confidence``), through the dataset reader's row parser."""
    from mitodet.data.readers.mitos_atypia14 import read_frame_csv

    name, label = _mitos14_name(path)
    pts, conf = read_frame_csv(path)
    domain, mpp = _mitos14_scanner(name)
    return {
        name: _pointset(
            name, pts, [label] * len(pts), conf if len(pts) else None, mpp, domain, "px", path, "mitos_atypia14"
        )
    }


def _load_header_csv(path: Path) -> dict[str, PointSet]:
    """A points CSV with a header (:func:`mitodet.data.readers.generic.parse_points_csv`);
    without an ``image`` column all rows belong to the image named like the file."""
    from mitodet.data.readers.generic import parse_points_csv

    out: dict[str, PointSet] = {}
    groups = parse_points_csv(path, default_image=path.stem)
    if not groups:  # a header and no rows: an image without points (when the file names no image)
        with open(path, encoding="utf-8-sig") as fh:
            header = {c.strip().lower() for c in next((line for line in fh if line.strip()), "").split(",")}
        if not header & {"image", "image_name", "image_id", "file", "filename", "file_name"}:
            return {path.stem: _pointset(path.stem, [], [], None, None, "", "px", path, "csv")}
    for g in groups:
        name = image_key(g.name)
        if name in out:
            raise DataFormatError(
                f"{path}:{g.line}: image {g.name!r} has the same name without extension as another image "
                f"of the file ({name!r}); images are paired by that name, so give each a distinct one"
            )
        out[name] = _pointset(name, g.points, g.labels, g.scores, g.mpp, g.domain or "", "px", path, "csv")
    return out


def load_csv(path: Path) -> dict[str, PointSet]:
    """Read a generic (header) or MITOS-ATYPIA-14 style (header-less) point CSV."""
    first = ""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            first = next((line for line in fh if line.strip()), "")
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not a text CSV file. Save it as UTF-8 CSV") from None
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such file. Check the path") from None
    if not first.strip():  # e.g. the _mitosis.csv of a frame without mitoses
        name, _ = _mitos14_name(path)
        if name != path.stem:
            domain, mpp = _mitos14_scanner(name)
            return {name: _pointset(name, [], [], None, mpp, domain, "px", path, "mitos_atypia14")}
        return {name: _pointset(name, [], [], None, None, "", "px", path, "csv")}
    if all(_is_number(c) for c in first.split(",") if c.strip()):
        return _load_frame_csv(path)
    return _load_header_csv(path)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _load_coco(path: Path, data: dict) -> dict[str, PointSet]:
    """MIDOG COCO-like JSON through :func:`mitodet.data.readers.midog.read_midog`: category 1
    is a mitotic figure, 2 an imposter, anything else an error; images without annotations
    are unlabelled. Pixel size only where the file gives one (``images[].mpp``)."""
    from mitodet.data.readers.midog import read_midog

    out = {}
    for rec in read_midog(path, path.parent):
        name = image_key(rec.image.name)
        out[name] = _pointset(
            name,
            rec.points,
            rec.labels,
            rec.scores,
            rec.extra.get("mpp_in_file"),
            rec.domain,
            "px",
            path,
            "midog_coco",
            labelled=rec.labelled,
        )
    return out


def _load_multiple_points(path: Path, data: dict) -> dict[str, PointSet]:
    pts, lab, sc = [], [], []
    any_prob = any(isinstance(p, dict) and "probability" in p for p in data["points"])
    for k, p in enumerate(data["points"]):
        if not isinstance(p, dict) or "point" not in p or len(p["point"]) < 2:
            raise DataFormatError(f"{path}: points[{k}] has no 'point': [x_mm, y_mm, z]")
        pts.append((float(p["point"][0]), float(p["point"][1])))
        # the MIDOG evaluation's rule: no name, or the name "mitotic figure", is a MF
        lab.append(1 if p.get("name", "mitotic figure") == "mitotic figure" else 0)
        sc.append(float(p.get("probability", MIDOG_DEFAULT_PROBABILITY)))
    name = image_key(path.name)  # mitodet detect writes NAME.midog.json
    return {name: _pointset(name, pts, lab, sc if any_prob else None, None, "", "mm", path, "multiple_points")}


def _load_mm_dict(path: Path, data: dict) -> dict[str, PointSet]:
    out = {}
    for key, plist in data.items():
        pts = [(float(p[0]), float(p[1])) for p in plist]
        name = image_key(key)
        out[name] = _pointset(name, pts, [1] * len(pts), None, None, "", "mm", path, "midog_gt")
    return out


def load_json(path: Path) -> dict[str, PointSet]:
    """Read a MIDOG COCO-like JSON, a grand-challenge "Multiple points" JSON or a MIDOG
    evaluation ground-truth dict."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc})") from None
    loader = kind = None
    if (isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature")) or (
        isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("type") == "Feature"
    ):
        return load_geojson(path)
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        loader, kind = _load_coco, "MIDOG COCO-like ('images', 'annotations' with 'bbox' [x1, y1, x2, y2])"
    elif isinstance(data, dict) and isinstance(data.get("points"), list):
        loader, kind = _load_multiple_points, "grand-challenge 'Multiple points' ('points': [{'point': [x, y, z]}])"
    elif (
        isinstance(data, dict)
        and data
        and all(isinstance(v, list) and all(isinstance(p, list) and len(p) >= 2 for p in v) for v in data.values())
    ):
        loader, kind = _load_mm_dict, "MIDOG ground-truth dict ({image: [[x_mm, y_mm, z], ...]})"
    if loader is not None:
        try:
            return loader(path, data)
        except DataFormatError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a value of the wrong type
            raise DataFormatError(
                f"{path}: malformed {kind} file: {type(exc).__name__}: {exc}; each entry needs the keys "
                "of that layout, and every coordinate, score and mpp must be a number"
            ) from None
    raise DataFormatError(
        f"{path}: JSON layout not recognised. Expected a MIDOG COCO-like file ('images' and "
        "'annotations'), a grand-challenge 'Multiple points' file ('type' and 'points') or "
        "{image_name: [[x_mm, y_mm, z], ...]}."
    )


def _merge(path: Path, parts: list[dict[str, PointSet]]) -> dict[str, PointSet]:
    out: dict[str, PointSet] = {}
    for part in parts:
        for name, ps in part.items():
            if name not in out:
                out[name] = ps
                continue
            old = out[name]
            if old.units != ps.units:
                raise DataFormatError(
                    f"{path}: image {name!r} is given in {old.source} ({old.units}) and "
                    f"{ps.source} ({ps.units}); give each image once"
                )
            sc_old, sc_new = old.scores, ps.scores
            if (sc_old is None) != (sc_new is None):
                # an empty file has no score column; anything else must agree
                if sc_old is None and len(old.points) == 0:
                    sc_old = np.zeros(0)
                elif sc_new is None and len(ps.points) == 0:
                    sc_new = np.zeros(0)
                else:
                    raise DataFormatError(
                        f"{path}: image {name!r}: {old.source} has scores but {ps.source} "
                        "has none (or the reverse); give scores for all points or none"
                    )
            out[name] = replace(
                old,
                points=np.concatenate([old.points, ps.points]),
                labels=np.concatenate([old.labels, ps.labels]),
                scores=None if sc_old is None else np.concatenate([sc_old, sc_new]),
                mpp=old.mpp if old.mpp is not None else ps.mpp,
                domain=old.domain or ps.domain,
                source=f"{old.source}+{Path(ps.source).name}",
            )
    return out


def load_points(path: str | Path, *, reviewed: bool = False) -> dict[str, PointSet]:
    """Load ground-truth or predicted points from a file or folder (format auto-detected).

    Args:
        path: a CSV, a JSON, a MITOS-ATYPIA-14 root, or a folder of CSV/JSON files.
        reviewed: for a ``mitodet detect`` output folder, read the reviews ``mitodet view``
            saved there (``NAME.reviewed.geojson``) rather than the model's ``NAME.csv``
            (what ground truth and ``mitodet readout`` want); an error when it holds none.

    Returns:
        ``{image_name: PointSet}``, image names being file stems.

    Raises:
        DataFormatError: when the path does not exist or its format is not recognised; the
            message names the file and what to give instead.
    """
    p = Path(path)
    if not p.exists():
        raise DataFormatError(f"{p}: no such file or folder. Check the path.")
    if p.is_dir():
        mitos = sorted(p.rglob("*_mitosis.csv"))
        if mitos:
            return _merge(p, [load_csv(f) for f in mitos])
        files = _detect_output_files(p, reviewed)
        if reviewed and files == []:
            raise DataFormatError(
                f"{p}: a mitodet detect output folder without reviews (*.reviewed.geojson); review it with "
                f"`mitodet view {p}`, or give the folder of points exported from QuPath"
            )
        if files is None:
            files = sorted(
                f for f in p.iterdir() if f.suffix.lower() in (".csv", ".json", ".geojson") and f.name != "summary.csv"
            )
        if not files:
            raise DataFormatError(
                f"{p}: folder holds no *_mitosis.csv (MITOS-ATYPIA-14 layout) and no .csv, .json or "
                ".geojson point files. Point to the dataset root, a detect output folder or a point file."
            )
        return _merge(p, [load_points(f) for f in files])
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return load_csv(p)
    if suffix == ".geojson":
        return load_geojson(p)
    if suffix == ".json":
        return load_json(p)
    raise DataFormatError(
        f"{p}: unknown point-file format {suffix!r}. Give a .csv (image,x,y,score), a MIDOG "
        ".json, a GeoJSON (.geojson, as mitodet writes or QuPath exports), a MITOS-ATYPIA-14 folder "
        "or a mitodet detect output folder."
    )
