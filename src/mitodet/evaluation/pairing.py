"""Ground truth against predictions, file by file: which images pair, and the evaluation of the pairs.

The rules ``mitodet evaluate`` and ``mitodet detect --gt`` share: images pair by file name
without extension (:func:`~mitodet.evaluation.io.image_key`); one image on each side pairs
whatever the names; a ground-truth image that was never annotated (``PointSet.labelled``
False, e.g. MIDOG++'s GT450 scans) is neither evaluated nor a source of false positives; the
matching radius is the ground truth's format's (:func:`~mitodet.evaluation.metrics.radius_for_format`)
unless given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


class GroundTruthError(ValueError):
    """The ground-truth file holds nothing to evaluate against (the message does not name it)."""


def pair_by_name(gt_names: Iterable[str], other_names: Iterable[str]) -> tuple[dict[str, str], bool]:
    """``({gt name: other name}, paired_whatever_the_names)``: the names in common, or, when
    there are none and each side has exactly one image, those two (the flag is then True)."""
    gt, other = sorted(set(gt_names)), sorted(set(other_names))
    pairing = {n: n for n in gt if n in set(other)}
    if not pairing and len(gt) == 1 and len(other) == 1:
        return {gt[0]: other[0]}, True
    return pairing, False


def evaluate_point_sets(
    gt: dict[str, Any],
    pred: dict[str, Any],
    *,
    mpp: float | None = None,
    radius_um: float | None = None,
    threshold: float | None = None,
    mode: str = "optimal",
):
    """Evaluate the predictions ``pred`` against ``gt`` (both ``{image name: PointSet}``, as
    :func:`~mitodet.evaluation.io.load_points` gives them) -> ``(EvaluationReport, notes)``.

    Args:
        mpp: the pixel size of every image when the files do not give one.
        radius_um: the matching radius (None: the ground truth's format's; the smallest when
            the formats differ).
        threshold / mode: as :func:`~mitodet.evaluation.metrics.evaluate_images`.

    Raises:
        ValueError: nothing to evaluate, no image in common, or an image without a pixel size;
            the message names the images and the fix.
    """
    from mitodet.evaluation.metrics import evaluate_images, radius_for_format

    if not gt:
        raise GroundTruthError("holds no image. Check the path.")
    notes: list[str] = []
    unlabelled = sorted(n for n, g in gt.items() if not g.labelled)
    if unlabelled:  # truth unknown, not "no mitoses"
        notes.append(f"{len(unlabelled)} GT image(s) were never annotated and are skipped: {unlabelled[:3]}")
        gt = {n: g for n, g in gt.items() if g.labelled}
        if not gt:
            raise GroundTruthError("every image in it is unannotated; nothing to evaluate against")
        pred = {n: q for n, q in pred.items() if n not in unlabelled}
    names = sorted(gt)
    pairing, whatever = pair_by_name(names, pred)
    if whatever:
        ((g, q),) = pairing.items()
        notes.append(f"one image on each side: paired GT {g!r} with PRED {q!r}")
    if not pairing and pred:
        raise ValueError(
            f"no image names in common: GT has e.g. {names[:3]}, PRED has e.g. {sorted(pred)[:3]}. Images are "
            "paired by file name without extension; rename the prediction files or use an 'image' column."
        )
    missing = [n for n in names if n not in pairing]
    if missing:
        notes.append(f"{len(missing)} GT image(s) have no predictions (counted as none found)")
    extra = sorted(set(pred) - set(pairing.values()))
    if extra:
        notes.append(f"{len(extra)} PRED image(s) are not in GT and were ignored: {extra[:3]}")

    gts, preds, scores, mpps, doms = [], [], [], [], []
    for n in names:
        g = gt[n]
        q = pred.get(pairing.get(n, ""), None)
        m = mpp or g.mpp or (q.mpp if q is not None else None)
        if m is None:
            raise ValueError(
                f"no pixel size for image {n!r}: {g.source} does not give one. Pass --mpp UM_PER_PX (e.g. --mpp 0.25)."
            )
        gts.append(g.to_pixels(m).mitoses()[0])
        if q is None:
            preds.append(np.zeros((0, 2)))
            scores.append(None)
        else:
            pts, sc = q.to_pixels(m).mitoses()
            preds.append(pts)
            scores.append(sc)
        mpps.append(m)
        doms.append(g.domain or (q.domain if q is not None else ""))
    radius = radius_um if radius_um is not None else min(radius_for_format(gt[n].fmt) for n in names)
    if threshold is not None and all(s is None for s in scores):
        notes.append("PRED has no scores: --threshold has no effect (every score is 1.0)")
    rep = evaluate_images(
        gts, preds, scores, mpps, radius_um=radius, threshold=threshold, mode=mode, names=names, domains=doms
    )
    return rep, notes


__all__ = ["GroundTruthError", "pair_by_name", "evaluate_point_sets"]
