"""Pooled precision / recall / F1, a score-threshold sweep and average precision.

Definitions (the same everywhere in mitodet):

* **Pooling.** TP, FP and FN are summed over all images first; precision, recall and F1 are
  computed once from the sums (the MITOS-ATYPIA-14, ICPR and MIDOG convention). Per-image
  and per-domain rows use the same formulas on their own sums. Never average per-image F1.
* **Formulas.** P = TP / (TP + FP), R = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN) (equal to
  the harmonic mean of P and R whenever that is defined).
* **0/0.** When TP = FP = FN = 0 (no ground truth and no prediction: nothing to find and
  nothing claimed) P = R = F1 = 1.0, as MIDOG's F1 does. Otherwise any ratio whose
  denominator is 0 is 0.0: no predictions but some ground truth gives P = R = F1 = 0; no
  ground truth but some predictions gives P = R = F1 = 0 (recall is undefined there and is
  reported as 0, not as a free 1).
* **Radius.** Given in micrometres (8 um for MITOS-ATYPIA-14 / ICPR / the RDLM paper, 7.5 um
  for MIDOG and TUPAC16) and converted to pixels once per image: ``radius_px = radius_um /
  mpp``.
* **Threshold.** A prediction is kept when ``score >= threshold``. Without scores every
  prediction has score 1.0.
* **Sweep.** TP/FP/FN at every unique score as threshold (descending), pooled over images.
  In ``"optimal"`` mode the TP count at each threshold is the maximum number of one-to-one
  matches among the kept predictions, computed exactly and incrementally (augmenting paths,
  predictions added in descending score); in ``"midog_greedy"`` mode each image is
  re-matched with the greedy rule at each of its own score levels. ``best_f1`` is the
  largest F1 of the sweep and ``best_threshold`` the *highest* threshold reaching it.
* **Average precision (AP).** Area under the pooled precision-recall curve of the sweep with
  all-points interpolation (PASCAL VOC 2010+ style): points are sorted by recall, the
  precision at recall r is replaced by the largest precision at any recall >= r, and AP =
  sum_k (R_k - R_{k-1}) * P_interp(R_k) with R_0 = 0. Points are per unique score, so tied
  scores enter as one step. AP is ``None`` when there is no ground truth at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from mitodet.checks import as_points
from mitodet.evaluation.matching import (
    MATCH_MODES,
    MatchMode,
    augmenting_order_matching,
    match_points,
    within_radius_pairs,
)

DEFAULT_RADIUS_UM = 8.0
MIDOG_RADIUS_UM = 7.5
#: point-file formats (``PointSet.fmt``) whose own evaluation matches at MIDOG's 7.5 um
MIDOG_FORMATS = ("midog_coco", "multiple_points", "midog_gt")


def radius_for_format(fmt: str) -> float:
    """The matching radius (um) a ground-truth format is scored at: 7.5 um for the MIDOG
    formats (the MIDOG evaluation's 30 px at 0.25 um/px), else 8 um (the ICPR 2012 /
    MITOS-ATYPIA-14 / TUPAC16 rule). Used by ``mitodet evaluate`` and ``detect --gt`` alike."""
    return MIDOG_RADIUS_UM if fmt in MIDOG_FORMATS else DEFAULT_RADIUS_UM


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts, with the module's 0/0 rule.

    Returns:
        ``(precision, recall, f1)``; all 1.0 when ``tp == fp == fn == 0``, and any ratio with
        a zero denominator otherwise 0.0.
    """
    if min(tp, fp, fn) < 0:
        raise ValueError(f"counts must be >= 0, got tp={tp}, fp={fp}, fn={fn}")
    if tp == 0 and fp == 0 and fn == 0:
        return 1.0, 1.0, 1.0
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn)
    return float(precision), float(recall), float(f1)


@dataclass(frozen=True)
class ImageResult:
    """Counts for one image at the report's threshold. ``radius_px`` = radius_um / mpp."""

    name: str
    domain: str
    mpp: float
    radius_px: float
    n_gt: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class DomainResult:
    """Counts pooled over the images of one domain (scanner, lab or tumour type)."""

    domain: str
    n_images: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True, eq=False)
class ThresholdSweep:
    """Pooled counts at every unique score used as threshold, highest threshold first.

    All arrays have shape (T,); ``thresholds`` is strictly decreasing.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class EvaluationReport:
    """The result of :func:`evaluate_images`.

    ``precision``/``recall``/``f1``/``tp``/``fp``/``fn`` are pooled at ``threshold`` (``None``:
    all predictions kept). ``best_f1``/``best_threshold``/``average_precision`` come from the
    sweep. ``radius_um`` is the matching radius in micrometres.
    """

    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    threshold: float | None
    best_f1: float
    best_threshold: float | None
    average_precision: float | None
    radius_um: float
    mode: str
    n_images: int
    n_gt: int
    n_pred: int
    images: tuple[ImageResult, ...] = field(default_factory=tuple)
    domains: tuple[DomainResult, ...] = field(default_factory=tuple)
    sweep: ThresholdSweep | None = None

    def to_dict(self, *, images: bool = True, sweep: bool = False) -> dict:
        """A JSON-ready dict (plain Python types)."""
        out = {
            k: getattr(self, k)
            for k in (
                "precision",
                "recall",
                "f1",
                "tp",
                "fp",
                "fn",
                "threshold",
                "best_f1",
                "best_threshold",
                "average_precision",
                "radius_um",
                "mode",
                "n_images",
                "n_gt",
                "n_pred",
            )
        }
        out["domains"] = [asdict(d) for d in self.domains]
        if images:
            out["images"] = [asdict(r) for r in self.images]
        if sweep and self.sweep is not None:
            out["sweep"] = self.sweep.to_dict()
        return out


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-points interpolated AP (PASCAL VOC 2010+) of a precision-recall point set.

    Args:
        recall: (T,) recall of each operating point.
        precision: (T,) precision of each operating point.

    Returns:
        sum_k (R_k - R_{k-1}) * max_{j: R_j >= R_k} P_j over the distinct sorted recalls,
        with R_0 = 0. 0.0 for an empty set.
    """
    r = np.asarray(recall, dtype=np.float64).reshape(-1)
    p = np.asarray(precision, dtype=np.float64).reshape(-1)
    if r.shape != p.shape:
        raise ValueError(f"recall and precision differ in length: {r.shape} vs {p.shape}")
    if len(r) == 0:
        return 0.0
    order = np.argsort(r, kind="stable")
    r, p = r[order], p[order]
    p_env = np.maximum.accumulate(p[::-1])[::-1]  # best precision at recall >= r
    r_prev = np.concatenate([[0.0], r[:-1]])
    return float(np.sum((r - r_prev) * p_env))


def _as_pts(x) -> np.ndarray:
    return as_points(x, "points")


def _sweep_events(
    gt: np.ndarray, pred: np.ndarray, scores: np.ndarray, radius_px: float, mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, d_tp, d_npred) events of one image: pooled TP(t) is the sum of d_tp over
    events with score >= t, and the number of kept predictions the sum of d_npred."""
    n_pred = len(pred)
    if n_pred == 0:
        z = np.zeros(0)
        return z, z, z
    if mode == "optimal":
        gi, pi, d = within_radius_pairs(gt, pred, radius_px)
        adjacency: list[list[int]] = [[] for _ in range(n_pred)]
        for k in np.lexsort((d, pi)):
            adjacency[pi[k]].append(int(gi[k]))
        order = np.lexsort((np.arange(n_pred), -scores))
        _, gained = augmenting_order_matching(len(gt), adjacency, order)
        return scores[order], gained.astype(np.float64), np.ones(n_pred)
    levels = np.unique(scores)[::-1]
    tps = np.array(
        [match_points(gt, pred[scores >= t], radius_px, mode=mode).tp for t in levels],
        dtype=np.float64,
    )
    counts = np.array([(scores == t).sum() for t in levels], dtype=np.float64)
    return levels, np.diff(np.concatenate([[0.0], tps])), counts


def threshold_sweep(
    gt_list: Sequence[np.ndarray],
    pred_list: Sequence[np.ndarray],
    score_list: Sequence[np.ndarray],
    radius_px_list: Sequence[float],
    mode: MatchMode = "optimal",
) -> ThresholdSweep:
    """Pooled TP/FP/FN and P/R/F1 with every unique score as threshold (``score >= t``).

    Args:
        gt_list: per image (N_i, 2) ground-truth (x, y) in pixels.
        pred_list: per image (M_i, 2) predicted (x, y) in pixels.
        score_list: per image (M_i,) scores.
        radius_px_list: per image matching radius in pixels.
        mode: ``"optimal"`` or ``"midog_greedy"``.

    Returns:
        A :class:`ThresholdSweep`, thresholds in decreasing order.
    """
    ev_s, ev_tp, ev_np = [], [], []
    n_gt = 0
    for gt, pred, sc, rad in zip(gt_list, pred_list, score_list, radius_px_list):
        gt, pred = _as_pts(gt), _as_pts(pred)
        n_gt += len(gt)
        s, dtp, dnp = _sweep_events(gt, pred, np.asarray(sc, dtype=np.float64), rad, mode)
        ev_s.append(s)
        ev_tp.append(dtp)
        ev_np.append(dnp)
    s = np.concatenate(ev_s) if ev_s else np.zeros(0)
    if len(s) == 0:
        e = np.zeros(0)
        ei = np.zeros(0, dtype=np.int64)
        return ThresholdSweep(e, ei, ei, ei, e, e, e)
    order = np.argsort(-s, kind="stable")
    s = s[order]
    tp_cum = np.cumsum(np.concatenate(ev_tp)[order])
    np_cum = np.cumsum(np.concatenate(ev_np)[order])
    last = np.flatnonzero(np.concatenate([s[1:] != s[:-1], [True]]))  # end of each score group
    thr = s[last]
    tp = np.rint(tp_cum[last]).astype(np.int64)
    n_kept = np.rint(np_cum[last]).astype(np.int64)
    fp = n_kept - tp
    fn = n_gt - tp
    prf = np.array([precision_recall_f1(int(a), int(b), int(c)) for a, b, c in zip(tp, fp, fn)])
    return ThresholdSweep(thr, tp, fp, fn, prf[:, 0], prf[:, 1], prf[:, 2])


def _broadcast(name: str, value, n: int) -> list:
    if value is None or np.isscalar(value):
        return [value] * n
    seq = list(value)
    if len(seq) != n:
        raise ValueError(f"{name} has {len(seq)} entries but there are {n} images")
    return seq


def evaluate_images(
    gt_list: Sequence[np.ndarray],
    pred_list: Sequence[np.ndarray],
    score_list: Sequence[np.ndarray | None] | None,
    mpp_list: Sequence[float] | float,
    radius_um: float = DEFAULT_RADIUS_UM,
    threshold: float | None = None,
    mode: MatchMode = "optimal",
    *,
    names: Sequence[str] | None = None,
    domains: Sequence[str] | None = None,
) -> EvaluationReport:
    """Evaluate point detections on a set of images.

    Args:
        gt_list: per image, (N_i, 2) ground-truth mitosis centres (x, y) in level-0 pixels
            (hard negatives must already be removed).
        pred_list: per image, (M_i, 2) predicted centres (x, y) in level-0 pixels.
        score_list: per image (M_i,) scores, or ``None`` (for the list or an entry): every
            prediction of that image gets score 1.0.
        mpp_list: per image micrometres per pixel (or one value for all images).
        radius_um: matching radius in micrometres (8.0 MITOS-ATYPIA-14 / ICPR; 7.5 MIDOG).
        threshold: keep predictions with ``score >= threshold`` for the pooled, per-image
            and per-domain numbers; ``None`` keeps all. The sweep always uses all.
        mode: ``"optimal"`` or ``"midog_greedy"`` (see :mod:`mitodet.evaluation.matching`).
        names: optional image names for the per-image rows (default ``"0"``, ``"1"``, ...).
        domains: optional domain (scanner) per image for the per-domain table.

    Returns:
        An :class:`EvaluationReport`.

    Raises:
        ValueError: on lists of different lengths, a non-positive mpp or radius, a
            non-finite threshold, or an unknown mode.
    """
    n = len(gt_list)
    if len(pred_list) != n:
        raise ValueError(f"gt_list has {n} images but pred_list has {len(pred_list)}")
    if mode not in MATCH_MODES:
        raise ValueError(f"unknown matching mode {mode!r}; choose one of {MATCH_MODES}")
    if not (np.isfinite(radius_um) and radius_um > 0):
        raise ValueError(f"radius_um must be a positive number of micrometres, got {radius_um!r}")
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number or None, got {threshold!r}")
    scores_in = _broadcast("score_list", score_list, n) if score_list is not None else [None] * n
    mpps = _broadcast("mpp_list", mpp_list, n)
    names_l = [str(x) for x in names] if names is not None else [str(i) for i in range(n)]
    doms = [str(x) for x in domains] if domains is not None else [""] * n
    if len(names_l) != n or len(doms) != n:
        raise ValueError(f"names and domains need {n} entries each")

    gts, preds, scores, radii = [], [], [], []
    for i in range(n):
        mpp = mpps[i]
        if mpp is None or not (np.isfinite(mpp) and mpp > 0):
            raise ValueError(f"image {names_l[i]!r}: mpp must be > 0 um/px, got {mpp!r}")
        gt, pred = _as_pts(gt_list[i]), _as_pts(pred_list[i])
        sc = scores_in[i]
        sc = np.ones(len(pred)) if sc is None else np.asarray(sc, dtype=np.float64).reshape(-1)
        if len(sc) != len(pred):
            raise ValueError(f"image {names_l[i]!r}: {len(pred)} predictions but {len(sc)} scores")
        gts.append(gt)
        preds.append(pred)
        scores.append(sc)
        radii.append(float(radius_um) / float(mpp))

    rows: list[ImageResult] = []
    for i in range(n):
        keep = np.ones(len(preds[i]), bool) if threshold is None else scores[i] >= threshold
        res = match_points(gts[i], preds[i][keep], radii[i], scores=scores[i][keep], mode=mode)
        p, r, f = precision_recall_f1(res.tp, res.fp, res.fn)
        rows.append(
            ImageResult(
                name=names_l[i],
                domain=doms[i],
                mpp=float(mpps[i]),
                radius_px=radii[i],
                n_gt=len(gts[i]),
                n_pred=int(keep.sum()),
                tp=res.tp,
                fp=res.fp,
                fn=res.fn,
                precision=p,
                recall=r,
                f1=f,
            )
        )
    tp = sum(r.tp for r in rows)
    fp = sum(r.fp for r in rows)
    fn = sum(r.fn for r in rows)
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)

    dom_rows = []
    for dom in sorted(set(doms)):
        sel = [r for r in rows if r.domain == dom]
        dtp, dfp, dfn = (sum(getattr(r, k) for r in sel) for k in ("tp", "fp", "fn"))
        dp, dr, df = precision_recall_f1(dtp, dfp, dfn)
        dom_rows.append(DomainResult(dom, len(sel), dtp, dfp, dfn, dp, dr, df))

    sweep = threshold_sweep(gts, preds, scores, radii, mode)
    n_gt = sum(len(g) for g in gts)
    if len(sweep.thresholds):
        k = int(np.argmax(sweep.f1))  # first maximum = highest threshold reaching it
        best_f1, best_threshold = float(sweep.f1[k]), float(sweep.thresholds[k])
    else:  # no predictions at all
        best_f1, best_threshold = precision_recall_f1(0, 0, n_gt)[2], None
    if score_list is None or all(s is None for s in scores_in):
        best_threshold = None  # no scores given: a threshold of "1.0" would mean nothing
    ap = average_precision(sweep.recall, sweep.precision) if n_gt > 0 else None

    return EvaluationReport(
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        fn=fn,
        threshold=None if threshold is None else float(threshold),
        best_f1=best_f1,
        best_threshold=best_threshold,
        average_precision=ap,
        radius_um=float(radius_um),
        mode=mode,
        n_images=n,
        n_gt=n_gt,
        n_pred=sum(r.n_pred for r in rows),
        images=tuple(rows),
        domains=tuple(dom_rows),
        sweep=sweep,
    )
