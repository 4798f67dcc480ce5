"""popray.training.scores: each vectorised score, over many units at once, equals its scipy or
scikit-learn counterpart run on each unit's rows alone (random data with many ties)."""

import numpy as np
import pytest
from scipy.stats import binomtest, rankdata, spearmanr
from sklearn.metrics import confusion_matrix, f1_score, top_k_accuracy_score

from popray.training import scores


def _units(rng, n_units=40, most=12):
    """Random unit sizes (1 to `most` rows), two segments per unit at most."""
    sizes = rng.integers(1, most, n_units)
    units = np.repeat(np.arange(n_units), sizes)
    perm = rng.permutation(len(units))  # rows of a unit need not be adjacent
    units = units[perm]
    segments = units * 2 + rng.integers(0, 2, len(units))
    return units, scores.dense(segments)[1]


def test_ranks_and_percentiles_are_rankdata_per_segment():
    rng = np.random.default_rng(0)
    units, segments = _units(rng)
    values = rng.integers(0, 4, len(units)).astype(float)  # many ties
    got = scores.ranks(values, segments)
    pct = scores.percentiles(values, segments)
    for s in np.unique(segments):
        at = segments == s
        assert got[at].tolist() == rankdata(values[at]).tolist()
        n = at.sum()
        want = np.full(n, 0.5) if n == 1 else (rankdata(values[at]) - 1) / (n - 1)
        assert pct[at].tolist() == want.tolist()


def test_spearman_per_unit_is_scipys_on_within_segment_percentiles():
    rng = np.random.default_rng(1)
    units, segments = _units(rng)
    x = rng.integers(0, 5, len(units)).astype(float)
    y = rng.normal(size=len(units)).round(1)
    rho, p = scores.spearman(x, y, units, segments, 40)
    checked = 0
    for u in range(40):
        at = units == u
        px = scores.percentiles(x[at], scores.dense(segments[at])[1])
        py = scores.percentiles(y[at], scores.dense(segments[at])[1])
        if at.sum() < 3 or np.ptp(px) == 0 or np.ptp(py) == 0:
            assert np.isnan(rho[u]) and np.isnan(p[u])
            continue
        want = spearmanr(px, py, alternative="greater")
        assert rho[u] == pytest.approx(want.statistic, abs=1e-12)
        assert p[u] == pytest.approx(want.pvalue, rel=1e-9, abs=1e-15)
        checked += 1
    assert checked > 10


def test_top_precision_by_brute_force():
    rng = np.random.default_rng(2)
    units, segments = _units(rng)
    values = rng.integers(0, 3, len(units)).astype(float)
    top = rng.random(len(units)) < 0.4
    tiebreak = rng.permutation(len(units))
    got = scores.top_precision(values, top, units, segments, tiebreak, 40)
    for u in range(40):
        hits = chosen = 0
        for s in np.unique(segments[units == u]):
            at = np.flatnonzero(segments == s)
            n_top = max(1, round(0.2 * len(at)))
            best = sorted(at, key=lambda i: (-values[i], tiebreak[i]))[:n_top]
            hits, chosen = hits + top[best].sum(), chosen + n_top
        assert got[u] == pytest.approx(hits / chosen)


@pytest.mark.parametrize("k", [2, 3])
def test_classification_scores_are_scikit_learns(k):
    rng = np.random.default_rng(3 + k)
    units, _ = _units(rng, most=30)
    n = len(units)
    proba = np.round(rng.dirichlet(np.ones(k), n), 1) + 1e-9  # ties in the top two
    y = rng.integers(0, k, n)
    got = scores.classification(units, y, proba, 40)
    labels = list(range(k))
    for u in range(40):
        at = units == u
        yu, pu = y[at], proba[at]
        pred = pu.argmax(axis=1)
        assert got["accuracy"][u] == pytest.approx((yu == pred).mean())
        f1 = f1_score(yu, pred, labels=labels, average="macro", zero_division=0)
        assert got["macro_f1"][u] == pytest.approx(f1)
        counts = confusion_matrix(yu, pred, labels=labels).astype(float)
        support = counts.sum(axis=1, keepdims=True)
        want = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
        assert got["confusion"][u] == pytest.approx(want)
        if k >= 3:
            top2 = top_k_accuracy_score(yu, pu, k=2, labels=labels)
            assert got["top2"][u] == pytest.approx(top2)
        else:
            assert np.isnan(got["top2"][u])
        confidence = pu.max(axis=1)
        which = np.minimum((confidence * 10).astype(int), 9)
        ece = sum(
            (which == b).mean()
            * abs((pred == yu)[which == b].mean() - confidence[which == b].mean())
            for b in range(10)
            if (which == b).any()
        )
        assert got["ece"][u] == pytest.approx(ece)


def test_binomial_medians_and_means_over_units():
    hits, n, p = np.array([0, 3, 10, 7]), np.array([5, 5, 10, 20]), np.array([0.5, 0.2, 0.9, 0.3])
    got = scores.binomial_greater(hits, n, p)
    for i in range(4):
        want = binomtest(int(hits[i]), int(n[i]), p[i], alternative="greater").pvalue
        assert got[i] == pytest.approx(want)
    values = np.array([3.0, np.nan, 1.0, 2.0, np.nan, 5.0, 4.0])
    segments = np.array([0, 0, 0, 1, 1, 2, 2])
    medians = scores.segment_medians(values, segments, 4)
    assert medians[:3].tolist() == [2.0, 2.0, 4.5] and np.isnan(medians[3])
    mean, std = scores.over_units(np.array([1.0, 3.0, 5.0]), np.array([0, 0, 1]), 2)
    assert mean.tolist() == [2.0, 5.0] and std.tolist() == [1.0, 0.0]
