"""Whole-field accuracy: recall and false positives per mm2 of label-complete tissue.

Validation crops centred on mitoses hold about 1,000 mitoses per mm2; real tissue holds
5-25. On them a detector's precision, and any threshold chosen for it, say nothing about
a whole field. This module measures what does carry over:

- **recall** on every labelled mitosis of label-complete images (AMi-Br crops list every
  mitosis inside them; the MITOS-ATYPIA-14 frames list every mitosis of the frame);
- **false positives per mm2** of that tissue (black padding of border crops excluded);
- and from the two, the precision and F1 a user would see on tissue of a stated mitotic
  density ``D`` (mitoses per mm2): ``P = R D / (R D + FP/mm2)``.

The operating threshold is the one that maximises that F1 (:func:`best_threshold`).
Images are grouped by lab and scanner (:func:`lab_group`) so that a table can hold one lab
out and say how the pipeline does on a lab it never saw.

The density: :data:`DEFAULT_DENSITY_PER_MM2` = 10 mitoses per mm2. It lies between what
breast tissue holds on average (``python benchmarks/mitotic_density.py``: MIDOG++'s 150
labelled human breast ROIs 1,721 mitoses in 338.9 mm2, 5.1 per mm2; the MITOS-ATYPIA-14
label files 749 in 153.2 mm2, 4.9 per mm2) and the hotspot frames that contests hand out
(about 25 per mm2), and near the Nottingham score 2 / 3 boundary of the read-out's default
field table (>= 18 per 10 HPF of 0.237 mm2 = 7.6 per mm2), where a count's errors change
the grade. Tables also give F1 at 5 and 25 per mm2, and ``--density`` changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from mitodet.data.records import ImageRecord
from mitodet.evaluation.metrics import DEFAULT_RADIUS_UM as RADIUS_UM
from mitodet.evaluation.metrics import threshold_sweep

DEFAULT_DENSITY_PER_MM2 = 10.0
REPORT_DENSITIES = (5.0, 10.0, 25.0)

# MIDOG 2021 case numbers by scanner (Aubreville et al. 2023): 001-050 Hamamatsu XR,
# 051-100 Hamamatsu S360, 101-150 Aperio ScanScope CS2, 151-200 Leica GT450 (unlabelled).
_MIDOG21_SCANNERS = ("midog21-hamamatsu-xr", "midog21-hamamatsu-s360", "midog21-aperio-cs2", "midog21-leica-gt450")


def lab_group(record: ImageRecord) -> str:
    """The lab / scanner group of a record, for leave-one-lab-out tables."""
    if record.source == "amibr":
        dataset, _, slide = record.slide.partition(":")
        if dataset == "MIDOG21":
            digits = "".join(c for c in slide if c.isdigit())[:3]
            if digits:
                return _MIDOG21_SCANNERS[min(3, (int(digits) - 1) // 50)]
            return "midog21"
        return "tupac16"
    if record.source == "tupac16_patches":
        return "tupac16"
    if record.source == "mitos_atypia14_patches":
        return "mitos14-hamamatsu"
    if record.source == "mitos_atypia14":
        return "mitos14-aperio" if record.slide.startswith("A") else "mitos14-hamamatsu"
    if record.source == "atnorm":
        return {"atnorm_br": "tcga", "atnorm_md": "midogpp"}.get(record.domain, record.domain)
    return record.domain or record.source or "unknown"


def label_complete(record: ImageRecord) -> bool:
    """Whether every mitosis inside the record's image is labelled (so that a detection
    matching none is a real false positive): AMi-Br crops and MITOS-ATYPIA-14 frames."""
    return record.source in ("amibr", "mitos_atypia14") and record.labelled


def tissue_area_mm2(image: np.ndarray, mpp: float) -> float:
    """Area of the non-padding pixels (border crops are black-padded) in mm2."""
    real = image.reshape(-1, image.shape[-1]).max(axis=1) > 8
    return float(real.sum()) * mpp * mpp * 1e-6


@dataclass
class FieldResult:
    """Every candidate on one label-complete image, in micrometres."""

    name: str
    lab: str
    area_mm2: float
    gt_um: np.ndarray
    pred_um: np.ndarray
    scores: np.ndarray
    look_alikes_um: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def collect(
    detector, records: Iterable[ImageRecord], images: Iterable[np.ndarray] | None = None, progress: bool = False
) -> list[FieldResult]:
    """Run ``detector`` (a :class:`~mitodet.inference.predictor.Detector`, second stage
    included when it has one) on each record's whole image and keep every candidate."""
    from mitodet.data.images import read_rgb

    records = list(records)
    imgs = iter(images) if images is not None else None
    bar = records
    if progress:
        from tqdm import tqdm

        bar = tqdm(records, desc="whole-field", unit="image", dynamic_ncols=True)
    out = []
    for rec in bar:
        img = next(imgs) if imgs is not None else read_rgb(rec.image)
        det = detector.detect_array(img, rec.mpp, threshold=0.0)
        out.append(
            FieldResult(
                name=str(rec.image),
                lab=lab_group(rec),
                area_mm2=tissue_area_mm2(img, rec.mpp),
                gt_um=rec.mitoses * rec.mpp,
                pred_um=det.points * rec.mpp,
                scores=det.scores,
                look_alikes_um=rec.hard_negatives * rec.mpp,
            )
        )
    return out


@dataclass(frozen=True)
class WholeFieldSweep:
    """Pooled recall and FP/mm2 at every threshold (decreasing)."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_gt: int
    area_mm2: float

    @property
    def recall(self) -> np.ndarray:
        return self.tp / max(self.n_gt, 1)

    @property
    def fp_per_mm2(self) -> np.ndarray:
        return self.fp / max(self.area_mm2, 1e-12)

    def f1_at(self, density: float) -> np.ndarray:
        r, f = self.recall, self.fp_per_mm2
        p = np.divide(r * density, r * density + f, out=np.zeros_like(r), where=(r * density + f) > 0)
        return np.divide(2 * p * r, p + r, out=np.zeros_like(r), where=(p + r) > 0)

    def at(self, threshold: float, density: float = DEFAULT_DENSITY_PER_MM2) -> dict:
        """Recall, FP/mm2, precision and F1 at ``density`` for detections scoring >= threshold."""
        k = np.flatnonzero(self.thresholds >= threshold)
        tp, fp = (int(self.tp[k[-1]]), int(self.fp[k[-1]])) if len(k) else (0, 0)
        r = tp / max(self.n_gt, 1)
        f = fp / max(self.area_mm2, 1e-12)
        p = r * density / (r * density + f) if r * density + f > 0 else 0.0
        return {
            "threshold": float(threshold),
            "tp": tp,
            "fp": fp,
            "fn": self.n_gt - tp,
            "recall": r,
            "fp_per_mm2": f,
            "precision_at_density": p,
            "f1_at_density": 2 * p * r / (p + r) if p + r > 0 else 0.0,
            "density": density,
        }


def sweep(results: Sequence[FieldResult], radius_um: float = RADIUS_UM) -> WholeFieldSweep:
    """Pool the candidates of ``results`` (optimal one-to-one matching at ``radius_um``)."""
    s = threshold_sweep(
        [r.gt_um for r in results],
        [r.pred_um for r in results],
        [r.scores for r in results],
        [radius_um] * len(results),
    )
    return WholeFieldSweep(
        s.thresholds, s.tp, s.fp, int(sum(len(r.gt_um) for r in results)), float(sum(r.area_mm2 for r in results))
    )


def best_threshold(sw: WholeFieldSweep, density: float = DEFAULT_DENSITY_PER_MM2) -> float:
    """The threshold that maximises whole-field F1 at ``density`` (0.5 when nothing was found).

    Ties go to the highest such threshold; it is placed midway to the next lower score so
    that a small shift of the score scale does not drop the last kept detection.
    """
    if len(sw.thresholds) == 0:
        return 0.5
    f1 = sw.f1_at(density)
    k = int(np.flatnonzero(f1 == f1.max())[0])
    lower = sw.thresholds[k + 1] if k + 1 < len(sw.thresholds) else 0.0
    return float(round((sw.thresholds[k] + lower) / 2, 4))


def look_alikes_rejected(
    results: Sequence[FieldResult], threshold: float, radius_um: float = RADIUS_UM
) -> tuple[int, int]:
    """(rejected, total): labelled look-alikes with no detection >= threshold within the radius."""
    rejected = total = 0
    for r in results:
        if not len(r.look_alikes_um):
            continue
        kept = r.pred_um[r.scores >= threshold]
        for p in r.look_alikes_um:
            total += 1
            rejected += int(not len(kept) or np.hypot(*(kept - p).T).min() > radius_um)
    return rejected, total


def table_rows(
    results: Sequence[FieldResult],
    threshold: float,
    densities: Sequence[float] = REPORT_DENSITIES,
    radius_um: float = RADIUS_UM,
    density: float = DEFAULT_DENSITY_PER_MM2,
) -> list[dict]:
    """One row per lab group and one for all: counts, recall, FP/mm2, precision and F1 at
    ``density`` and F1 at each of ``densities``, at ``threshold``; and the best F1 at
    ``density`` over all thresholds with its threshold."""
    groups: dict[str, list[FieldResult]] = {}
    for r in results:
        groups.setdefault(r.lab, []).append(r)
    rows = []
    for lab, rs in [*sorted(groups.items()), ("all", list(results))]:
        sw = sweep(rs, radius_um)
        at = sw.at(threshold, density)
        row = {"lab": lab, "images": len(rs), "mitoses": sw.n_gt, "area_mm2": sw.area_mm2, **at}
        for d in densities:
            row[f"f1@{d:g}"] = sw.at(threshold, d)["f1_at_density"]
        best = best_threshold(sw, density)
        row["best_threshold"] = best
        row["best_f1"] = sw.at(best, density)["f1_at_density"]
        rows.append(row)
    return rows


def validation_records(
    spec, split: str = "val", labs: Sequence[str] | None = None, exclude: Sequence[str] = ()
) -> list[ImageRecord]:
    """The label-complete records of ``spec``'s ``split`` (``"val"``: the slides the
    detector's training held out; ``"all"``), optionally only of ``labs``, never of ``exclude``
    (the labs a leave-one-lab-out run held out, which may not choose its checkpoint or threshold)."""
    from mitodet.data.sampler import split_by_slide
    from mitodet.data.spec import read_sources

    if split not in ("val", "all"):
        raise ValueError(f"split must be 'val' or 'all', got {split!r}")
    records = [r for r in read_sources(spec.sources, spec.base) if label_complete(r)]
    if split == "val":
        records = split_by_slide(records, spec.val_fraction, spec.split_seed)[1]
    if labs:
        unknown = sorted(set(labs) - {lab_group(r) for r in records})
        if unknown:
            raise ValueError(
                f"no label-complete {split} images of lab(s) {unknown}; labs present: "
                f"{sorted({lab_group(r) for r in records})}"
            )
        records = [r for r in records if lab_group(r) in labs]
    return [r for r in records if lab_group(r) not in exclude]


def full_frame_results(detector, spec) -> list[FieldResult]:
    """The spec's ``full_frames`` through the real whole-image path (``Detector.detect_path``)."""
    from mitodet.data.spec import read_sources

    out = []
    for rec in read_sources(spec.full_frames, spec.base):
        if not rec.image.is_file():
            continue
        det = detector.detect_path(rec.image, mpp=rec.mpp, threshold=0.0)
        h, w = det.image_shape
        out.append(
            FieldResult(
                name=rec.image.name,
                lab=lab_group(rec),
                area_mm2=h * w * rec.mpp**2 * 1e-6,
                gt_um=rec.mitoses * rec.mpp,
                pred_um=det.points * rec.mpp,
                scores=det.scores,
                look_alikes_um=rec.hard_negatives * rec.mpp,
            )
        )
    return out


def frame_row(results: Sequence[FieldResult], threshold: float, radius_um: float = RADIUS_UM) -> dict:
    """Plain pooled P/R/F1 on whole frames (their own mitotic density), FP/mm2 and look-alikes."""
    from mitodet.evaluation.metrics import precision_recall_f1

    sw = sweep(results, radius_um)
    at = sw.at(threshold)
    p, r, f1 = precision_recall_f1(at["tp"], at["fp"], at["fn"])
    rej, tot = look_alikes_rejected(results, threshold, radius_um)
    return {
        "lab": "frames: " + ", ".join(sorted({x.lab for x in results})),
        "images": len(results),
        "mitoses": sw.n_gt,
        "area_mm2": sw.area_mm2,
        "threshold": threshold,
        "tp": at["tp"],
        "fp": at["fp"],
        "fn": at["fn"],
        "precision": p,
        "recall": r,
        "f1": f1,
        "fp_per_mm2": at["fp_per_mm2"],
        "look_alikes_rejected": rej,
        "look_alikes": tot,
    }
