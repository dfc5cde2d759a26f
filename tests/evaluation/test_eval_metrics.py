"""Pooled P/R/F1, 0/0 rules, radius conversion, threshold sweep and average precision."""

from __future__ import annotations

import numpy as np
import pytest

from mitodet.evaluation.metrics import (
    average_precision,
    evaluate_images,
    precision_recall_f1,
    threshold_sweep,
)

EMPTY = np.zeros((0, 2))


def test_zero_division_rules():
    assert precision_recall_f1(0, 0, 0) == (1.0, 1.0, 1.0)  # nothing to find, nothing claimed
    assert precision_recall_f1(0, 0, 3) == (0.0, 0.0, 0.0)  # missed everything, no detections
    assert precision_recall_f1(0, 2, 0) == (0.0, 0.0, 0.0)  # no GT, false alarms only
    p, r, f = precision_recall_f1(3, 1, 2)
    assert (p, r) == (0.75, 0.6)
    assert f == pytest.approx(2 * p * r / (p + r)) == pytest.approx(6 / 9)
    with pytest.raises(ValueError, match="-1"):
        precision_recall_f1(-1, 0, 0)


def test_counts_are_pooled_before_the_ratios():
    # image A: one GT found exactly              -> TP 1, FP 0, FN 0, F1 1.0
    # image B: three GT, no detections           -> TP 0, FP 0, FN 3, F1 0.0
    # pooled: TP 1, FP 0, FN 3 -> P 1.0, R 0.25, F1 2/(2+3) = 0.4 (the mean of per-image F1
    # would be 0.5: that is NOT what is reported)
    gt = [np.array([[10.0, 10.0]]), np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])]
    pred = [np.array([[11.0, 10.0]]), EMPTY]
    rep = evaluate_images(gt, pred, None, 0.25, names=["A", "B"])
    assert (rep.tp, rep.fp, rep.fn) == (1, 0, 3)
    assert (rep.precision, rep.recall) == (1.0, 0.25)
    assert rep.f1 == pytest.approx(0.4)
    assert [r.f1 for r in rep.images] == [1.0, 0.0]
    assert [r.name for r in rep.images] == ["A", "B"]
    assert rep.n_images == 2 and rep.n_gt == 4 and rep.n_pred == 1


def test_radius_is_converted_with_each_images_mpp():
    # GT (0, 0), detection 30 px away. 8 um is 32 px at 0.25 um/px (hit) but 26.7 px at
    # 0.3 um/px (miss); 7.5 um is exactly 30 px at 0.25 um/px (hit: the radius is inclusive).
    gt = [np.array([[0.0, 0.0]])] * 2
    pred = [np.array([[30.0, 0.0]])] * 2
    rep = evaluate_images(gt, pred, None, [0.25, 0.3], radius_um=8.0)
    assert [(r.tp, r.fp, r.fn) for r in rep.images] == [(1, 0, 0), (0, 1, 1)]
    assert rep.images[0].radius_px == pytest.approx(32.0)
    assert rep.images[1].radius_px == pytest.approx(8.0 / 0.3)
    rep = evaluate_images(gt[:1], pred[:1], None, [0.25], radius_um=7.5)
    assert (rep.tp, rep.radius_um) == (1, 7.5)
    rep = evaluate_images(gt[:1], pred[:1], None, [0.25], radius_um=7.4)
    assert rep.tp == 0


def _hand_case():
    # One image, mpp 1 so 8 um = 8 px. GT g0 (0, 0), g1 (100, 0).
    # p0 (1, 0) score 0.9 -> hits g0; p1 (50, 50) score 0.8 -> FP; p2 (101, 0) score 0.7 -> hits g1
    gt = [np.array([[0.0, 0.0], [100.0, 0.0]])]
    pred = [np.array([[1.0, 0.0], [50.0, 50.0], [101.0, 0.0]])]
    scores = [np.array([0.9, 0.8, 0.7])]
    return gt, pred, scores


@pytest.mark.parametrize("mode", ["optimal", "midog_greedy"])
def test_threshold_sweep_and_average_precision_by_hand(mode):
    gt, pred, scores = _hand_case()
    # threshold  kept        TP FP FN  precision  recall  F1
    # 0.9        p0           1  0  1  1          0.5     2/3
    # 0.8        p0 p1        1  1  1  0.5        0.5     2/4 = 0.5
    # 0.7        p0 p1 p2     2  1  0  2/3        1.0     4/5 = 0.8
    # best F1 0.8 at threshold 0.7.
    # AP (all-points): recall 0.5 with interpolated precision max(1, 0.5, 2/3) = 1, then
    # recall 1.0 with precision 2/3: AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    rep = evaluate_images(gt, pred, scores, 1.0, radius_um=8.0, mode=mode)
    sw = rep.sweep
    assert sw.thresholds.tolist() == [0.9, 0.8, 0.7]
    assert sw.tp.tolist() == [1, 1, 2]
    assert sw.fp.tolist() == [0, 1, 1]
    assert sw.fn.tolist() == [1, 1, 0]
    np.testing.assert_allclose(sw.precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(sw.recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(sw.f1, [2 / 3, 0.5, 0.8])
    assert rep.best_f1 == pytest.approx(0.8)
    assert rep.best_threshold == 0.7
    assert rep.average_precision == pytest.approx(5 / 6)
    # all detections kept by default
    assert (rep.tp, rep.fp, rep.fn, rep.threshold) == (2, 1, 0, None)
    # an explicit threshold keeps score >= T
    rep = evaluate_images(gt, pred, scores, 1.0, radius_um=8.0, threshold=0.8, mode=mode)
    assert (rep.tp, rep.fp, rep.fn, rep.threshold) == (1, 1, 1, 0.8)
    assert rep.images[0].n_pred == 2


def test_best_threshold_prefers_the_highest_on_ties():
    # GT g0 (0, 0), g1 (100, 0). p0 hits g0 (score 0.9); p1 hits g1, p2 and p3 are far
    # false positives, all three with score 0.5 (tied scores enter the sweep as one step).
    # threshold 0.9: TP 1, FP 0, FN 1 -> F1 2/3;  threshold 0.5: TP 2, FP 2, FN 0 -> F1 4/6.
    # Equal F1: the highest threshold (0.9) is reported.
    gt = [np.array([[0.0, 0.0], [100.0, 0.0]])]
    pred = [np.array([[1.0, 0.0], [101.0, 0.0], [50.0, 50.0], [0.0, 90.0]])]
    rep = evaluate_images(gt, pred, [np.array([0.9, 0.5, 0.5, 0.5])], 1.0)
    assert rep.sweep.thresholds.tolist() == [0.9, 0.5]
    assert rep.sweep.tp.tolist() == [1, 2] and rep.sweep.fp.tolist() == [0, 2]
    assert rep.best_f1 == pytest.approx(2 / 3) and rep.best_threshold == 0.9
    # AP: recall 0.5 at precision 1, recall 1.0 at precision 0.5 -> 0.5 + 0.25
    assert rep.average_precision == pytest.approx(0.75)


def test_average_precision_definition():
    assert average_precision([], []) == 0.0
    assert average_precision([1.0], [1.0]) == 1.0
    # precision rises later: interpolation takes the best precision at recall >= r
    # points (0.25, 0.5), (0.5, 1.0): AP = 0.25 * 1.0 + 0.25 * 1.0 = 0.5
    assert average_precision([0.25, 0.5], [0.5, 1.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        average_precision([0.1], [0.1, 0.2])


def test_empty_cases_and_missing_scores():
    # no GT and no predictions anywhere: perfect by the 0/0 rule; AP undefined
    rep = evaluate_images([EMPTY, EMPTY], [EMPTY, EMPTY], None, 0.25)
    assert (rep.precision, rep.recall, rep.f1, rep.best_f1) == (1.0, 1.0, 1.0, 1.0)
    assert rep.average_precision is None and rep.best_threshold is None
    # GT but no predictions: all zero, AP 0
    rep = evaluate_images([np.array([[1.0, 1.0]])], [EMPTY], None, 0.25)
    assert (rep.precision, rep.recall, rep.f1, rep.best_f1) == (0.0, 0.0, 0.0, 0.0)
    assert rep.average_precision == 0.0 and rep.best_threshold is None
    # predictions without scores: one sweep point, no meaningful best threshold
    rep = evaluate_images([np.array([[1.0, 1.0]])], [np.array([[2.0, 1.0]])], None, 0.25)
    assert rep.best_f1 == 1.0 and rep.best_threshold is None
    assert len(rep.sweep.thresholds) == 1
    # no images at all
    rep = evaluate_images([], [], None, [])
    assert rep.n_images == 0 and rep.f1 == 1.0


def test_per_domain_table_pools_within_each_domain():
    gt = [np.array([[0.0, 0.0]]), np.array([[0.0, 0.0]]), np.array([[0.0, 0.0]])]
    pred = [np.array([[1.0, 0.0]]), EMPTY, np.array([[90.0, 0.0]])]
    rep = evaluate_images(gt, pred, None, 0.25, domains=["aperio", "aperio", "hamamatsu"])
    dom = {d.domain: d for d in rep.domains}
    assert (dom["aperio"].n_images, dom["aperio"].tp, dom["aperio"].fn) == (2, 1, 1)
    assert dom["aperio"].f1 == pytest.approx(2 / 3)
    assert (dom["hamamatsu"].tp, dom["hamamatsu"].fp, dom["hamamatsu"].fn) == (0, 1, 1)
    d = rep.to_dict()
    assert d["domains"][0]["domain"] == "aperio" and len(d["images"]) == 3


@pytest.mark.parametrize("mode", ["optimal", "midog_greedy"])
def test_sweep_equals_direct_evaluation_at_every_threshold(mode):
    # The sweep is computed incrementally; re-evaluating from scratch must agree.
    rng = np.random.default_rng(5)
    gts, preds, scores = [], [], []
    for _ in range(6):
        n = int(rng.integers(0, 15))
        g = rng.uniform(0, 300, (n, 2))
        m = int(rng.integers(0, 20))
        p = rng.uniform(0, 300, (m, 2))
        if n and m:
            k = min(n, m)
            p[:k] = g[rng.integers(0, n, k)] + rng.normal(0, 15, (k, 2))
        gts.append(g)
        preds.append(p)
        scores.append(np.round(rng.random(m), 1))  # rounded: many tied scores
    mpps = rng.uniform(0.2, 0.3, 6)
    rep = evaluate_images(gts, preds, scores, mpps, radius_um=8.0, mode=mode)
    assert len(rep.sweep.thresholds) > 3
    for t, tp, fp, fn in zip(rep.sweep.thresholds, rep.sweep.tp, rep.sweep.fp, rep.sweep.fn):
        direct = evaluate_images(gts, preds, scores, mpps, radius_um=8.0, threshold=t, mode=mode)
        assert (direct.tp, direct.fp, direct.fn) == (tp, fp, fn), t
    # the lowest threshold keeps everything
    assert (rep.sweep.tp[-1], rep.sweep.fp[-1], rep.sweep.fn[-1]) == (rep.tp, rep.fp, rep.fn)
    sw = threshold_sweep(gts, preds, scores, [8.0 / m for m in mpps], mode)
    assert np.array_equal(sw.tp, rep.sweep.tp)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (([EMPTY], [EMPTY, EMPTY], None, 0.25), {}, "pred_list"),
        (([EMPTY], [EMPTY], None, 0.0), {}, "mpp"),
        (([EMPTY], [EMPTY], None, [0.25, 0.25]), {}, "mpp_list"),
        (([EMPTY], [EMPTY], None, 0.25), {"radius_um": -8}, "radius_um"),
        (([EMPTY], [EMPTY], None, 0.25), {"mode": "coco"}, "coco"),
        (([EMPTY], [np.ones((2, 2))], [np.ones(3)], 0.25), {}, "scores"),
        (([EMPTY], [EMPTY], None, 0.25), {"threshold": float("nan")}, "threshold"),
    ],
)
def test_bad_inputs(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_images(*args, **kwargs)
