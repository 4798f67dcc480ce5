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

from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from scipy.stats import binomtest, rankdata, spearmanr
from sklearn.metrics import confusion_matrix, f1_score, top_k_accuracy_score

from popray import store
from popray.models import REGISTRY
from popray.tables import METRICS

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
KEY = ("scheme", "backbone", "features", "protocol", "model", "k")
TOP_SHARE = 0.2  # the top fifth of each profile's ranked items


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    confidence, pred = proba.max(axis=1), proba.argmax(axis=1)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(
                (pred[inside] == y[inside]).mean() - confidence[inside].mean()
            )
    return float(error)


def _seed_scores(y: np.ndarray, pred: np.ndarray, proba: np.ndarray, k: int) -> dict:
    classes = list(range(k))
    confusion = confusion_matrix(y, pred, labels=classes).astype(np.float64)
    support = confusion.sum(axis=1, keepdims=True)
    return {
        "accuracy": float((y == pred).mean()),
        "top2": float(top_k_accuracy_score(y, proba, k=2, labels=classes)) if k >= 3 else None,
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        "confusion": np.divide(confusion, support, out=np.zeros_like(confusion), where=support > 0),
        "ece": expected_calibration_error(y, proba),
    }


def recent_baseline(out: Path, scheme: str) -> dict[tuple[int, str], int | None]:
    """(k, media_id) -> the class of the profile's previous item of the same media type
    (schemas/sql/baseline_recent.sql)."""
    from popray.labels import sql_text

    con = store.connect(out)
    try:
        rows = con.sql(sql_text("baseline_recent"), params={"scheme": scheme}).fetchall()
    finally:
        con.close()
    return {(k, media_id): cls for media_id, k, cls in rows}


def over_labels(labels: pa.Table, name: str, scheme: str) -> list[tuple]:
    """The rows of `schemas/sql/<name>.sql` run over `labels` (as the view `labels`)."""
    from popray.labels import sql_text

    con = duckdb.connect()
    try:
        con.register("labels", labels)
        return con.sql(sql_text(name), params={"scheme": scheme}).fetchall()
    finally:
        con.close()


def recent_classes(labels: pa.Table, scheme: str) -> dict[tuple[int, str], int | None]:
    """(k, media_id) -> the recent-PoR baseline's class over `labels`
    (schemas/sql/baseline_recent.sql)."""
    rows = over_labels(labels, "baseline_recent", scheme)
    return {(k, media_id): cls for media_id, k, cls in rows}


def ranking_targets(
    labels: pa.Table, scheme: str
) -> dict[tuple[int, str], tuple[float | None, float | None]]:
    """(k, media_id) -> (the item's rank_score, the recent-PoR baseline's guess of it: the
    previous item's rank_score or None) over `labels` (schemas/sql/ranking_targets.sql)."""
    rows = over_labels(labels, "ranking_targets", scheme)
    return {(k, media_id): (score, recent) for media_id, k, score, recent in rows}


def expected_score(proba: np.ndarray) -> np.ndarray:
    """Each item's expected class Σ p·c from its (n, k) class probabilities, rounded:
    float32 noise in the sum must not order items that the model scores the same."""
    proba = np.asarray(proba, np.float64)
    return np.round(proba @ np.arange(proba.shape[1], dtype=np.float64), 6)


def within_profile(values: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Each value's percentile among its own profile's values (average ranks for ties, in
    [0, 1]; 0.5 for a profile with one item)."""
    out = np.empty(len(values), np.float64)
    for profile in np.unique(profiles):
        at = profiles == profile
        n = int(at.sum())
        out[at] = 0.5 if n == 1 else (rankdata(values[at]) - 1) / (n - 1)
    return out


def spearman(
    pred: np.ndarray, target: np.ndarray, profiles: np.ndarray
) -> tuple[float | None, float | None]:
    """(ρ, one-sided p-value for ρ > 0) ranking within each profile (see the module's doc);
    (None, None) when either side is constant or there are fewer than 3 items."""
    x, y = within_profile(pred, profiles), within_profile(target, profiles)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    result = spearmanr(x, y, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def top_precision(
    pred: np.ndarray, top: np.ndarray, profiles: np.ndarray, ids: np.ndarray
) -> float | None:
    """Of each profile's items ranked in its top fifth by `pred` (at least one; ties by
    media_id), the share with `top` set (in the top class), pooled over profiles."""
    hits = chosen = 0
    for profile in np.unique(profiles):
        at = np.flatnonzero(profiles == profile)
        n_top = max(1, round(TOP_SHARE * len(at)))
        ranked = sorted(at, key=lambda i: (-pred[i], ids[i]))[:n_top]
        hits += int(top[ranked].sum())
        chosen += n_top
    return hits / chosen if chosen else None


def _ranking(seeds: dict[int, list[dict]], k: int, targets: dict, protocol: str) -> dict:
    """The ranking columns of one metrics row (None where there is nothing to rank)."""
    none = dict.fromkeys(RANKING_COLUMNS)
    first = [r for r in next(iter(seeds.values())) if _target(targets, protocol, k, r)]
    if not first:
        return none
    ids = np.array([r["media_id"] for r in first])
    profiles = np.array([r["profile_id"] for r in first])
    score = np.array([_target(targets, protocol, k, r)[0] for r in first])
    top = np.array([r["label"] == k - 1 for r in first])
    rhos, precisions, expected = [], [], defaultdict(list)
    for rows in seeds.values():
        scores = expected_score(np.array([r["proba"] for r in rows], np.float64))
        by_id = dict(zip((r["media_id"] for r in rows), scores.tolist(), strict=True))
        pred = np.array([by_id[m] for m in ids])
        for m, e in zip(ids, pred, strict=True):
            expected[m].append(e)
        rhos.append(spearman(pred, score, profiles)[0])
        precisions.append(top_precision(pred, top, profiles, ids))
    mean_pred = np.round([np.mean(expected[m]) for m in ids], 6)
    guess = np.array(
        [np.nan if (g := _target(targets, protocol, k, r)[1]) is None else g for r in first]
    )
    for profile in np.unique(profiles):  # no earlier item: the profile's median guess
        at = profiles == profile
        known = guess[at][~np.isnan(guess[at])]
        guess[at & np.isnan(guess)] = np.median(known) if len(known) else 0.0
    recent_rho = spearman(guess, score, profiles)[0]
    valid = [r for r in rhos if r is not None]
    return {
        "spearman_mean": float(np.mean(valid)) if valid else None,
        "spearman_std": float(np.std(valid)) if valid else None,
        "spearman_p_value": spearman(mean_pred, score, profiles)[1],
        "top20_precision_mean": float(np.mean(precisions)),
        "top20_precision_std": float(np.std(precisions)),
        "top_class_share": float(top.mean()),
        "recent_spearman": recent_rho,
        "recent_top20_precision": top_precision(guess, top, profiles, ids),
    }


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


def _target(targets: dict, protocol: str, k: int, row: dict) -> tuple | None:
    """(rank_score, recent guess) of a prediction row's item; None when it has no score."""
    found = targets.get((protocol, k, row["media_id"]))
    return found if found is not None and found[0] is not None else None


def compute_metrics(
    predictions: pa.Table, recent: dict | None = None, targets: dict | None = None
) -> pa.Table:
    """The `metrics` table from the `predictions` table of one or more grids: one row per
    (scheme, backbone, features, protocol, model, k, profile), and one with profile_id
    NULL pooling every profile's validation items. `recent` maps (protocol, k, media_id)
    to the recent-PoR baseline's class (None: no earlier item); `targets` maps it to the
    item's (rank_score, recent-PoR guess of it) for the ranking columns (None: left out)."""
    groups: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in predictions.to_pylist():
        key = tuple(row[c] for c in KEY)
        groups[(*key, row["profile_id"])][row["seed"]].append(row)
        groups[(*key, None)][row["seed"]].append(row)
    order = sorted(groups, key=lambda g: (g[:-1], g[-1] is not None, g[-1] or ""))
    rows = [_row(g, groups[g], recent, targets) for g in order]
    return pa.Table.from_pylist(rows, schema=METRICS)


def _row(
    group: tuple, seeds: dict[int, list[dict]], recent: dict | None, targets: dict | None
) -> dict:
    """One row of `metrics`: scores per seed, then mean and std over seeds."""
    cell = dict(zip((*KEY, "profile_id"), group, strict=True))
    k = cell["k"]
    scores = []
    for rows in seeds.values():
        y = np.array([r["label"] for r in rows])
        pred = np.array([r["pred"] for r in rows])
        proba = np.array([r["proba"] for r in rows], dtype=np.float64)
        scores.append(_seed_scores(y, pred, proba, k))
    first = next(iter(seeds.values()))
    labels = np.array([r["label"] for r in first])
    # majority baseline: each profile's own commonest class (pooled: summed over profiles)
    by_profile: dict[str, list[int]] = defaultdict(list)
    for r in first:
        by_profile[r["profile_id"]].append(r["label"])
    commonest = {p: int(np.bincount(ys, minlength=k).argmax()) for p, ys in by_profile.items()}
    majority = float(np.mean([r["label"] == commonest[r["profile_id"]] for r in first]))
    recent_accuracy = None
    if recent is not None:
        guess = [recent.get((cell["protocol"], k, r["media_id"])) for r in first]
        guess = [
            commonest[r["profile_id"]] if g is None else g
            for g, r in zip(guess, first, strict=True)
        ]
        recent_accuracy = float((np.array(guess) == labels).mean())
    accuracy = float(np.mean([s["accuracy"] for s in scores]))
    best = max(majority, recent_accuracy or 0.0)
    n = len(labels)
    p_value = float(binomtest(round(accuracy * n), n, min(best, 1.0), alternative="greater").pvalue)
    confusion = np.stack([s["confusion"] for s in scores])
    top2 = [s["top2"] for s in scores]
    ranking = (
        _ranking(seeds, k, targets, cell["protocol"]) if targets else dict.fromkeys(RANKING_COLUMNS)
    )
    return (
        cell
        | ranking
        | {
            "validated_on": REGISTRY[cell["model"]].validate_on,
            "n_items": len({r["media_id"] for r in first}),
            "n_seeds": len(seeds),
            "accuracy_mean": accuracy,
            "accuracy_std": float(np.std([s["accuracy"] for s in scores])),
            "top2_mean": float(np.mean(top2)) if k >= 3 else None,
            "top2_std": float(np.std(top2)) if k >= 3 else None,
            "macro_f1_mean": float(np.mean([s["macro_f1"] for s in scores])),
            "macro_f1_std": float(np.std([s["macro_f1"] for s in scores])),
            "majority_accuracy": majority,
            "recent_accuracy": recent_accuracy,
            "p_value": p_value,
            "ece_mean": float(np.mean([s["ece"] for s in scores])),
            "confusion_mean": confusion.mean(axis=0).tolist(),
            "confusion_std": confusion.std(axis=0).tolist(),
            # the paper's numbers are for its own scheme and protocol only
            "paper_accuracy": PAPER_ACCURACY.get((cell["model"], k))
            if (cell["scheme"], cell["protocol"]) == ("por_rolling", "stratified_kfold")
            else None,
        }
    )


PROTOCOL_TITLES = {
    "stratified_kfold": "stratified 5-fold (the paper's protocol: past and future posts mixed)",
    "walk_forward": "walk-forward (trained before each cut, scored on the next window)",
    "profile_grouped": "cross-profile model, scored only on profiles it never saw "
    "(GroupKFold over profiles; one seed)",
}


def metrics_text(metrics: pa.Table) -> str:
    """The metrics pooled over profiles in the paper's layout, one block per protocol: one
    row per model, one column per k."""
    everything = metrics.to_pylist()
    rows = [r for r in everything if r["profile_id"] is None]  # pooled over profiles
    protocols = [p for p in PROTOCOL_TITLES if any(r["protocol"] == p for r in rows)]
    blocks = [_protocol_text([r for r in rows if r["protocol"] == p]) for p in protocols]
    # the grid's rows say what was trained (the cross-profile model has one seed)
    first = next((r for r in rows if r["protocol"] != "profile_grouped"), rows[0] if rows else {})
    lines = [
        f"labels {first.get('scheme')}, backbone {first.get('backbone')}, "
        f"features {first.get('features')}, "
        f"{first.get('n_seeds')} seed(s); n = items validated on (images or videos)"
    ]
    profiles = sorted({r["profile_id"] for r in everything if r["profile_id"] is not None})
    if len(profiles) > 1:
        lines.append(
            f"{len(profiles)} profiles, each with its own folds and models; pooled above, "
            "per profile in `metrics` (profile_id)"
        )
    return "\n\n".join([*blocks, "\n".join(lines)])


def _protocol_text(rows: list[dict]) -> str:
    ks = sorted({r["k"] for r in rows})
    by_cell = {(r["model"], r["k"]): r for r in rows}
    models = [m for m in REGISTRY if any((m, k) in by_cell for k in ks)]
    width = 34
    lines = [
        PROTOCOL_TITLES[rows[0]["protocol"]],
        "accuracy, mean ± std over seeds [paper] (majority class; top-2 for k ≥ 3)",
        f"{'model':<16}" + "".join(f"{'k=' + str(k):<{width}}" for k in ks),
    ]
    for model in models:
        cells = []
        for k in ks:
            r = by_cell.get((model, k))
            if r is None:
                cells.append(f"{'-':<{width}}")
                continue
            paper = f" [{r['paper_accuracy']:.2f}]" if r["paper_accuracy"] is not None else ""
            extra = f"; top-2 {r['top2_mean']:.2f}" if r["top2_mean"] is not None else ""
            text = (
                f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}{paper} "
                f"({r['majority_accuracy']:.2f}{extra})"
            )
            cells.append(f"{text:<{width}}")
        n = max(by_cell[(model, k)]["n_items"] for k in ks if (model, k) in by_cell)
        lines.append(f"{model:<16}" + "".join(cells) + f" n={n}")
    if any(r["spearman_mean"] is not None or r["top20_precision_mean"] is not None for r in rows):
        lines += [
            "ranking within each profile: Spearman ρ [recent-PoR baseline] (p, ρ > 0); "
            "top-20% precision [baseline; random]",
            f"{'model':<16}" + "".join(f"{'k=' + str(k):<46}" for k in ks),
            *(
                f"{model:<16}"
                + "".join(f"{_ranking_text(by_cell.get((model, k))):<46}" for k in ks)
                for model in models
            ),
        ]
    return "\n".join(lines)


def _ranking_text(r: dict | None) -> str:
    def num(value: float | None, fmt: str = ".2f") -> str:
        return "-" if value is None else format(value, fmt)

    if r is None:
        return "-"
    return (
        f"ρ {num(r['spearman_mean'])} [{num(r['recent_spearman'])}] "
        f"(p {num(r['spearman_p_value'], '.2g')}); "
        f"{num(r['top20_precision_mean'])} [{num(r['recent_top20_precision'])}; "
        f"{num(r['top_class_share'])}]"
    )
