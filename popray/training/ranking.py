"""Ranking scores of one list of items (a profile's own; the cross-profile comparison,
popray.training.pooled), through popray.training.scores with a single unit: ranks within
each profile (see popray.training.evaluate's doc), Spearman's ρ, the top fifth's precision.
"""

from __future__ import annotations

import numpy as np

from popray.training import scores

expected_score = scores.expected_score


def _codes(labels: np.ndarray) -> np.ndarray:
    return scores.dense(np.asarray(labels))[1]


def within_profile(values: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Each value's percentile among its own profile's values (average ranks for ties, in
    [0, 1]; 0.5 for a profile with one item)."""
    return scores.percentiles(np.asarray(values, np.float64), _codes(profiles))


def spearman(
    pred: np.ndarray, target: np.ndarray, profiles: np.ndarray
) -> tuple[float | None, float | None]:
    """(ρ, one-sided p-value for ρ > 0) ranking within each profile (see the module's doc);
    (None, None) when either side is constant or there are fewer than 3 items."""
    one = np.zeros(len(pred), np.int64)
    rho, p = scores.spearman(
        np.asarray(pred, np.float64), np.asarray(target, np.float64), one, _codes(profiles), 1
    )
    return num(rho[0]), num(p[0])


def top_precision(
    pred: np.ndarray, top: np.ndarray, profiles: np.ndarray, ids: np.ndarray
) -> float | None:
    """Of each profile's items ranked in its top fifth by `pred` (at least one; ties by
    media_id), the share with `top` set (in the top class), pooled over profiles."""
    one = np.zeros(len(pred), np.int64)
    values = np.asarray(pred, np.float64)
    top = np.asarray(top, bool)
    found = scores.top_precision(values, top, one, _codes(profiles), _codes(ids), 1)
    return num(found[0]) if len(pred) else None


def num(value) -> float | None:
    return None if value is None or np.isnan(value) else float(value)
