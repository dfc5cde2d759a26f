"""One file through ``mitodet detect``: :func:`process_file`, in named steps.

The steps, in order (each a function of its own, testable alone):

1. :func:`~mitodet.inference.resume.claim`: skip a file finished by an earlier run with the
   same key, or claim its outputs;
2. :func:`check_image`: the pixel size and where it came from, and the refusals that come
   before any tile runs (smaller than a cell, much coarser than the model);
3. :func:`detect_image`: every candidate (a tile runner: the detector itself, or the Ray
   pool's), the detections at the threshold and their atypical probability;
4. :func:`write_point_files`: the CSVs and the MIDOG JSON;
5. :func:`evaluate_file`: against the ground truth, when given;
6. :func:`write_readout_files`: the read-out (count, tissue, hotspot, score), the GeoJSON
   and the tissue mask;
7. :func:`write_pictures`: the overlay and the heat-map;
8. :func:`finish_summary`: ``NAME.summary.md`` and, last, ``NAME.summary.json`` (the
   completion marker).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from mitodet.checks import check_threshold
from mitodet.config import DetectConfig
from mitodet.report.readout import DIGITAL_HPF_AREA_MM2, Readout

#: the finest pixel size (um) the overlay picture is drawn at
OVERLAY_MPP = 0.5

#: an image narrower than this (um) cannot hold one whole cell: refused, not counted as "no mitoses"
MIN_IMAGE_SIDE_UM = 20.0

#: a tile runner: ``(source, mpp, threshold=, tissue=, progress=, thumbnail=) -> Detections``, as
#: :meth:`Detector.detect_source <mitodet.inference.predictor.Detector.detect_source>` (the local
#: path) or :meth:`RayDetectorPool.detect_source <mitodet.inference.ray_backend.RayDetectorPool.detect_source>`
#: (the tiles spread over a cluster)
TileRunner = Callable[..., Any]

#: the order in which the summary lists a file's outputs
_LISTED_ORDER = ("csv", "candidates", "geojson", "midog", "tissue", "overlay", "heatmap")


@dataclass(frozen=True)
class FileSummary:
    """What ``NAME.summary.json`` holds, typed: the read-out of one image and how it was made.

    :meth:`to_json` is the file's (flat) JSON; :meth:`from_json` reads it back (the skip
    path of a resumed run does), and raises on a missing key instead of reading "n/a".
    ``summary["key"]`` reads a key of the JSON (for code that indexes it as a dict).

    Attributes:
        readout: the count, densities, hotspot and Nottingham score.
        image / image_path / name / kind: the input as given, absolute, its output name, and
            ``"hpf"`` or ``"wsi"``.
        mpp_source: where the pixel size came from (``--mpp`` or the file's metadata).
        model / detection / tissue / source: the model used, the detection's own record
            (tiles, seconds...), the tissue method and mask, the reader's description.
        evaluation: TP/FP/FN and P/R/F1 against the ground truth, or None.
        notes: what the reader of the read-out must know (overrides, refusals run anyway).
        outputs: the files written (the marker last); ``seconds``: time for this file.
        mitodet_version / run: the version, and the run key with its settings.
        atypical: the atypical read-out, when the model has a classifier.
        status: ``"complete"``.
        extra: keys of the JSON that none of the above names (kept as they are).
    """

    readout: Readout
    image: str
    image_path: str
    name: str
    kind: str
    mpp_source: str
    model: dict[str, Any]
    detection: dict[str, Any]
    tissue: dict[str, Any]
    source: dict[str, Any]
    evaluation: dict[str, Any] | None
    notes: list[str]
    outputs: list[str]
    seconds: float
    mitodet_version: str
    run: dict[str, Any]
    atypical: dict[str, Any] | None = None
    status: str = "complete"
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("image", "image_path", "name", "kind", "mpp_source", "model", "detection", "tissue", "source")
    _KEYS_AFTER = ("outputs", "seconds", "mitodet_version", "run", "status")

    def to_json(self) -> dict[str, Any]:
        d = self.readout.to_json()
        if self.atypical is not None:
            d["atypical"] = self.atypical
        d.update({k: getattr(self, k) for k in self._KEYS})
        d.update(evaluation=self.evaluation, notes=list(self.notes))
        d.update({k: getattr(self, k) for k in self._KEYS_AFTER})
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "FileSummary":
        """Raises ValueError (naming the key) when ``d`` is not a complete summary."""
        readout = Readout.from_json(d)
        try:
            return cls(
                readout,
                **{k: d[k] for k in cls._KEYS},
                evaluation=d["evaluation"],
                notes=list(d["notes"]),
                outputs=list(d["outputs"]),
                seconds=float(d["seconds"]),
                mitodet_version=str(d["mitodet_version"]),
                run=dict(d["run"]),
                atypical=d.get("atypical"),
                status=str(d["status"]),
                extra={k: v for k, v in d.items() if k not in _SUMMARY_KEYS},
            )
        except KeyError as exc:
            raise ValueError(f"not a mitodet summary: no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:  # e.g. "seconds": null
            raise ValueError(f"not a mitodet summary: {exc}") from None

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]


#: the keys of NAME.summary.json that FileSummary (and its Readout) name
_SUMMARY_KEYS = frozenset((*(f.name for f in fields(Readout)), *(f.name for f in fields(FileSummary)), "atypical")) - {
    "readout",
    "extra",
}


@dataclass
class FileResult:
    """The outcome for one input.

    Attributes:
        path: the input file.
        name: the output name (``NAME.csv`` ...).
        status: ``"done"``, ``"skipped"`` (complete from an earlier run) or ``"failed"``.
        error: the error message when failed.
        summary: the :class:`FileSummary` (done or skipped).
        outputs: output file names written (relative to the output folder).
        seconds: wall time spent on this file in this run.
    """

    path: Path
    name: str
    status: str
    error: str | None = None
    summary: FileSummary | None = None
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0


def failed_result(path: Path, name: str, exc: BaseException, t0: float) -> FileResult:
    """The record of a file that failed: the error names the file (once)."""
    msg = str(exc) if str(path) in str(exc) else f"{path}: {type(exc).__name__}: {exc}"
    return FileResult(path, name, "failed", error=msg, seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- read-out helpers


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


def _markdown_extra(doc: FileSummary) -> str:
    """The parts of ``NAME.summary.md`` after the read-out: the evaluation and how it was measured."""
    lines = []
    ev = doc.evaluation
    if ev:
        lines += [
            "## Against the ground truth",
            "",
            f"Ground truth: `{ev['gt_file']}` ({ev['n_gt']} mitoses); matching within "
            f"{ev['radius_um']:g} µm, one-to-one, optimal.",
            "",
            "| TP | FP | FN | Precision | Recall | F1 |",
            "|---|---|---|---|---|---|",
            f"| {ev['tp']} | {ev['fp']} | {ev['fn']} | {ev['precision']:.3f} | {ev['recall']:.3f} | {ev['f1']:.3f} |",
            "",
        ]
    det = doc.detection
    lines += [
        "## How this was measured",
        "",
        f"- Pixel size: {doc.readout.mpp:.4g} µm/px ({doc.mpp_source}).",
        f"- Model: {doc.model['preset']} at {doc.model['working_mpp']} µm/px, "
        f"threshold {doc.readout.score_threshold}; {det.get('tiles_run')} of {det.get('tiles')} tiles run.",
        f"- Tissue: {doc.tissue['method']}.",
    ]
    lines += [f"- Note: {n}" for n in doc.notes]
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the steps


@dataclass
class ImageCheck:
    """What :func:`check_image` found: the pixel size, where it came from, and notes for the summary."""

    mpp: float
    mpp_source: str
    notes: list[str] = field(default_factory=list)


def check_image(path: Path, src, config: DetectConfig, model_mpp: float) -> ImageCheck:
    """The pixel size of ``src`` (``--mpp`` or the file's), with notes on what it overrode,
    and the refusals that come before any tile runs.

    Raises:
        MissingMppError: the file has no pixel size and none was given.
        ValueError: the image is smaller than one cell, or (unless ``config.allow_coarse``)
            more than twice as coarse as the model's working resolution ``model_mpp``.
    """
    from mitodet.inference.slide import resolve_mpp

    mpp, mpp_source = resolve_mpp(path, src.pixel_size, config.mpp)
    notes: list[str] = []
    ps = src.pixel_size
    if ps.note and mpp_source == "--mpp":
        notes.append(f"file metadata: {ps.note}")
    if ps.mpp is not None and mpp_source == "--mpp" and abs(ps.mpp - mpp) > 0.01 * mpp:
        notes.append(f"--mpp {mpp:g} overrides the file's {ps.mpp:g} um/px ({ps.source})")
    if ps.mpp_y and mpp_source != "--mpp" and abs(ps.mpp_y - mpp) > 0.02 * mpp:
        notes.append(f"non-square pixels ({mpp:g} x {ps.mpp_y:g} um); the x size is used")
    h, w = src.shape
    if min(h, w) * mpp < MIN_IMAGE_SIDE_UM:
        raise ValueError(
            f"{path}: {w} x {h} px at {mpp:g} um/px is {w * mpp:.1f} x {h * mpp:.1f} um, smaller than one "
            f"cell ({MIN_IMAGE_SIDE_UM:g} um): not an image of tissue to count mitoses in (check the file, or --mpp)"
        )
    if mpp > 2.0 * model_mpp:
        coarse = (
            f"the image ({mpp:g} um/px) is much coarser than the model's working resolution "
            f"({model_mpp:g} um/px): mitoses are not resolved"
        )
        if not config.allow_coarse:  # refused before any tile runs: a count here would read 'no mitoses'
            raise ValueError(
                f"{path}: {coarse}. Scan at x20 (about 0.5 um/px) or x40 (about 0.25), check the pixel size "
                "(--mpp), or pass --allow-coarse to run anyway"
            )
        notes.append(f"{coarse}; run anyway (--allow-coarse): the count is not reliable")
    return ImageCheck(mpp, mpp_source, notes)


def detect_image(detector, src, mpp: float, config: DetectConfig, thumbnail, tiles: TileRunner | None = None):
    """``(candidates, detections)`` of ``src``: every candidate (threshold 0, for the viewer's
    slider), run by ``tiles`` (default: the detector's own :meth:`detect_source`), and those at
    the operating threshold, with their atypical probability when the model has a classifier."""
    run = tiles if tiles is not None else detector.detect_source
    candidates = run(src, mpp, threshold=0.0, tissue=config.tissue, progress=config.progress, thumbnail=thumbnail)
    det = candidates.above(check_threshold(config.threshold, default=detector.threshold))
    if getattr(detector, "atypical", None) is not None:  # atypical or normal, for every detection
        t_a = time.perf_counter()
        det = replace(det, atypical=detector.classify_atypical(src, det.points, mpp))
        det.info["atypical_seconds"] = time.perf_counter() - t_a
    return candidates, det


def write_point_files(paths: dict[str, Path], candidates, det, mpp: float) -> list[str]:
    """``NAME.csv`` (the detections), ``NAME.candidates.csv`` (every candidate) and
    ``NAME.midog.json``; returns their names."""
    from mitodet.report.outputs import write_csv, write_midog_json

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
    return [paths[k].name for k in ("csv", "candidates", "midog")]


def evaluate_file(
    path: Path,
    det,
    mpp: float,
    gt_points: dict | None,
    gt_file: str | None,
    radius_um: float | None,
    single_pair: bool,
    notes: list[str],
):
    """``(evaluation dict, (TP, FP, FN) points)`` of the detections against this image's
    ground truth, or ``(None, None)`` (with a note saying why when ``gt_points`` is given)."""
    from mitodet.evaluation.io import image_key
    from mitodet.evaluation.metrics import radius_for_format

    if gt_points is None:
        return None, None
    key = image_key(path.name)
    ps = gt_points.get(key)
    if ps is None and single_pair and len(gt_points) == 1:
        ps = next(iter(gt_points.values()))
    if ps is None:
        notes.append(f"no ground truth for image {key!r} in {gt_file}; not evaluated")
        return None, None
    if not ps.labelled:
        notes.append(f"image {key!r} is in {gt_file} but was never annotated; not evaluated")
        return None, None
    gt_pts = ps.to_pixels(mpp).mitoses()[0]
    radius = radius_um if radius_um is not None else radius_for_format(ps.fmt)
    ev, m = evaluate_points(gt_pts, det.points, det.scores, det.mpp, radius)
    ev["gt_file"] = gt_file
    ev["gt_image"] = ps.name
    return ev, (det.points[m.matched_pred], det.points[~m.matched_pred], gt_pts[~m.matched_gt])


def write_readout_files(
    paths: dict[str, Path], detector, det, mpp: float, field_area_mm2: float, notes: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """The read-out of the detections over the tissue (count, density, hotspot, score, atypical),
    ``NAME.geojson`` (with the hotspot as an annotation) and ``NAME.tissue.png``; returns
    ``(summary, names written)``."""
    from mitodet.report.outputs import write_geojson

    mask = det.tissue
    if mask is not None and not mask.mask.any():
        notes.append("no tissue found: nothing was analysed (check the overlay; --tissue off analyses everything)")
    summary = readout_summary(det.points, det.scores, mpp, det.image_shape, mask, field_area_mm2)
    atypical_thr = None
    if det.atypical is not None:
        atypical_thr = float(detector.atypical.config.threshold)
        summary["atypical"] = atypical_summary(det.atypical, atypical_thr, summary)
    hot = summary.get("hotspot")
    write_geojson(
        paths["geojson"],
        det.points,
        det.scores,
        hotspot=None if not hot else {"box_px": hot["box_px"], "count": hot["count"], "n_fields": hot["n_fields"]},
        atypical=det.atypical,
        atypical_threshold=atypical_thr,
    )
    written = [paths["geojson"].name]
    if mask is not None:  # the grid the read-out was taken on, for the viewer's layer and live read-out
        save_tissue_png(paths["tissue"], summary_grid(mask, mpp))
        written.append(paths["tissue"].name)
    else:
        paths["tissue"].unlink(missing_ok=True)
    return summary, written


def draw_overlay(thumb: np.ndarray, d: tuple[float, float], detector, det, parts, summary: dict[str, Any], mpp: float):
    """The overlay picture: the detections (or TP/FP/FN ``parts``), atypical ones ringed, and
    the hotspot, on the thumbnail ``thumb`` (level-0 px per thumbnail px ``d``), drawn no finer
    than :data:`OVERLAY_MPP`."""
    from mitodet.report.viz import ATYPICAL_COLOR, draw_box, draw_detections, draw_evaluation

    # a pathologist sees each figure at OVERLAY_MPP, and an HPF's JPEG stays well under 1 MB:
    # a x40 frame is shown at half its resolution
    k = min(1.0, mpp * d[0] / OVERLAY_MPP)
    if k < 0.99:
        from PIL import Image

        size = (max(1, round(thumb.shape[1] * k)), max(1, round(thumb.shape[0] * k)))
        thumb = np.asarray(Image.fromarray(thumb).resize(size, Image.Resampling.BOX))
        d = (d[0] / k, d[1] / k)
    radius = max(4.0, 0.6 * detector.config.box_size_um / (mpp * d[0]))
    width = 2 if max(thumb.shape[:2]) < 3000 else 3
    atyp = (summary.get("atypical") or {}).get("threshold")
    if parts is not None:  # TP / FP / FN, and the atypical ones among the detections ringed
        called = None if atyp is None else _to_thumb(det.points[det.atypical >= atyp], d)
        overlay = draw_evaluation(
            thumb, *(_to_thumb(p, d) for p in parts), radius_px=radius, width=width, atypical_points=called
        )
    else:
        overlay = draw_detections(thumb, _to_thumb(det.points, d), radius_px=radius, width=width)
        if atyp is not None and (det.atypical >= atyp).any():  # atypical ones: a second ring
            overlay = draw_detections(
                overlay,
                _to_thumb(det.points[det.atypical >= atyp], d),
                radius_px=radius + 2 * width,
                width=width,
                color=ATYPICAL_COLOR,
                shape="diamond",
            )
    hot = summary.get("hotspot")
    if hot:
        box = [v / dd for v, dd in zip(hot["box_px"], (d[0], d[1], d[0], d[1]))]  # level-0 px -> thumbnail px
        tag = "whole image, extrapolated" if hot.get("extrapolated") else f"{hot['n_fields']} HPF"
        overlay = draw_box(
            overlay,
            box,
            f"hotspot ({tag}): {hot['count']} mitoses, {hot['count_per_10hpf']:.1f} per 10 HPF",
            width=width,
        )
    return overlay


def write_pictures(
    paths: dict[str, Path], detector, det, parts, summary, mpp: float, thumbnail, full, kind: str, config, notes
) -> list[str]:
    """``NAME.overlay.jpg`` (unless ``config.overlay`` is off) and, on request, ``NAME.heatmap.jpg``
    (HPF images of GLB models); a stale one from an earlier run is removed. Returns the names written."""
    from mitodet.report.viz import heatmap_overlay, save_image

    written = []
    if config.overlay:
        save_image(paths["overlay"], draw_overlay(*thumbnail, detector, det, parts, summary, mpp))
        written.append(paths["overlay"].name)
    else:
        paths["overlay"].unlink(missing_ok=True)  # no stale overlay from an earlier run
    if config.heatmap and kind == "hpf" and full is not None:
        if not detector.has_glb:
            notes.append(f"no heat-map: the model ({detector.config.preset}) has no GLB neck")
        else:
            try:
                act = detector.glb_activation(full, mpp)
                save_image(paths["heatmap"], heatmap_overlay(full, act, alpha=0.5))
                written.append(paths["heatmap"].name)
            except ValueError as exc:
                notes.append(f"no heat-map: {exc}")
    elif kind == "wsi" and config.heatmap:
        notes.append("no heat-map for whole-slide images (HPF images only)")
    if paths["heatmap"].name not in written:
        paths["heatmap"].unlink(missing_ok=True)  # no stale heat-map from an earlier run
    return written


def finish_summary(
    paths: dict[str, Path],
    summary: dict[str, Any],
    written: list[str],
    *,
    path: Path,
    name: str,
    detector,
    det,
    check: ImageCheck,
    kind: str,
    source_info: dict[str, Any],
    evaluation: dict[str, Any] | None,
    settings: dict[str, Any],
    key: str,
    t0: float,
) -> FileResult:
    """Complete the summary, write ``NAME.summary.md`` and, last, the completion marker
    ``NAME.summary.json``; the file's :class:`FileResult`."""
    from mitodet import __version__
    from mitodet.report.outputs import atomic_write_text, summary_markdown, write_summary

    mask = det.tissue
    marker = paths["summary_json"]
    at = summary.pop("atypical", None)
    readout = replace(Readout.from_json(summary), score_threshold=det.threshold)
    written = [*written, paths["summary_md"].name]
    doc = FileSummary(
        readout,
        image=str(path),
        image_path=str(path.resolve()),
        name=name,
        kind=kind,
        mpp_source=check.mpp_source,
        model={
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
        detection=det.info,
        tissue=(
            mask.to_dict(check.mpp)
            if mask is not None
            else {"method": "none: the whole image counts as tissue (HPF image; use --tissue on to detect it)"}
        ),
        source=source_info,
        evaluation=evaluation,
        notes=check.notes,
        outputs=written + [marker.name],
        seconds=0.0,
        mitodet_version=__version__,
        run={"key": key, "settings": settings},
        atypical=at,
    )
    atomic_write_text(paths["summary_md"], summary_markdown(doc.to_json()) + "\n" + _markdown_extra(doc))
    seconds = time.perf_counter() - t0
    doc = replace(doc, seconds=seconds)
    write_summary(marker, None, doc.to_json())  # the completion marker: always last
    return FileResult(path, name, "done", summary=doc, outputs=list(doc.outputs), seconds=seconds)


def process_file(
    detector,
    path: Path,
    name: str,
    out_dir: Path,
    config: DetectConfig,
    settings: dict[str, Any],
    gt_points: dict | None = None,
    gt_file: str | None = None,
    single_pair: bool = False,
    tiles: TileRunner | None = None,
) -> FileResult:
    """Detect, read out and write every output of one input: the steps of the module docstring.

    Args:
        detector: the :class:`~mitodet.inference.predictor.Detector`.
        path, name, out_dir: the input, its output name and folder.
        config: the batch's :class:`~mitodet.config.DetectConfig`.
        settings: the run key's settings (``config.run_settings(detector)``).
        gt_points, gt_file: the loaded ground truth and where it came from, or None.
        single_pair: the batch has one input (it pairs with a one-image ground truth whatever its name).
        tiles: the tile runner (default: the detector's own).
    """
    from mitodet.inference.inputs import output_paths
    from mitodet.inference.predictor import THUMBNAIL_MAX_SIDE
    from mitodet.inference.resume import claim, run_key
    from mitodet.inference.slide import open_image, read_thumbnail

    t0 = time.perf_counter()
    paths = output_paths(out_dir, name)
    key = run_key(settings, path)
    done = claim(out_dir, name, path, key, config.overwrite)
    if done is not None:
        try:
            ok = FileSummary.from_json(done)
        except ValueError:  # a marker this version cannot read back: processed again
            paths["summary_json"].unlink(missing_ok=True)
        else:
            return FileResult(
                path, name, "skipped", summary=ok, outputs=list(ok.outputs), seconds=time.perf_counter() - t0
            )
    with open_image(path, reader=config.reader) as src:
        check = check_image(path, src, config, detector.mpp)
        thumbnail = read_thumbnail(src, THUMBNAIL_MAX_SIDE)
        candidates, det = detect_image(detector, src, check.mpp, config, thumbnail, tiles)
        kind, source_info, full = src.kind, src.describe(), src.in_memory()
    written = write_point_files(paths, candidates, det, check.mpp)
    del candidates
    ev, parts = evaluate_file(path, det, check.mpp, gt_points, gt_file, config.radius_um, single_pair, check.notes)
    summary, more = write_readout_files(paths, detector, det, check.mpp, config.field_area_mm2, check.notes)
    written += more
    written += write_pictures(
        paths, detector, det, parts, summary, check.mpp, thumbnail, full, kind, config, check.notes
    )
    rank = {paths[k].name: i for i, k in enumerate(_LISTED_ORDER)}
    written.sort(key=rank.__getitem__)
    return finish_summary(
        paths,
        summary,
        written,
        path=path,
        name=name,
        detector=detector,
        det=det,
        check=check,
        kind=kind,
        source_info=source_info,
        evaluation=ev,
        settings=settings,
        key=key,
        t0=t0,
    )
