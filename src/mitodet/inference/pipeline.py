"""Batch detection over files and folders with resumable, atomic per-file outputs.

:func:`detect_files` is what ``mitodet detect`` runs. For each input image (``NAME`` is the
file name without its extension, made unique within the batch) it writes into ``out_dir``:

==========================  ===========================================================
``NAME.csv``                detections ``x,y,score,x_um,y_um`` (level-0 pixels, um)
``NAME.candidates.csv``     every candidate, scored, down to the model's floor (for the
                            viewer's threshold slider; not a read-out)
``NAME.geojson``            the same as QuPath point detections (File > Import objects)
``NAME.midog.json``         grand-challenge "Multiple points" JSON in millimetres
``NAME.overlay.jpg``        detections (or TP/FP/FN with ``gt``) on the image, or on a
                            thumbnail of at most 4096 px for slides
``NAME.heatmap.jpg``        the GLB vault heat-map of eq. 9 (HPF images, GLB models)
``NAME.tissue.png``         the tissue mask the read-out was taken on (when one was used)
``NAME.summary.md``         the clinical read-out for people
``NAME.summary.json``       the same for programs, and the file's completion marker
==========================  ===========================================================

plus ``summary.csv``, the batch index: one row per input with its status (``done``,
``skipped`` = already done by an earlier run with the same settings, ``failed`` with the
error), the count, tissue area, density, hotspot, score and, with ``gt``, P/R/F1.

Resumability. Every file is written atomically (temporary file + ``os.replace``), so a
killed run never leaves a half-written output. ``NAME.summary.json`` is written last and
records a key of the run (the input's path, size and modification time; a fingerprint of
the model weights and config; threshold, mpp, tissue mode, field area, ground truth...)
and the list of outputs. A rerun skips an input whose ``NAME.summary.json`` has the same
key and whose listed outputs all exist; anything else is processed again (its old marker
is deleted first, so a crash mid-way is never mistaken for a finished file).
``overwrite=True`` processes everything again.

Failures (unreadable file, missing pixel size, ...) are recorded with their message and
the batch goes on with the next file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mitodet.checks import check_mpp, check_threshold, state_digest
from mitodet.evaluation.metrics import DEFAULT_RADIUS_UM  # the one definition (re-exported here)
from mitodet.report.readout import DIGITAL_HPF_AREA_MM2

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
INDEX_COLUMNS = (
    "file",
    "name",
    "status",
    "kind",
    "mpp",
    "count",
    "tissue_area_mm2",
    "count_per_mm2",
    "hotspot_count",
    "hotspot_per_10hpf",
    "mitotic_score",
    "score_extrapolated",
    "precision",
    "recall",
    "f1",
    "seconds",
    "error",
)


@dataclass
class FileResult:
    """The outcome for one input.

    Attributes:
        path: the input file.
        name: the output name (``NAME.csv`` ...).
        status: ``"done"``, ``"skipped"`` (complete from an earlier run) or ``"failed"``.
        error: the error message when failed.
        summary: the summary dict (done or skipped).
        outputs: output file names written (relative to the output folder).
        seconds: wall time spent on this file in this run.
    """

    path: Path
    name: str
    status: str
    error: str | None = None
    summary: dict[str, Any] | None = None
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class BatchResult:
    """All inputs of a :func:`detect_files` run, in input order."""

    results: list[FileResult]
    out_dir: Path
    index_path: Path

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return self.count("failed") == 0


# ----------------------------------------------------------------------------- inputs and names


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


# ----------------------------------------------------------------------------- run keys


def model_fingerprint(detector) -> str:
    """SHA-256 (16 hex) of the model's weights and config, and of its second stage when it runs one."""
    from dataclasses import asdict

    from mitodet.config import to_dict

    extra = json.dumps(to_dict(detector.config), sort_keys=True, default=str).encode()
    modules = [detector.model]
    for stage in (getattr(detector, "rescorer", None), getattr(detector, "atypical", None)):
        if stage is not None:
            extra += json.dumps(asdict(stage.config), sort_keys=True).encode()
            modules.append(stage)
    return state_digest(*modules, extra=extra)[:16]


def _file_identity(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
        return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": str(path.absolute()), "size": None, "mtime_ns": None}


def run_key(settings: dict[str, Any], path: Path) -> str:
    """The key that decides whether an earlier output of ``path`` is still valid."""
    doc = {"input": _file_identity(path), **settings}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _complete_summary(marker: Path, key: str, out_dir: Path) -> dict[str, Any] | None:
    """The summary of a finished earlier run with this key, else None."""
    if not marker.is_file():
        return None
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("status") != "complete" or doc.get("run", {}).get("key") != key:
        return None
    if not all((out_dir / name).is_file() for name in doc.get("outputs", [])):
        return None
    return doc


def atypical_summary(prob: np.ndarray, threshold: float, readout: dict[str, Any]) -> dict[str, Any]:
    """The atypical read-out of an image's detections: how many are called atypical (P >= the
    classifier's threshold), their fraction, and per 10 HPF over the tissue."""
    n = int((np.asarray(prob) >= threshold).sum())
    total = int(len(prob))
    area = readout.get("tissue_area_mm2") or 0.0
    field_mm2 = readout.get("field_area_mm2") or DIGITAL_HPF_AREA_MM2
    return {
        "count": n,
        "fraction": n / total if total else None,
        "count_per_10hpf": 10.0 * n / (area / field_mm2) if area > 0 else None,
        "threshold": threshold,
        "mean_probability": float(np.mean(prob)) if total else None,
        "note": "P(atypical) of every detection is in the CSV (atypical_probability); the classifier's accuracy "
        "is in the model card",
    }


def summary_grid(mask, mpp: float):
    """The tissue mask on the read-out's grid (cells of at least SUMMARY_CELL_UM, long side <= 2048)."""
    from mitodet.inference.tissue import SUMMARY_CELL_UM

    return mask.resized(2048, min_cell_px=SUMMARY_CELL_UM / mpp)


def save_tissue_png(path: Path, mask) -> Path:
    """A tissue mask as a 1-bit PNG (white: tissue), written atomically; read back with
    :func:`load_tissue_png`."""
    from PIL import Image

    from mitodet.checks import atomic_save

    return atomic_save(path, lambda f: Image.fromarray(mask.mask).save(f, format="PNG", optimize=True))


def load_tissue_png(path: Path, image_shape: tuple[int, int], method: str = "") -> Any:
    """The :class:`~mitodet.inference.tissue.TissueMask` ``detect`` saved as ``NAME.tissue.png``."""
    from PIL import Image

    from mitodet.inference.tissue import TissueMask

    with Image.open(path) as im:
        m = np.asarray(im.convert("L")) > 0
    return TissueMask(m, (int(image_shape[0]), int(image_shape[1])), None, method)


def readout_summary(points, scores, mpp: float, image_shape, mask, field_area_mm2: float) -> dict[str, Any]:
    """The read-out of one image's points (:func:`mitodet.report.readout.summarize`) over its
    tissue mask (a :class:`~mitodet.inference.tissue.TissueMask`, or None: all tissue), on the
    summary grid; ``detect`` and ``readout`` both use it."""
    from mitodet.report.readout import summarize

    grid = None if mask is None else summary_grid(mask, mpp).mask
    return summarize(points, scores, mpp, image_shape, tissue_mask=grid, field_area_mm2=field_area_mm2)


def _owner(marker: Path) -> str | None:
    """The absolute input path an existing summary was written for (None: none, or unknown)."""
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("image_path") if isinstance(doc, dict) else None


# ----------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class FileOptions:
    """What :func:`process_file` needs of a batch's options (from :func:`plan_batch`)."""

    mpp: float | None
    threshold: float | None
    field_area_mm2: float
    tissue: str
    heatmap: bool
    overlay: bool
    reader: str
    radius_um: float | None  # None: by the ground truth's format (evaluation.metrics.radius_for_format)
    progress: bool
    allow_coarse: bool = False  # run images much coarser than the model's resolution anyway


#: the finest pixel size (um) the overlay picture is drawn at
OVERLAY_MPP = 0.5

#: an image narrower than this (um) cannot hold one whole cell: refused, not counted as "no mitoses"
MIN_IMAGE_SIDE_UM = 20.0


def evaluate_points(gt_pts: np.ndarray, points: np.ndarray, scores, mpp: float, radius_um: float):
    """Detections (level-0 px, scores) against ground truth (level-0 px), optimal one-to-one
    within ``radius_um`` -> (the summary's ``evaluation`` dict, the match); ``detect --gt``
    and the viewer's live read-out both use it."""
    from mitodet.evaluation.matching import match_points
    from mitodet.evaluation.metrics import precision_recall_f1

    m = match_points(gt_pts, points, radius_um / mpp, scores=scores, mode="optimal")
    p, r, f1 = precision_recall_f1(m.tp, m.fp, m.fn)
    ev = {
        "tp": m.tp,
        "fp": m.fp,
        "fn": m.fn,
        "precision": p,
        "recall": r,
        "f1": f1,
        "n_gt": int(len(gt_pts)),
        "radius_um": radius_um,
        "matching": "optimal (maximum number of one-to-one matches within the radius)",
    }
    return ev, m


def _to_thumb(points: np.ndarray, d: tuple[float, float]) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(pts):
        return pts
    return np.stack([(pts[:, 0] + 0.5) / d[0] - 0.5, (pts[:, 1] + 0.5) / d[1] - 0.5], axis=1)


def _markdown_extra(summary: dict[str, Any]) -> str:
    lines = []
    ev = summary.get("evaluation")
    if ev:
        lines += [
            "## Against the ground truth",
            "",
            f"Ground truth: `{ev.get('gt_file')}` ({ev['n_gt']} mitoses); matching within "
            f"{ev['radius_um']:g} µm, one-to-one, optimal.",
            "",
            "| TP | FP | FN | Precision | Recall | F1 |",
            "|---|---|---|---|---|---|",
            f"| {ev['tp']} | {ev['fp']} | {ev['fn']} | {ev['precision']:.3f} | {ev['recall']:.3f} | {ev['f1']:.3f} |",
            "",
        ]
    det = summary.get("detection", {})
    tis = summary.get("tissue", {})
    lines += [
        "## How this was measured",
        "",
        f"- Pixel size: {summary.get('mpp'):.4g} µm/px ({summary.get('mpp_source')}).",
        f"- Model: {summary.get('model', {}).get('preset')} at {det.get('working_mpp')} µm/px, "
        f"threshold {summary.get('score_threshold')}; {det.get('tiles_run')} of {det.get('tiles')} tiles run.",
        f"- Tissue: {tis.get('method')}.",
    ]
    for n in summary.get("notes", []):
        lines.append(f"- Note: {n}")
    lines.append("")
    return "\n".join(lines)


def process_file(
    detector,
    path: Path,
    name: str,
    out_dir: Path,
    opts: FileOptions,
    settings: dict[str, Any],
    gt_points: dict | None = None,
    gt_file: str | None = None,
    single_pair: bool = False,
    overwrite: bool = False,
) -> FileResult:
    """Detect, read out and write every output of one input (see the module docstring)."""
    from mitodet import __version__
    from mitodet.evaluation.io import image_key
    from mitodet.inference.predictor import THUMBNAIL_MAX_SIDE
    from mitodet.inference.slide import open_image, read_thumbnail, resolve_mpp
    from mitodet.report.outputs import (
        atomic_write_text,
        summary_markdown,
        write_csv,
        write_geojson,
        write_midog_json,
        write_summary,
    )
    from mitodet.report.viz import (
        ATYPICAL_COLOR,
        draw_box,
        draw_detections,
        draw_evaluation,
        heatmap_overlay,
        save_image,
    )

    t0 = time.perf_counter()
    paths = output_paths(out_dir, name)
    marker = paths["summary_json"]
    key = run_key(settings, path)
    if not overwrite:
        done = _complete_summary(marker, key, out_dir)
        if done is not None:
            return FileResult(
                path,
                name,
                "skipped",
                summary=done,
                outputs=list(done.get("outputs", [])),
                seconds=time.perf_counter() - t0,
            )
    if not overwrite:  # another input's results under this name are never replaced silently
        other = _owner(marker)
        if other is not None and other != str(path.resolve()):
            raise ValueError(
                f"{path}: {out_dir / name}.* hold the results of another input, {other} (same name); give this "
                "batch its own --out, rename one of the files, or pass --overwrite to replace them"
            )
    marker.unlink(missing_ok=True)  # from here on the file counts as not done until the marker is back
    notes: list[str] = []
    with open_image(path, reader=opts.reader) as src:
        mpp, mpp_source = resolve_mpp(path, src.pixel_size, opts.mpp)
        if src.pixel_size.note and mpp_source == "--mpp":
            notes.append(f"file metadata: {src.pixel_size.note}")
        if src.pixel_size.mpp is not None and mpp_source == "--mpp" and abs(src.pixel_size.mpp - mpp) > 0.01 * mpp:
            notes.append(f"--mpp {mpp:g} overrides the file's {src.pixel_size.mpp:g} um/px ({src.pixel_size.source})")
        if src.pixel_size.mpp_y and mpp_source != "--mpp" and abs(src.pixel_size.mpp_y - mpp) > 0.02 * mpp:
            notes.append(f"non-square pixels ({mpp:g} x {src.pixel_size.mpp_y:g} um); the x size is used")
        h, w = src.shape
        if min(h, w) * mpp < MIN_IMAGE_SIDE_UM:
            raise ValueError(
                f"{path}: {w} x {h} px at {mpp:g} um/px is {w * mpp:.1f} x {h * mpp:.1f} um, smaller than one "
                f"cell ({MIN_IMAGE_SIDE_UM:g} um): not an image of tissue to count mitoses in (check the file, or --mpp)"
            )
        if mpp > 2.0 * detector.mpp:
            coarse = (
                f"the image ({mpp:g} um/px) is much coarser than the model's working resolution "
                f"({detector.mpp:g} um/px): mitoses are not resolved"
            )
            if not opts.allow_coarse:  # refused before any tile runs: a count here would read 'no mitoses'
                raise ValueError(
                    f"{path}: {coarse}. Scan at x20 (about 0.5 um/px) or x40 (about 0.25), check the pixel size "
                    "(--mpp), or pass --allow-coarse to run anyway"
                )
            notes.append(f"{coarse}; run anyway (--allow-coarse): the count is not reliable")
        thumb, d = read_thumbnail(src, THUMBNAIL_MAX_SIDE)
        # every candidate is kept (threshold 0) for the viewer's threshold slider; the outputs
        # that count hold those at the operating threshold
        candidates = detector.detect_source(
            src, mpp, threshold=0.0, tissue=opts.tissue, progress=opts.progress, thumbnail=(thumb, d)
        )
        det = candidates.above(check_threshold(opts.threshold, default=detector.threshold))
        if getattr(detector, "atypical", None) is not None:  # atypical or normal, for every detection
            t_a = time.perf_counter()
            det = replace(det, atypical=detector.classify_atypical(src, det.points, mpp))
            det.info["atypical_seconds"] = time.perf_counter() - t_a
        kind = src.kind
        source_info = src.describe()
        full = src.in_memory()
    write_csv(paths["csv"], det.points, det.scores, mpp, first_scores=det.first_scores, atypical=det.atypical)
    cand_atypical = None  # the detections are the candidates' first len(det) rows (both by descending score)
    if det.atypical is not None:
        cand_atypical = np.full(len(candidates), np.nan)
        cand_atypical[: len(det)] = det.atypical
    write_csv(
        paths["candidates"],
        candidates.points,
        candidates.scores,
        mpp,
        first_scores=candidates.first_scores,
        atypical=cand_atypical,
    )
    write_midog_json(paths["midog"], det.points, det.scores, mpp, atypical=det.atypical)
    del candidates

    ev = None
    parts = None
    if gt_points is not None:
        key_ = image_key(path.name)
        ps = gt_points.get(key_)
        if ps is None and single_pair and len(gt_points) == 1:
            ps = next(iter(gt_points.values()))
        if ps is None:
            notes.append(f"no ground truth for image {key_!r} in {gt_file}; not evaluated")
        elif not ps.labelled:
            notes.append(f"image {key_!r} is in {gt_file} but was never annotated; not evaluated")
        else:
            from mitodet.evaluation.metrics import radius_for_format

            gt_pts = ps.to_pixels(mpp).mitoses()[0]
            radius_um = opts.radius_um if opts.radius_um is not None else radius_for_format(ps.fmt)
            ev, m = evaluate_points(gt_pts, det.points, det.scores, det.mpp, radius_um)
            parts = (det.points[m.matched_pred], det.points[~m.matched_pred], gt_pts[~m.matched_gt])
            ev["gt_file"] = gt_file
            ev["gt_image"] = ps.name

    mask = det.tissue
    if mask is not None and not mask.mask.any():
        notes.append("no tissue found: nothing was analysed (check the overlay; --tissue off analyses everything)")
    summary = readout_summary(det.points, det.scores, mpp, det.image_shape, mask, opts.field_area_mm2)
    atypical_thr = None
    if det.atypical is not None:
        atypical_thr = float(detector.atypical.config.threshold)
        summary["atypical"] = atypical_summary(det.atypical, atypical_thr, summary)
    hot = summary.get("hotspot")
    hot_px = None if not hot else [float(v) / mpp for v in hot["box_um"]]
    write_geojson(
        paths["geojson"],
        det.points,
        det.scores,
        hotspot=None if hot_px is None else {"box_px": hot_px, "count": hot["count"], "n_fields": hot["n_fields"]},
        atypical=det.atypical,
        atypical_threshold=atypical_thr,
    )
    written = [paths[k].name for k in ("csv", "candidates", "geojson", "midog")]
    if mask is not None:  # the grid the read-out was taken on, for the viewer's layer and live read-out
        save_tissue_png(paths["tissue"], summary_grid(mask, mpp))
        written.append(paths["tissue"].name)
    else:
        paths["tissue"].unlink(missing_ok=True)

    # the overlay is drawn no finer than OVERLAY_MPP (a pathologist sees each figure there,
    # and an HPF's JPEG stays well under 1 MB): a x40 frame is shown at half its resolution
    k = min(1.0, mpp * d[0] / OVERLAY_MPP)
    if k < 0.99:
        from PIL import Image

        size = (max(1, round(thumb.shape[1] * k)), max(1, round(thumb.shape[0] * k)))
        thumb = np.asarray(Image.fromarray(thumb).resize(size, Image.Resampling.BOX))
        d = (d[0] / k, d[1] / k)
    radius = max(4.0, 0.6 * detector.config.box_size_um / (mpp * d[0]))
    width = 2 if max(thumb.shape[:2]) < 3000 else 3
    if parts is not None:
        overlay = draw_evaluation(thumb, *(_to_thumb(p, d) for p in parts), radius_px=radius, width=width)
    else:
        overlay = draw_detections(thumb, _to_thumb(det.points, d), radius_px=radius, width=width)
        if det.atypical is not None and (det.atypical >= atypical_thr).any():  # atypical ones: a second ring
            overlay = draw_detections(
                overlay,
                _to_thumb(det.points[det.atypical >= atypical_thr], d),
                radius_px=radius + 2 * width,
                width=width,
                color=ATYPICAL_COLOR,
                shape="diamond",
            )
    if hot_px is not None:
        box = [hot_px[0] / d[0], hot_px[1] / d[1], hot_px[2] / d[0], hot_px[3] / d[1]]
        tag = "whole image, extrapolated" if hot.get("extrapolated") else f"{hot['n_fields']} HPF"
        overlay = draw_box(
            overlay,
            box,
            f"hotspot ({tag}): {hot['count']} mitoses, {hot['count_per_10hpf']:.1f} per 10 HPF",
            width=width,
        )
    if opts.overlay:
        save_image(paths["overlay"], overlay)
        written.append(paths["overlay"].name)
    else:
        paths["overlay"].unlink(missing_ok=True)  # no stale overlay from an earlier run
    del overlay

    if opts.heatmap and kind == "hpf" and full is not None:
        if not detector.has_glb:
            notes.append(f"no heat-map: the model ({detector.config.preset}) has no GLB neck")
        else:
            try:
                act = detector.glb_activation(full, mpp)
                save_image(paths["heatmap"], heatmap_overlay(full, act, alpha=0.5))
                written.append(paths["heatmap"].name)
            except ValueError as exc:
                notes.append(f"no heat-map: {exc}")
    elif kind == "wsi" and opts.heatmap:
        notes.append("no heat-map for whole-slide images (HPF images only)")
    if paths["heatmap"].name not in written:
        paths["heatmap"].unlink(missing_ok=True)  # no stale heat-map from an earlier run

    summary["score_threshold"] = det.threshold
    summary.update(
        {
            "image": str(path),
            "image_path": str(path.resolve()),
            "name": name,
            "kind": kind,
            "mpp_source": mpp_source,
            "model": {
                "dir": None if detector.model_dir is None else str(detector.model_dir),
                "preset": detector.config.preset,
                "working_mpp": detector.mpp,
                "second_stage": (
                    None
                    if getattr(detector, "rescorer", None) is None
                    else {
                        "patch_px": detector.rescorer.config.patch_px,
                        "mpp": detector.rescorer.config.mpp,
                        "combine": detector.rescorer.config.combine,
                    }
                ),
                "fingerprint": settings.get("model"),
            },
            "detection": det.info,
            "tissue": (
                mask.to_dict(mpp)
                if mask is not None
                else {"method": "none: the whole image counts as tissue (HPF image; use --tissue on to detect it)"}
            ),
            "source": source_info,
            "evaluation": ev,
            "notes": notes,
        }
    )
    md = summary_markdown(summary) + "\n" + _markdown_extra(summary)
    atomic_write_text(paths["summary_md"], md)
    written.append(paths["summary_md"].name)
    seconds = time.perf_counter() - t0
    summary.update(
        {
            "outputs": written + [marker.name],
            "seconds": seconds,
            "mitodet_version": __version__,
            "run": {"key": key, "settings": settings},
            "status": "complete",
        }
    )
    write_summary(marker, None, summary)  # the completion marker: always last
    return FileResult(path, name, "done", summary=summary, outputs=list(summary["outputs"]), seconds=seconds)


# ----------------------------------------------------------------------------- index


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)


def index_row(r: FileResult) -> dict[str, str]:
    s = r.summary or {}
    hot = s.get("hotspot") or {}
    ev = s.get("evaluation") or {}
    nt = s.get("nottingham") or {}
    return {
        "file": str(Path(r.path).resolve()),  # absolute: the key runs from any folder merge by
        "name": r.name,
        "status": r.status,
        "kind": _fmt(s.get("kind")),
        "mpp": _fmt(s.get("mpp")),
        "count": _fmt(s.get("count")),
        "tissue_area_mm2": _fmt(s.get("tissue_area_mm2")),
        "count_per_mm2": _fmt(s.get("count_per_mm2")),
        "hotspot_count": _fmt(hot.get("count")),
        "hotspot_per_10hpf": _fmt(hot.get("count_per_10hpf")),
        "mitotic_score": _fmt(nt.get("score")),
        "score_extrapolated": _fmt(hot.get("extrapolated")) if hot else "",
        "precision": _fmt(ev.get("precision")),
        "recall": _fmt(ev.get("recall")),
        "f1": _fmt(ev.get("f1")),
        "seconds": _fmt(r.seconds),
        "error": r.error or "",
    }


def write_index(path: Path, results: Sequence[FileResult]) -> Path:
    """Write the batch index ``summary.csv`` atomically, merged by input with the index an
    earlier run left there: its rows of other inputs are kept (in their order), the rows of
    this batch's inputs are replaced by this batch's."""
    from mitodet.report.outputs import write_merged_csv

    return write_merged_csv(
        path, INDEX_COLUMNS, [index_row(r) for r in results], key=lambda row: str(Path(row.get("file") or "").resolve())
    )


# ----------------------------------------------------------------------------- batch


@dataclass(frozen=True)
class BatchPlan:
    """A checked batch, ready to run (from :func:`plan_batch`); shared by the local and Ray backends.

    Attributes:
        detector: the loaded detector.
        inputs: the image files, in order; ``names``: their output names.
        out_dir: the output folder (created); ``index_path``: its ``summary.csv``.
        options: what :func:`process_file` needs per file.
        settings: what the run key is made of (a rerun with equal settings skips finished files).
        gt_points / gt_file: the loaded ground truth and where it came from, or None.
    """

    detector: Any
    inputs: list[Path]
    names: list[str]
    out_dir: Path
    index_path: Path
    options: FileOptions
    settings: dict[str, Any]
    gt_points: Any
    gt_file: str | None


def plan_batch(
    paths: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    detector=None,
    model: str | os.PathLike[str] = "default",
    mpp: float | None = None,
    threshold: float | None = None,
    gt: str | os.PathLike[str] | None = None,
    field_area_mm2: float = DIGITAL_HPF_AREA_MM2,
    tissue: str = "auto",
    heatmap: bool = False,
    overlay: bool = True,
    radius_um: float | None = None,
    recursive: bool = False,
    reader: str = "auto",
    progress: bool = False,
    allow_coarse: bool = False,
) -> BatchPlan:
    """Check the arguments of :func:`detect_files`, find the inputs, load the model (when
    ``detector`` is None) and the ground truth: everything but running the files.

    Raises:
        ValueError / FileNotFoundError / DataFormatError: as :func:`detect_files` says;
            the arguments are checked before the model is loaded.
    """
    from mitodet.inference.predictor import TISSUE_MODES, Detector

    if tissue not in TISSUE_MODES:
        raise ValueError(f"tissue must be one of {TISSUE_MODES}, got {tissue!r}")
    check_threshold(threshold)
    if mpp is not None:
        check_mpp(mpp, "--mpp")
    if radius_um is not None and not (math.isfinite(radius_um) and radius_um > 0):
        raise ValueError(f"radius_um must be a positive number of micrometres, got {radius_um!r}")
    if not (math.isfinite(field_area_mm2) and field_area_mm2 > 0):
        raise ValueError(f"field_area_mm2 must be a positive area in mm^2, got {field_area_mm2!r}")
    paths = list(paths)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, no permission, read-only filesystem...
        raise ValueError(
            f"cannot create the output folder {out} ({exc.strerror or exc}); pass --out a folder path you can write to"
        ) from None
    inputs = collect_inputs(paths, recursive=recursive, exclude=[out])
    if not inputs:
        raise ValueError(
            f"no images found in {', '.join(str(p) for p in paths)}; mitodet reads PNG, JPEG, TIFF "
            "and whole-slide formats (SVS, NDPI, MRXS, ...)"
        )
    names = output_names(inputs)
    if detector is None:
        detector = Detector.load(model)
    gt_points = None
    gt_file = None
    if gt is not None:
        from mitodet.evaluation.io import load_points

        gt_points = load_points(gt)
        gt_file = str(gt)
        _check_pairing(inputs, gt_points, gt_file)
    opts = FileOptions(
        mpp=mpp,
        threshold=threshold,
        field_area_mm2=float(field_area_mm2),
        tissue=tissue,
        heatmap=bool(heatmap),
        overlay=bool(overlay),
        reader=reader,
        radius_um=None if radius_um is None else float(radius_um),
        progress=progress,
        allow_coarse=bool(allow_coarse),
    )
    settings = {
        "model": model_fingerprint(detector),
        "threshold": detector.threshold if threshold is None else float(threshold),
        "mpp": mpp,
        "tissue": tissue,
        "heatmap": bool(heatmap),
        "overlay": bool(overlay),
        "reader": reader,
        "field_area_mm2": float(field_area_mm2),
        "radius_um": None if radius_um is None else float(radius_um),
        "tile_px": detector.tile_px,
        "overlap_px": detector.overlap_px,
        "flip_tta": detector.flip_tta,
        "backend": getattr(detector, "backend", "torch"),
        "device": getattr(detector, "device", "cpu"),
        "gt": None if gt is None else _file_identity(Path(gt)),
    }
    return BatchPlan(detector, inputs, names, out, out / INDEX_NAME, opts, settings, gt_points, gt_file)


def _check_pairing(inputs: Sequence[Path], gt_points: dict, gt_file: str) -> None:
    """``--gt`` must pair: some input by name (or one input with a one-image file), and no two
    inputs with the same GT image. Raises ValueError naming the images otherwise."""
    from mitodet.evaluation.io import image_key

    keys = [image_key(p.name) for p in inputs]
    if len(inputs) == 1 and len(gt_points) == 1:
        return  # a single image against a single-image file pairs whatever the names
    paired = [k for k in keys if k in gt_points]
    if not paired:
        raise ValueError(
            f"--gt {gt_file} pairs with none of the inputs: it names e.g. {sorted(gt_points)[:3]}, the inputs are "
            f"e.g. {keys[:3]}; images pair by file name without extension"
        )
    twice = sorted({k for k in paired if paired.count(k) > 1})
    if twice:
        which = [str(p) for p, k in zip(inputs, keys) if k in twice]
        raise ValueError(
            f"--gt {gt_file}: the inputs {which[:4]} would all pair with its image(s) {twice[:3]}; "
            "evaluate them in separate runs or rename them"
        )


def failed_result(path: Path, name: str, exc: BaseException, t0: float) -> FileResult:
    """The record of a file that failed: the error names the file (once)."""
    msg = str(exc) if str(path) in str(exc) else f"{path}: {type(exc).__name__}: {exc}"
    return FileResult(path, name, "failed", error=msg, seconds=time.perf_counter() - t0)


def detect_files(
    paths: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] = "mitodet-out",
    *,
    detector=None,
    model: str | os.PathLike[str] = "default",
    mpp: float | None = None,
    threshold: float | None = None,
    gt: str | os.PathLike[str] | None = None,
    field_area_mm2: float = DIGITAL_HPF_AREA_MM2,
    tissue: str = "auto",
    heatmap: bool = False,
    overlay: bool = True,
    radius_um: float | None = None,
    overwrite: bool = False,
    recursive: bool = False,
    reader: str = "auto",
    progress: bool = False,
    allow_coarse: bool = False,
    log: Callable[[str], None] | None = None,
    log_error: Callable[[str], None] | None = None,
) -> BatchResult:
    """Detect mitoses in every image of ``paths`` and write the outputs into ``out_dir``.

    Args:
        paths: image files and/or folders (see :func:`collect_inputs`).
        out_dir: output folder (created).
        detector: a loaded :class:`~mitodet.inference.predictor.Detector`; None loads ``model``.
        model: ``"default"`` or a model folder, when ``detector`` is None.
        mpp: micrometres per pixel for every input, overriding file metadata; None reads it
            from each file (a file without one fails with a message saying to pass --mpp).
        threshold: score threshold (None: the model's operating threshold; 0: every candidate).
        gt: ground-truth points (any format :func:`mitodet.evaluation.io.load_points` reads);
            images pair by file stem (a single image with a single GT entry pair anyway).
        field_area_mm2: HPF area for the per-10-HPF count, hotspot and Nottingham score.
        tissue: ``"auto"`` (slides only), ``"on"``, ``"off"``.
        heatmap: write the GLB heat-map for HPF images (off by default: it costs a second
            pass of the network's neck and about 1 MB per HPF).
        overlay: write the overlay picture (a JPEG, a downsampled thumbnail for slides).
        radius_um: matching radius against ``gt`` (um); default by the ground truth's format
            (7.5 um for MIDOG files, as ``mitodet evaluate`` scores them, else 8 um).
        overwrite: process inputs even when complete outputs from the same settings exist.
        recursive: look into sub-folders of folder inputs.
        reader: ``"auto"``, ``"openslide"`` or ``"tifffile"`` for slides.
        progress: tqdm bars over files and tiles (shown on terminals only).
        allow_coarse: run an image whose pixel size is more than twice the model's working
            one (mitoses unresolved); by default such a file fails before any tile runs. An
            image smaller than one cell (``MIN_IMAGE_SIDE_UM``) always fails.
        log / log_error: called with one line per file (e.g. ``print``); None is silent.

    Returns:
        A :class:`BatchResult`; ``result.ok`` is False when any input failed.

    Raises:
        ValueError / FileNotFoundError / DataFormatError: bad arguments, a missing model or
            an unreadable ground-truth file (before any image is processed).
    """
    plan = plan_batch(
        paths,
        out_dir,
        detector=detector,
        model=model,
        mpp=mpp,
        threshold=threshold,
        gt=gt,
        field_area_mm2=field_area_mm2,
        tissue=tissue,
        heatmap=heatmap,
        overlay=overlay,
        radius_um=radius_um,
        recursive=recursive,
        reader=reader,
        progress=progress,
        allow_coarse=allow_coarse,
    )
    results: list[FileResult] = []
    it: Iterable[tuple[Path, str]] = zip(plan.inputs, plan.names)
    n = len(plan.inputs)
    bar = None
    if progress and n > 1:
        from tqdm import tqdm

        bar = tqdm(list(it), desc="files", unit="file", disable=None)
        it = bar
    say = log or _quiet
    say_err = log_error or log or _quiet
    for k, (path, name) in enumerate(it, 1):
        t0 = time.perf_counter()
        try:
            r = process_file(
                plan.detector,
                path,
                name,
                plan.out_dir,
                plan.options,
                plan.settings,
                plan.gt_points,
                plan.gt_file,
                single_pair=n == 1,
                overwrite=overwrite,
            )
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one bad file must not stop the batch
            r = failed_result(path, name, exc, t0)
        results.append(r)
        write_index(plan.index_path, results)
        (say_err if r.status == "failed" else say)(describe_result(k, n, r))
    if bar is not None:
        bar.close()
    return BatchResult(results, plan.out_dir, plan.index_path)


def _quiet(_msg: str) -> None:
    pass


def describe_result(k: int, n: int, r: FileResult) -> str:
    """The console line of result ``k`` of ``n`` (both backends print it)."""
    head = f"[{k}/{n}] {r.path.name}"
    if r.status == "failed":
        return f"{head}: FAILED: {r.error}"
    s = r.summary or {}
    nt = (s.get("nottingham") or {}).get("score")
    hot = s.get("hotspot") or {}
    parts = [f"{s.get('count')} mitoses"]
    if s.get("tissue_area_mm2") is not None:
        parts.append(f"{s['tissue_area_mm2']:.3g} mm2 tissue")
    if hot:
        parts.append(f"hotspot {hot.get('count')} ({hot.get('count_per_10hpf', 0):.1f} per 10 HPF)")
    parts.append(f"score {nt if nt is not None else 'n/a'}")
    if hot.get("extrapolated"):
        hpf = (s.get("tissue_area_mm2") or 0) / (s.get("field_area_mm2") or DIGITAL_HPF_AREA_MM2)
        parts[-1] += f" (EXTRAPOLATED from {hpf:.2g} HPF of tissue; see the case read-out)"
    ev = s.get("evaluation")
    if ev:
        parts.append(
            f"P {ev['precision']:.3f} R {ev['recall']:.3f} F1 {ev['f1']:.3f} "
            f"(TP {ev['tp']} FP {ev['fp']} FN {ev['fn']})"
        )
    tail = " (already done, skipped)" if r.status == "skipped" else f" in {r.seconds:.1f} s"
    return f"{head}: " + ", ".join(parts) + tail


__all__ = [
    "INDEX_NAME",
    "OUTPUT_SUFFIXES",
    "DEFAULT_RADIUS_UM",
    "FileResult",
    "FileOptions",
    "BatchResult",
    "describe_result",
    "collect_inputs",
    "output_names",
    "output_paths",
    "model_fingerprint",
    "run_key",
    "process_file",
    "index_row",
    "write_index",
    "BatchPlan",
    "plan_batch",
    "failed_result",
    "detect_files",
]
