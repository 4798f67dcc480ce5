"""Scores of the grid (paper 5.2): per (protocol, model, k), a seed's accuracy pools the
validation predictions of its 5 folds (walk-forward: of its windows); the table reports
mean and std (ddof 0) over seeds, top-2 accuracy for k >= 3, macro-F1, the row-
normalised confusion matrix (mean and std over seeds), the expected calibration error
and, against guessing, two baselines on the same items — always the commonest class, and
the class of the profile's previous item of the same type ("recent PoR") — with a one-
sided exact binomial test of the model's mean accuracy against the better of the two (n
= the items; seeds are not independent samples, so they are averaged, not pooled), and
the paper's number.

Ranking (what "which of these should we post?" needs): Spearman's ρ between each
validated item's expected class (Σ p·c) and its continuous score for the scheme
(`labels.rank_score`: PoR, residual, ..., for por_rolling the PoR over its window's
median), with a one-sided p-value for ρ > 0, and the precision in the top fifth (of each
profile's items ranked in its top 20%, the share in the top class), for the model and for
the recent-PoR baseline (the previous item's score) on the same items. A row over several
profiles ranks within each profile: ρ of the items' within-profile rank percentiles,
pooled (for one profile, exactly Spearman's ρ), and the top fifth of each profile.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from popray.io.tables import empty, table_schema
from popray.training import scores
from popray.training.metric_rows import KEY, MetricRows
from popray.training.models import REGISTRY

# Viola et al. 2021, Table 1 (their private profile; rolling PoR classes).
PAPER_ACCURACY = {
    ("image", 2): 0.72,
    ("image", 3): 0.54,
    ("video", 2): 0.70,
    ("video", 3): 0.53,
    ("image_to_video", 2): 0.70,
    ("image_to_video", 3): 0.54,
    ("video_to_image", 2): 0.71,
    ("video_to_image", 3): 0.54,
}


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    proba = np.asarray(proba, np.float64)
    right = np.asarray(y) == proba.argmax(axis=1)
    one = np.zeros(len(right), np.int64)
    return float(scores.calibration_error(one, right, proba.max(axis=1), 1, bins)[0])


RANKING_COLUMNS = (
    "spearman_mean",
    "spearman_std",
    "spearman_p_value",
    "top20_precision_mean",
    "top20_precision_std",
    "top_class_share",
    "recent_spearman",
    "recent_top20_precision",
)


def compute_metrics(
    predictions: pa.Table, recent: dict | None = None, targets: dict | None = None
) -> pa.Table:
    """The `metrics` table from the `predictions` table of one or more grids: one row per
    (scheme, backbone, features, protocol, model, k, profile), and one with profile_id
    NULL pooling every profile's validation items. `recent` maps (protocol, k, media_id)
    to the recent-PoR baseline's class (None: no earlier item); `targets` maps it to the
    item's (rank_score, recent-PoR guess of it) for the ranking columns (None: left out).

    Every row's scores come from flat arrays at once (popray.training.scores): the rows are taken
    twice, once under their profile's group and once under their cell's pooled group."""
    if predictions.num_rows == 0:
        return empty("metrics")
    rows = MetricRows.of(predictions, recent, targets)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 is NaN: no value, null
        table = pa.concat_tables([_metrics_of_k(rows, k) for k in np.unique(rows.k).tolist()])
    order = pc.sort_indices(table, [("_cell", "ascending"), ("_profile", "ascending")])
    return table.take(order).drop_columns(["_cell", "_profile"])


def _metrics_of_k(r: MetricRows, k: int) -> dict[str, np.ndarray]:
    """The metrics columns of the groups of the cells with `k` classes, unsorted, with
    their sort keys (_cell, _profile: -1 pooled)."""
    at = np.flatnonzero(r.k == k)
    n = len(at)
    n_profiles = len(r.profiles)
    cell, profile = r.cell[at], r.profile[at]
    own_keys, own = scores.dense(cell * n_profiles + profile)
    pooled_keys, pooled = scores.dense(cell)
    n_groups = len(own_keys) + len(pooled_keys)
    twice = np.concatenate([np.arange(n), np.arange(n)])  # the rows, under both groups
    rows = at[twice]
    group = np.concatenate([own, len(own_keys) + pooled])
    group_cell = np.concatenate([own_keys // n_profiles, pooled_keys])
    group_profile = np.concatenate([own_keys % n_profiles, np.full(len(pooled_keys), -1)])
    proba = r.proba.take(pa.array(at)).combine_chunks().flatten().to_numpy()
    proba = proba.astype(np.float64).reshape(n, k)[twice]
    y, seed, media = r.label[rows], r.seed[rows], r.media[rows]

    n_seeds = int(r.seed.max()) + 1
    unit_keys, unit = scores.dense(group * n_seeds + seed)
    unit_group = unit_keys // n_seeds
    n_units = len(unit_keys)
    per_seed = scores.classification(unit, y, proba, n_units)
    cols = {"_cell": group_cell, "_profile": group_profile}
    cols["n_seeds"] = np.bincount(unit_group, minlength=n_groups)
    for name in ("accuracy", "top2", "macro_f1", "ece"):
        mean, std = scores.over_units(per_seed[name], unit_group, n_groups)
        cols[f"{name}_mean"], cols[f"{name}_std"] = mean, std
    cols["confusion_mean"], cols["confusion_std"] = scores.over_units(
        per_seed["confusion"], unit_group, n_groups
    )

    # the first seed's rows (in the order they came) stand for the group's items
    by_group = np.argsort(group, kind="stable")
    first = by_group[np.searchsorted(group[by_group], np.arange(n_groups))]
    f = seed == seed[first][group]
    seg_keys, seg = scores.dense(group * n_profiles + r.profile[rows])
    seg_group = seg_keys // n_profiles
    n_first = scores.sums(group[f], n_groups)
    cols["n_items"] = np.bincount(
        scores.dense(group[f] * len(r.media_ids) + media[f])[0] // len(r.media_ids),
        minlength=n_groups,
    )
    # majority baseline: each profile's own commonest class (pooled: summed over profiles)
    counts = np.bincount(seg[f] * k + y[f], minlength=len(seg_keys) * k).reshape(-1, k)
    commonest = counts.argmax(axis=1)
    majority = scores.sums(seg_group, n_groups, counts.max(axis=1)) / n_first
    cols["majority_accuracy"] = majority
    recent_accuracy = np.full(n_groups, np.nan)
    if r.recent is not None:
        guess = r.recent[rows][f]
        guess = np.where(np.isnan(guess), commonest[seg[f]], guess)
        recent_accuracy = scores.sums(group[f], n_groups, guess == y[f]) / n_first
    cols["recent_accuracy"] = recent_accuracy
    best = np.minimum(np.maximum(majority, np.nan_to_num(recent_accuracy)), 1.0)
    hits = np.rint(cols["accuracy_mean"] * n_first)
    cols["p_value"] = scores.binomial_greater(hits, n_first, best)
    cols |= _ranking_of_k(r, k, rows, group, unit, unit_group, seg, f, proba, n_groups)
    return _table_of(r, k, cols)


def _ranking_of_k(r: MetricRows, k, rows, group, unit, unit_group, seg, f, proba, n_groups) -> dict:
    """The ranking columns (NaN where there is nothing to rank) of `_metrics_of_k`'s
    groups: over the first seed's items with a target, every seed scored on them."""
    nan = np.full(n_groups, np.nan)
    if r.score is None:
        return dict.fromkeys(RANKING_COLUMNS, nan)
    n_units = len(unit_group)
    score, media, y = r.score[rows], r.media[rows], r.label[rows]
    item = group * len(r.media_ids) + media
    t = f & ~np.isnan(score)  # the items ranked
    q = np.isin(item, item[t])  # every seed's rows of those items
    n_profiles = len(r.profiles)
    seg_q = scores.dense(unit[q] * n_profiles + r.profile[rows][q])[1]
    expected = scores.expected_score(proba[q])
    top_q = y[q] == k - 1
    rho, _ = scores.spearman(expected, score[q], unit[q], seg_q, n_units)
    precision = scores.top_precision(expected, top_q, unit[q], seg_q, media[q], n_units)
    cols = {}
    cols["spearman_mean"], cols["spearman_std"] = _over_valid(rho, unit_group, n_groups)
    cols["top20_precision_mean"], cols["top20_precision_std"] = _over_valid(
        precision, unit_group, n_groups
    )
    items, which = scores.dense(item[q])
    mean = np.round(scores.sums(which, len(items), expected) / scores.sums(which, len(items)), 6)
    seg_t, group_t = seg[t], group[t]
    mean_t = mean[np.searchsorted(items, item[t])]
    cols["spearman_p_value"] = scores.spearman(mean_t, score[t], group_t, seg_t, n_groups)[1]
    n_t = scores.sums(group_t, n_groups)
    cols["top_class_share"] = scores.sums(group_t, n_groups, y[t] == k - 1) / n_t
    # the recent-PoR baseline: the previous item's score; none: the profile's median guess
    guess = r.guess[rows][t]
    median = scores.segment_medians(guess, seg_t, int(seg.max()) + 1)
    guess = np.where(np.isnan(guess), np.nan_to_num(median[seg_t], nan=0.0), guess)
    cols["recent_spearman"] = scores.spearman(guess, score[t], group_t, seg_t, n_groups)[0]
    cols["recent_top20_precision"] = scores.top_precision(
        guess, y[t] == k - 1, group_t, seg_t, media[t], n_groups
    )
    none = n_t == 0
    return {name: np.where(none, np.nan, values) for name, values in cols.items()}


def _over_valid(values: np.ndarray, unit_group: np.ndarray, n_groups: int) -> tuple:
    """(mean, std) over each group's units where `values` is not NaN; NaN without any."""
    ok = ~np.isnan(values)
    mean, std = scores.over_units(values[ok], unit_group[ok], n_groups)
    return mean, std


def _table_of(r: MetricRows, k: int, cols: dict[str, np.ndarray]) -> pa.Table:
    """The `metrics` rows of `_metrics_of_k`'s groups (NaN: null), with the sort keys."""
    cells = [dict(zip(KEY, r.cells[c], strict=True)) for c in cols["_cell"].tolist()]
    out: dict[str, pa.Array | list] = {n: [c[n] for c in cells] for n in KEY}
    out["profile_id"] = [None if p < 0 else r.profiles[p] for p in cols["_profile"].tolist()]
    out["validated_on"] = [REGISTRY[c["model"]].validate_on for c in cells]
    # the paper's numbers are for its own scheme and protocol only
    out["paper_accuracy"] = [
        PAPER_ACCURACY.get((c["model"], k))
        if (c["scheme"], c["protocol"]) == ("por_rolling", "stratified_kfold")
        else None
        for c in cells
    ]
    for name, values in cols.items():
        if name.startswith("confusion"):
            out[name] = _matrices(values)
        elif name not in out:
            out[name] = pa.array(values, from_pandas=True)  # NaN -> null
    schema = table_schema("metrics")
    schema = schema.append(pa.field("_cell", pa.int64())).append(pa.field("_profile", pa.int64()))
    return pa.table({f.name: out[f.name] for f in schema}).cast(schema)


def _matrices(values: np.ndarray) -> pa.Array:
    """(n, k, k) as a list<list<float64>> array."""
    n, k, _ = values.shape
    inner = pa.ListArray.from_arrays(np.arange(0, n * k * k + 1, k), values.reshape(-1))
    return pa.ListArray.from_arrays(np.arange(0, n * k + 1, k), inner)
