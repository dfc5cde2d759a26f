"""One-to-one matching of predicted points to ground-truth points within a radius.

Two rules are offered:

``"optimal"`` (the default)
    The largest possible number of one-to-one pairs whose distance is at most ``radius``
    (a maximum-cardinality bipartite matching on the graph "within radius"). Among all
    maximum matchings it then minimises the total distance. When ``scores`` are given, the
    set of matched predictions is instead chosen first as the highest-scoring one possible
    (processing predictions in descending score, a lower-scored prediction only takes a
    ground truth that no higher-scored prediction can take: the greedy basis of the
    transversal matroid, which is still maximum-cardinality), and the pairing of that set
    minimises the total distance. This is the rule the threshold sweep in
    :mod:`mitodet.evaluation.metrics` counts with, so the point "all predictions" of the
    sweep and :func:`match_points` agree. Gating by radius *before* optimising is what makes
    the count maximal; matching by minimum total distance first and dropping pairs beyond
    the radius afterwards loses true positives.

``"midog_greedy"``
    The rule of the MIDOG challenge evaluation, which calls ``score_detection`` of the
    grand-challenge package ``evalutils`` (now published on PyPI as
    ``grand-challenge-metrics``, ``grand_challenge_metrics.scorers.score_detection``, MIT,
    version 0.6.0 read): ground-truth points are visited in their given order; each takes the
    *nearest* still-unused prediction among those within ``radius`` (inclusive); a ground
    truth with none left is a false negative, unused predictions are false positives.
    Scores play no part (the challenge scores every submitted point). The only possible
    difference to the original is the order of exactly equidistant predictions (here the
    lower prediction index first; the original leaves it to scikit-learn's ball tree).

Distances are Euclidean in the units of the inputs (pixels for mitodet: convert a radius
in micrometres with the image's mpp first). A pair at exactly ``radius`` counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mitodet.checks import as_points

MatchMode = Literal["optimal", "midog_greedy"]
MATCH_MODES: tuple[str, ...] = ("optimal", "midog_greedy")


@dataclass(frozen=True, eq=False)
class MatchResult:
    """The outcome of :func:`match_points`.

    Attributes:
        tp: number of matched pairs (true positives).
        fp: predictions left unmatched (false positives).
        fn: ground-truth points left unmatched (false negatives).
        pairs: int64 array (K, 2) of (gt_index, pred_index), sorted by gt_index.
        distances: float64 array (K,) distance of each pair, in the units of the inputs.
        matched_gt: bool array (N_gt,), True where the ground-truth point is matched.
        matched_pred: bool array (N_pred,), True where the prediction is matched.
    """

    tp: int
    fp: int
    fn: int
    pairs: np.ndarray
    distances: np.ndarray
    matched_gt: np.ndarray
    matched_pred: np.ndarray


def _as_points(name: str, pts: np.ndarray) -> np.ndarray:
    return as_points(pts, name)


def _result(pairs: list[tuple[int, int]], gt: np.ndarray, pred: np.ndarray) -> MatchResult:
    pairs_arr = np.asarray(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    matched_gt = np.zeros(len(gt), dtype=bool)
    matched_pred = np.zeros(len(pred), dtype=bool)
    matched_gt[pairs_arr[:, 0]] = True
    matched_pred[pairs_arr[:, 1]] = True
    dist = np.linalg.norm(gt[pairs_arr[:, 0]] - pred[pairs_arr[:, 1]], axis=1)
    tp = len(pairs_arr)
    # one-to-one is an invariant of both algorithms
    assert matched_gt.sum() == tp and matched_pred.sum() == tp
    return MatchResult(
        tp=tp,
        fp=len(pred) - tp,
        fn=len(gt) - tp,
        pairs=pairs_arr,
        distances=dist,
        matched_gt=matched_gt,
        matched_pred=matched_pred,
    )


def within_radius_pairs(gt: np.ndarray, pred: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (gt, pred) index pairs at distance <= radius, with their distances.

    Returns:
        ``(gi, pi, d)``: int64 (E,), int64 (E,), float64 (E,).
    """
    from scipy.spatial import cKDTree

    if len(gt) == 0 or len(pred) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float64)
    sdm = cKDTree(gt).sparse_distance_matrix(cKDTree(pred), radius, output_type="ndarray")
    # "ndarray" output keeps zero distances (coincident points), unlike the dok output
    gi = sdm["i"].astype(np.int64)
    pi = sdm["j"].astype(np.int64)
    d = sdm["v"].astype(np.float64)
    return gi, pi, d


def augmenting_order_matching(
    n_gt: int, adjacency: list[list[int]], order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum bipartite matching by augmenting paths, predictions added in ``order``.

    After the first ``k`` predictions of ``order`` have been processed the matching is a
    maximum matching of the graph restricted to them (Berge's theorem: a new vertex raises
    the maximum by one exactly when an augmenting path starts at it). So the number matched
    after each step is the maximum true-positive count at that score threshold.

    Args:
        n_gt: number of ground-truth vertices.
        adjacency: for each prediction, the ground-truth indices within radius (nearest first).
        order: the order in which predictions are added.

    Returns:
        ``(match_of_pred, gained)``: int64 (N_pred,) matched gt index or -1; bool (len(order),)
        True where adding that prediction raised the matching size by one.
    """
    n_pred = len(adjacency)
    match_gt = np.full(n_gt, -1, dtype=np.int64)
    match_pred = np.full(n_pred, -1, dtype=np.int64)
    seen = np.zeros(n_gt, dtype=np.int64)
    gained = np.zeros(len(order), dtype=bool)
    for step, root in enumerate(order):
        root = int(root)
        if not adjacency[root]:
            continue
        stamp = step + 1
        # iterative DFS for an augmenting path (chains can be long; no recursion limit)
        stack_p = [root]
        stack_i = [0]
        via: list[int] = []  # via[k]: the gt that links stack_p[k] to stack_p[k + 1]
        while stack_p:
            u = stack_p[-1]
            i = stack_i[-1]
            if i >= len(adjacency[u]):
                stack_p.pop()
                stack_i.pop()
                if via:
                    via.pop()
                continue
            stack_i[-1] = i + 1
            g = adjacency[u][i]
            if seen[g] == stamp:
                continue
            seen[g] = stamp
            via.append(g)
            owner = int(match_gt[g])
            if owner < 0:
                for pk, gk in zip(stack_p, via):
                    match_gt[gk] = pk
                    match_pred[pk] = gk
                gained[step] = True
                break
            stack_p.append(owner)
            stack_i.append(0)
    return match_pred, gained


def _optimal(gt: np.ndarray, pred: np.ndarray, radius: float, scores: np.ndarray | None) -> list[tuple[int, int]]:
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    gi, pi, d = within_radius_pairs(gt, pred, radius)
    if len(gi) == 0:
        return []
    n_gt, n_pred = len(gt), len(pred)
    allowed_pred = np.ones(n_pred, dtype=bool)
    if scores is not None:
        adjacency: list[list[int]] = [[] for _ in range(n_pred)]
        for k in np.lexsort((d, pi)):  # per prediction, nearest gt first
            adjacency[pi[k]].append(int(gi[k]))
        order = np.lexsort((np.arange(n_pred), -scores))
        match_of_pred, _ = augmenting_order_matching(n_gt, adjacency, order)
        allowed_pred = match_of_pred >= 0
        keep = allowed_pred[pi]
        gi, pi, d = gi[keep], pi[keep], d[keep]

    # Connected components of the within-radius graph keep each assignment problem small.
    n = n_gt + n_pred
    graph = coo_matrix((np.ones(len(gi)), (gi, n_gt + pi)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[gi]
    order = np.argsort(edge_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
    pairs: list[tuple[int, int]] = []
    for edges in np.split(order, bounds):
        g_ids, g_loc = np.unique(gi[edges], return_inverse=True)
        p_ids, p_loc = np.unique(pi[edges], return_inverse=True)
        if len(g_ids) == 1 or len(p_ids) == 1:
            # a star: the nearest neighbour is optimal (one match is the maximum)
            best = edges[np.argmin(d[edges])]
            pairs.append((int(gi[best]), int(pi[best])))
            continue
        # Cost: distance / radius (in [0, 1]) inside the radius, and a constant larger than
        # any possible sum of in-radius costs outside it, so one more in-radius pair always
        # beats any saving in distance: maximum cardinality first, then minimum distance.
        big = float(min(len(g_ids), len(p_ids)) + 1)
        cost = np.full((len(g_ids), len(p_ids)), big)
        cost[g_loc, p_loc] = d[edges] / radius
        rows, cols = linear_sum_assignment(cost)
        ok = cost[rows, cols] < big
        pairs.extend(zip(g_ids[rows[ok]].tolist(), p_ids[cols[ok]].tolist()))
    return pairs


def _midog_greedy(gt: np.ndarray, pred: np.ndarray, radius: float) -> list[tuple[int, int]]:
    from scipy.spatial import cKDTree

    if len(gt) == 0 or len(pred) == 0:
        return []
    hits = cKDTree(pred).query_ball_point(gt, r=radius)
    used = np.zeros(len(pred), dtype=bool)
    pairs: list[tuple[int, int]] = []
    for g, cand in enumerate(hits):  # ground truth in the given order, as evalutils does
        if not cand:
            continue
        cand = np.asarray(sorted(cand), dtype=np.int64)
        dist = np.linalg.norm(pred[cand] - gt[g], axis=1)
        for p in cand[np.argsort(dist, kind="stable")]:  # nearest first
            if not used[p]:
                used[p] = True
                pairs.append((g, int(p)))
                break
    return pairs


def match_points(
    gt: np.ndarray,
    pred: np.ndarray,
    radius: float,
    *,
    scores: np.ndarray | None = None,
    mode: MatchMode = "optimal",
) -> MatchResult:
    """Match predicted points to ground-truth points one-to-one within ``radius``.

    Pure: the inputs are not modified.

    Args:
        gt: (N, 2) ground-truth centres as (x, y); (0, 2) or empty for none.
        pred: (M, 2) predicted centres as (x, y), same units as ``gt``.
        radius: largest distance (inclusive) at which a pair counts, same units (pixels:
            ``radius_um / mpp``).
        scores: optional (M,) confidences. In ``"optimal"`` mode they decide *which*
            predictions are matched when several compete (higher first, see module doc);
            the number of matches does not depend on them. Ignored by ``"midog_greedy"``.
        mode: ``"optimal"`` (maximum number of matches, then minimum total distance) or
            ``"midog_greedy"`` (the MIDOG challenge / evalutils ``score_detection`` rule).

    Returns:
        A :class:`MatchResult` with TP/FP/FN counts and the matched index pairs.

    Raises:
        ValueError: on a bad shape, non-finite values, a non-positive radius, scores of the
            wrong length or an unknown mode.
    """
    gt_a = _as_points("gt", gt)
    pred_a = _as_points("pred", pred)
    try:
        radius_f = float(radius)
    except (TypeError, ValueError):
        raise ValueError(f"radius must be a positive number, got {radius!r}") from None
    if not (np.isfinite(radius_f) and radius_f > 0):
        raise ValueError(f"radius must be a positive finite number, got {radius!r}")
    if mode not in MATCH_MODES:
        raise ValueError(f"unknown matching mode {mode!r}; choose one of {MATCH_MODES}")
    sc = None
    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(sc) != len(pred_a):
            raise ValueError(f"scores has {len(sc)} values but pred has {len(pred_a)} points")
        if not np.all(np.isfinite(sc)):
            raise ValueError("scores hold NaN or infinite values")
    if mode == "optimal":
        pairs = _optimal(gt_a, pred_a, radius_f, sc)
    else:
        pairs = _midog_greedy(gt_a, pred_a, radius_f)
    return _result(pairs, gt_a, pred_a)
