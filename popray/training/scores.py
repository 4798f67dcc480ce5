"""Scores of many groups at once, for popray.training.evaluate: flat arrays of rows, each row tagged
with its *unit* (one set of scores: a seed of one metrics row) and its *segment* (a
profile inside that unit, dense codes nested in the units). Every score is a bincount or
a sort over all rows together, so the cost is linear in the rows, with no Python loop
over units or profiles: the metrics of 10,000 profiles cost what their rows cost.

Each function gives what its scipy/scikit-learn counterpart gives on one unit's rows
(tests/test_scores.py checks them against those): average ranks for ties, Spearman's ρ
with its one-sided t-test, the exact binomial test, macro-F1 with zero_division=0, top-k
accuracy with scikit-learn's tie order.
"""

from __future__ import annotations

import numpy as np
from scipy import special

TOP_SHARE = 0.2  # the top fifth of each profile's ranked items
ECE_BINS = 10


def dense(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values in order, each row's index among them)."""
    return np.unique(codes, return_inverse=True)


def sums(units: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per unit: the number of its rows, or the sum of `weights` over them."""
    if weights is None:
        return np.bincount(units, minlength=n).astype(np.float64)
    return np.bincount(units, weights=np.asarray(weights, np.float64), minlength=n)


def ranks(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share the mean of their ranks) of `values` within each
    segment: scipy.stats.rankdata per segment."""
    n = len(values)
    if n == 0:
        return np.empty(0, np.float64)
    order = np.lexsort((values, segments))
    v, s = values[order], segments[order]
    pos = np.arange(n)
    seg_start = np.ones(n, bool)
    seg_start[1:] = s[1:] != s[:-1]
    tie_start = seg_start.copy()
    tie_start[1:] |= v[1:] != v[:-1]
    first_of_seg = np.maximum.accumulate(np.where(seg_start, pos, 0))
    starts = pos[tie_start]
    ends = np.append(starts[1:], n)  # one past each tie block
    block = np.cumsum(tie_start) - 1
    rank = 0.5 * (ends + starts + 1)[block] - first_of_seg
    out = np.empty(n, np.float64)
    out[order] = rank
    return out


def percentiles(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Each value's percentile in its segment: (rank - 1) / (n - 1), 0.5 alone."""
    n = np.bincount(segments)[segments].astype(np.float64)
    r = ranks(values, segments)
    return np.where(n > 1, (r - 1) / np.maximum(n - 1, 1), 0.5)


def spearman(
    x: np.ndarray, y: np.ndarray, units: np.ndarray, segments: np.ndarray, n_units: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: (ρ, one-sided p-value for ρ > 0) of the values' within-segment
    percentiles, pooled over the unit's segments; NaN where either side is constant or
    the unit has fewer than 3 rows."""
    px, py = percentiles(x, segments), percentiles(y, segments)
    n = sums(units, n_units)
    constant = (_spread(px, units, n_units) == 0) | (_spread(py, units, n_units) == 0)
    rx, ry = ranks(px, units), ranks(py, units)
    dx = rx - (sums(units, n_units, rx) / np.maximum(n, 1))[units]
    dy = ry - (sums(units, n_units, ry) / np.maximum(n, 1))[units]
    dof = np.maximum(n - 1, 1)
    cov = sums(units, n_units, dx * dy) / dof
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = cov / np.sqrt(sums(units, n_units, dx * dx) / dof)
        rho = np.clip(rho / np.sqrt(sums(units, n_units, dy * dy) / dof), -1.0, 1.0)
        t = rho * np.sqrt((np.maximum(n - 2, 1) / ((rho + 1.0) * (1.0 - rho))).clip(0))
        p = special.stdtr(n - 2, -t)
    bad = (n < 3) | constant
    return np.where(bad, np.nan, rho), np.where(bad, np.nan, p)


def _spread(values: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
    hi = np.full(n_units, -np.inf)
    lo = np.full(n_units, np.inf)
    np.maximum.at(hi, units, values)
    np.minimum.at(lo, units, values)
    return np.where(np.isfinite(hi), hi - lo, 0.0)


def top_precision(
    values: np.ndarray,
    top: np.ndarray,
    units: np.ndarray,
    segments: np.ndarray,
    tiebreak: np.ndarray,
    n_units: int,
) -> np.ndarray:
    """Per unit: of each segment's rows ranked in its top fifth by `values` (at least
    one; ties by `tiebreak`, ascending), the share with `top` set, pooled over the
    unit's segments; NaN for a unit with no rows."""
    size = np.bincount(segments)
    n_top = np.maximum(1, np.rint(TOP_SHARE * size).astype(np.int64))
    order = np.lexsort((tiebreak, -values, segments))
    s = segments[order]
    start = np.searchsorted(s, s)  # each row's segment start in the sorted order
    chosen = np.zeros(len(values), bool)
    chosen[order] = np.arange(len(values)) - start < n_top[s]
    hits = sums(units, n_units, chosen & top)
    picked = sums(units, n_units, chosen)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(picked > 0, hits / picked, np.nan)


def segment_medians(values: np.ndarray, segments: np.ndarray, n_segments: int) -> np.ndarray:
    """Per segment: the median of its non-NaN values (NaN when it has none)."""
    known = ~np.isnan(values)
    v, s = values[known], segments[known]
    order = np.lexsort((v, s))
    v, s = v[order], s[order]
    count = np.bincount(s, minlength=n_segments)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    out = np.full(n_segments, np.nan)
    has = count > 0
    lo = start[has] + (count[has] - 1) // 2
    hi = start[has] + count[has] // 2
    out[has] = (v[lo] + v[hi]) / 2
    return out


def expected_score(proba: np.ndarray) -> np.ndarray:
    """Each item's expected class Σ p·c from its (n, k) class probabilities, rounded:
    float32 noise in the sum must not order items that the model scores the same."""
    proba = np.asarray(proba, np.float64)
    return np.round(proba @ np.arange(proba.shape[1], dtype=np.float64), 6)


def classification(
    units: np.ndarray, y: np.ndarray, proba: np.ndarray, n_units: int
) -> dict[str, np.ndarray]:
    """Per unit, from its rows' labels and (n, k) probabilities (pred = argmax): accuracy,
    top-2 accuracy (k >= 3, else NaN), macro-F1, the row-normalised confusion matrix
    (n_units, k, k) and the expected calibration error."""
    k = proba.shape[1]
    pred = proba.argmax(axis=1)
    n = sums(units, n_units)
    right = y == pred
    counts = np.bincount((units * k + y) * k + pred, minlength=n_units * k * k)
    counts = counts.reshape(n_units, k, k).astype(np.float64)
    support = counts.sum(axis=2, keepdims=True)
    confusion = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    tp = np.diagonal(counts, axis1=1, axis2=2)
    denom = counts.sum(axis=2) + counts.sum(axis=1)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    top2 = np.full(n_units, np.nan)
    if k >= 3:  # scikit-learn's order: a stable sort, reversed (ties: higher class first)
        best2 = np.argsort(proba, axis=1, kind="mergesort")[:, ::-1][:, :2]
        top2 = sums(units, n_units, (best2 == y[:, None]).any(axis=1)) / n
    return {
        "accuracy": sums(units, n_units, right) / n,
        "top2": top2,
        "macro_f1": f1.mean(axis=1),
        "confusion": confusion,
        "ece": calibration_error(units, right, proba.max(axis=1), n_units),
    }


def calibration_error(
    units: np.ndarray,
    right: np.ndarray,
    confidence: np.ndarray,
    n_units: int,
    bins: int = ECE_BINS,
) -> np.ndarray:
    """Per unit: mean |accuracy - confidence| over `bins` equal-width confidence bins,
    weighted by their size."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    cell = units * bins + which
    size = bins * n_units
    n_bin = np.bincount(cell, minlength=size).reshape(n_units, bins).astype(np.float64)
    acc = np.bincount(cell, weights=right.astype(np.float64), minlength=size)
    conf = np.bincount(cell, weights=confidence, minlength=size)
    acc, conf = acc.reshape(n_units, bins), conf.reshape(n_units, bins)
    n = n_bin.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (n_bin / n) * np.abs(acc / n_bin - conf / n_bin)
    return np.where(n_bin > 0, gap, 0.0).sum(axis=1)


def binomial_greater(hits: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """One-sided exact binomial test, P(X >= hits) for X ~ Binomial(n, p)."""
    from scipy.stats import binom  # scipy.stats takes ~1 s to import: only here

    return binom.sf(hits - 1, n, p)


def over_units(values: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple:
    """(mean, std with ddof 0) over each group's units of `values` (n_units, ...)."""
    count = np.bincount(groups, minlength=n_groups).astype(np.float64)
    shape = (n_groups, *values.shape[1:])
    total = np.zeros(shape)
    np.add.at(total, groups, values)
    mean = total / count.reshape(-1, *(1,) * (values.ndim - 1))
    spread = np.zeros(shape)
    np.add.at(spread, groups, (values - mean[groups]) ** 2)
    std = np.sqrt(spread / count.reshape(-1, *(1,) * (values.ndim - 1)))
    return mean, std
