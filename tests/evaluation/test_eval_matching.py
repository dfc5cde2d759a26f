"""match_points: hand-worked cases, empty inputs, bad inputs, and independent cross-checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from mitodet.evaluation.matching import MatchResult, match_points, within_radius_pairs

EMPTY = np.zeros((0, 2))


def counts(res: MatchResult) -> tuple[int, int, int]:
    return res.tp, res.fp, res.fn


def test_three_point_case_worked_by_hand():
    # gt:   g0 (0, 0)      g1 (20, 0)      g2 (100, 100)
    # pred: p0 (3, 4)      p1 (20, 9)      p2 (50, 50)
    # distances: p0-g0 = 5; p1-g1 = 9; p0-g1 = sqrt(17^2 + 4^2) = 17.5; p2 is > 70 from all.
    # radius 8:  only p0-g0 is within reach          -> TP 1, FP 2 (p1, p2), FN 2 (g1, g2)
    # radius 10: p0-g0 and p1-g1                     -> TP 2, FP 1 (p2),     FN 1 (g2)
    gt = np.array([[0.0, 0.0], [20.0, 0.0], [100.0, 100.0]])
    pred = np.array([[3.0, 4.0], [20.0, 9.0], [50.0, 50.0]])
    for mode in ("optimal", "midog_greedy"):
        r8 = match_points(gt, pred, 8.0, mode=mode)
        assert counts(r8) == (1, 2, 2)
        assert r8.pairs.tolist() == [[0, 0]]
        assert r8.distances.tolist() == [5.0]
        r10 = match_points(gt, pred, 10.0, mode=mode)
        assert counts(r10) == (2, 1, 1)
        assert r10.pairs.tolist() == [[0, 0], [1, 1]]
        assert r10.matched_gt.tolist() == [True, True, False]
        assert r10.matched_pred.tolist() == [True, True, False]


def test_chain_where_optimal_and_midog_greedy_differ():
    # A chain g0 - p0 - g1 plus p1 on g0's other side, radius 8:
    #   g0 (0, 0), g1 (10, 0); p0 (6, 0): 6 from g0, 4 from g1; p1 (-7, 0): 7 from g0, 17 from g1.
    # midog_greedy visits g0 first and takes its nearest prediction p0 (6 < 7); g1's only
    #   candidate p0 is gone                                     -> TP 1, FP 1 (p1), FN 1 (g1)
    # optimal pairs g0-p1 (7) and g1-p0 (4), both within 8      -> TP 2, FP 0, FN 0
    gt = np.array([[0.0, 0.0], [10.0, 0.0]])
    pred = np.array([[6.0, 0.0], [-7.0, 0.0]])
    greedy = match_points(gt, pred, 8.0, mode="midog_greedy")
    assert counts(greedy) == (1, 1, 1)
    assert greedy.pairs.tolist() == [[0, 0]]
    opt = match_points(gt, pred, 8.0)
    assert counts(opt) == (2, 0, 0)
    assert opt.pairs.tolist() == [[0, 1], [1, 0]]
    assert opt.distances.tolist() == [7.0, 4.0]
    # The greedy rule depends on the order of the ground truth: with g1 first it takes p0,
    # and g0 then takes p1 -> TP 2. The optimal rule does not depend on order.
    assert counts(match_points(gt[::-1], pred, 8.0, mode="midog_greedy")) == (2, 0, 0)
    assert counts(match_points(gt[::-1], pred[::-1], 8.0)) == (2, 0, 0)


def test_optimal_minimises_distance_among_maximum_matchings():
    # g0 (0,0), g1 (4,0); p0 (1,0), p1 (3,0); radius 5: both pairings give 2 matches;
    # g0-p0 + g1-p1 costs 1 + 1 = 2, the crossed pairing 3 + 3 = 6 -> the first.
    gt = np.array([[0.0, 0.0], [4.0, 0.0]])
    pred = np.array([[1.0, 0.0], [3.0, 0.0]])
    res = match_points(gt, pred, 5.0)
    assert res.pairs.tolist() == [[0, 0], [1, 1]]
    assert res.distances.sum() == pytest.approx(2.0)


def test_scores_choose_which_prediction_is_matched_but_not_how_many():
    # one gt, two predictions within reach: p0 nearer (score 0.2), p1 farther (score 0.9)
    gt = np.array([[0.0, 0.0]])
    pred = np.array([[1.0, 0.0], [5.0, 0.0]])
    assert match_points(gt, pred, 8.0).pairs.tolist() == [[0, 0]]  # nearest
    res = match_points(gt, pred, 8.0, scores=[0.2, 0.9])
    assert res.pairs.tolist() == [[0, 1]]  # highest score
    assert counts(res) == (1, 1, 0)
    # the greedy challenge rule ignores scores
    assert match_points(gt, pred, 8.0, scores=[0.2, 0.9], mode="midog_greedy").pairs.tolist() == [[0, 0]]


def test_radius_is_inclusive_and_coincident_points_match():
    gt = np.array([[0.0, 0.0], [50.0, 50.0]])
    pred = np.array([[3.0, 4.0], [50.0, 50.0]])  # distance exactly 5, and 0
    for mode in ("optimal", "midog_greedy"):
        assert counts(match_points(gt, pred, 5.0, mode=mode)) == (2, 0, 0)
        assert counts(match_points(gt, pred, 4.999, mode=mode)) == (1, 1, 1)


@pytest.mark.parametrize("mode", ["optimal", "midog_greedy"])
def test_empty_inputs(mode):
    pts = np.array([[1.0, 2.0], [3.0, 4.0]])
    r = match_points(EMPTY, EMPTY, 8.0, mode=mode)
    assert counts(r) == (0, 0, 0)
    assert r.pairs.shape == (0, 2) and r.matched_gt.shape == (0,) and r.matched_pred.shape == (0,)
    assert counts(match_points(EMPTY, pts, 8.0, mode=mode)) == (0, 2, 0)
    assert counts(match_points(pts, EMPTY, 8.0, mode=mode)) == (0, 0, 2)
    assert counts(match_points([], [], 8.0, mode=mode)) == (0, 0, 0)
    assert counts(match_points(pts, EMPTY, 8.0, scores=[], mode=mode)) == (0, 0, 2)


def test_inputs_are_not_modified():
    gt = np.array([[0.0, 0.0], [10.0, 0.0]])
    pred = np.array([[6.0, 0.0], [-7.0, 0.0]])
    g0, p0 = gt.copy(), pred.copy()
    match_points(gt, pred, 8.0)
    match_points(gt, pred, 8.0, mode="midog_greedy")
    assert np.array_equal(gt, g0) and np.array_equal(pred, p0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gt=np.zeros((3, 3)), pred=EMPTY, radius=8.0), "shape"),
        (dict(gt=EMPTY, pred=[[np.nan, 1.0]], radius=8.0), "NaN"),
        (dict(gt=EMPTY, pred=EMPTY, radius=0.0), "radius"),
        (dict(gt=EMPTY, pred=EMPTY, radius=-1.0), "radius"),
        (dict(gt=EMPTY, pred=EMPTY, radius="big"), "radius"),
        (dict(gt=EMPTY, pred=EMPTY, radius=8.0, mode="hungarian"), "hungarian"),
        (dict(gt=EMPTY, pred=[[1.0, 1.0]], radius=8.0, scores=[0.1, 0.2]), "scores"),
    ],
)
def test_bad_inputs_raise_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        match_points(**kwargs)


def _reference_max_matches(gt: np.ndarray, pred: np.ndarray, radius: float) -> int:
    """Maximum number of one-to-one matches within radius, independently: the assignment
    maximising the number of 1s of the 0/1 within-radius matrix."""
    if len(gt) == 0 or len(pred) == 0:
        return 0
    d = np.linalg.norm(gt[:, None] - pred[None], axis=2)
    within = (d <= radius).astype(float)
    r, c = linear_sum_assignment(within, maximize=True)
    return int(within[r, c].sum())


def _reference_min_distance(gt, pred, radius, n_matches) -> float:
    """Smallest total distance of any matching with ``n_matches`` in-radius pairs."""
    d = np.linalg.norm(gt[:, None] - pred[None], axis=2)
    cost = np.where(d <= radius, d, 1e6)
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < 1e6
    assert ok.sum() == n_matches
    return float(d[r[ok], c[ok]].sum())


def test_optimal_is_maximum_cardinality_on_random_point_sets():
    rng = np.random.default_rng(1234)
    for trial in range(150):
        n, m = rng.integers(0, 25, size=2)
        gt = rng.uniform(0, 100, (n, 2))
        pred = rng.uniform(0, 100, (m, 2))
        if trial % 3 == 0 and n and m:  # clustered sets make long chains
            pred = gt[rng.integers(0, n, m)] + rng.normal(0, 6, (m, 2))
        radius = float(rng.uniform(3, 20))
        scores = rng.random(m) if trial % 2 else None
        res = match_points(gt, pred, radius, scores=scores)
        ref = _reference_max_matches(gt, pred, radius)
        assert res.tp == ref, trial
        assert (res.fp, res.fn) == (m - ref, n - ref)
        assert np.all(res.distances <= radius)
        assert len(set(res.pairs[:, 0])) == res.tp == len(set(res.pairs[:, 1]))
        if scores is None and ref:
            assert res.distances.sum() == pytest.approx(_reference_min_distance(gt, pred, radius, ref))


def _reference_midog_greedy(gt: np.ndarray, pred: np.ndarray, radius: float) -> tuple[int, int, int]:
    """The rule of evalutils' score_detection, transcribed independently: each gt in order
    takes its nearest unused prediction within radius."""
    if len(gt) == 0:
        return 0, len(pred), 0
    if len(pred) == 0:
        return 0, 0, len(gt)
    used = np.zeros(len(pred), bool)
    tp = fn = 0
    for g in gt:
        d = np.linalg.norm(pred - g, axis=1)
        for j in np.argsort(d):
            if d[j] > radius:
                fn += 1
                break
            if not used[j]:
                used[j] = True
                tp += 1
                break
        else:
            fn += 1
    return tp, int((~used).sum()), fn


def _random_sets(rng, n_max=40):
    n, m = rng.integers(0, n_max, size=2)
    gt = rng.uniform(0, 200, (n, 2))
    pred = rng.uniform(0, 200, (m, 2))
    if n and m:
        k = min(n, m) // 2
        pred[:k] = gt[rng.integers(0, n, k)] + rng.normal(0, 8, (k, 2))
    return gt, pred, float(rng.uniform(5, 25))


def test_midog_greedy_matches_an_independent_transcription():
    rng = np.random.default_rng(7)
    for _ in range(150):
        gt, pred, radius = _random_sets(rng)
        assert counts(match_points(gt, pred, radius, mode="midog_greedy")) == _reference_midog_greedy(gt, pred, radius)


def test_midog_greedy_matches_grand_challenge_score_detection():
    # grand-challenge-metrics is the renamed evalutils (PyPI: evalutils 0.6.0 depends on it).
    try:  # PyPI grand-challenge-metrics (evalutils >= 0.6 is an alias of it)
        from grand_challenge_metrics import scorers
    except ImportError:  # older evalutils releases ship the same function
        scorers = pytest.importorskip(
            "evalutils.scorers", reason="grand-challenge-metrics (or evalutils) not installed"
        )
    rng = np.random.default_rng(11)
    for _ in range(120):
        gt, pred, radius = _random_sets(rng)
        ref = scorers.score_detection(
            ground_truth=[tuple(p) for p in gt], predictions=[tuple(p) for p in pred], radius=radius
        )
        res = match_points(gt, pred, radius, mode="midog_greedy")
        assert (res.tp, res.fp, res.fn) == (
            ref.true_positives,
            ref.false_positives,
            ref.false_negatives,
        )


def test_ten_thousand_points_stay_sparse():
    # a slide's worth of points: matching works on the sparse within-radius pairs (a k-d tree),
    # never a dense 10,000 x 10,000 distance matrix (what made it fast is checked, not a clock)
    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 20000, (10000, 2))
    pred = np.vstack([gt[:9000] + rng.normal(0, 8, (9000, 2)), rng.uniform(0, 20000, (1000, 2))])
    gi, _, _ = within_radius_pairs(gt, pred, 32.0)
    assert len(gi) < 2 * len(gt)  # about one candidate pair per point, not 10^8
    res = match_points(gt, pred, 32.0)
    assert res.tp >= 8990 and res.tp + res.fn == 10000 and res.tp + res.fp == 10000
