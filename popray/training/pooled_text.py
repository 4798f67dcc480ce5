"""The cross-profile comparison as text and as the report's summary: the accuracy of a
profile's own model by history length against the cross-profile model's, and the history
at which the own model starts to win.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from popray.training.pooled_folds import HISTORIES


def by_history(rows: list[dict], model: str, k: int) -> list[dict]:
    """The `cross_profile` rows of (model, k) summarised per history length (h = 10, 20,
    ... and 'all'): profiles, and the mean over them of the own and the pooled model's
    accuracy and ρ; `own_wins`: the own model's mean accuracy is the higher."""
    mine = [r for r in rows if (r["model"], r["k"]) == (model, k)]
    groups = [
        (str(h), [r for r in mine if r["history"] == h and not r["all_history"]]) for h in HISTORIES
    ]
    groups.append(("all", [r for r in mine if r["all_history"]]))
    summary = []
    for name, group in groups:
        if not group:
            continue
        means = {
            f"{who}_{what}": _mean(group, f"{who}_{what}")
            for who in ("own", "pooled")
            for what in ("accuracy", "spearman")
        }
        wins = means["own_accuracy"] > means["pooled_accuracy"]
        summary.append({"history": name, "profiles": len(group), "own_wins": wins} | means)
    return summary


def crossover(summary: list[dict]) -> str | None:
    """The first history length at which the own model's mean accuracy passes the
    pooled model's (None: never)."""
    return next((s["history"] for s in summary if s["own_wins"]), None)


def cross_profile_text(table: pa.Table) -> str:
    """The history comparison as text: per (model, k) and history, the mean over
    profiles of the own and the pooled model's accuracy and ρ, and where the own model
    starts to win."""
    if not table.num_rows:
        return ""
    rows = table.to_pylist()
    lines = [
        "cross-profile model (trained on other profiles) against each profile's own model "
        "trained on its h latest items before a test set (its latest fifth); means over profiles",
        f"{'model':<10}{'k':>3}{'h':>7}{'profiles':>10}{'own acc':>9}{'pooled':>8}"
        f"{'own ρ':>8}{'pooled':>8}",
    ]
    for model, k in sorted({(r["model"], r["k"]) for r in rows}):
        summary = by_history(rows, model, k)
        for s in summary:
            lines.append(
                f"{model:<10}{k:>3}{s['history']:>7}{s['profiles']:>10}"
                f"{_num(s['own_accuracy']):>9}{_num(s['pooled_accuracy']):>8}"
                f"{_num(s['own_spearman']):>8}{_num(s['pooled_spearman']):>8}"
            )
        wins = crossover(summary)
        verdict = f"passes the pooled model's from h = {wins}" if wins else "never passes it"
        lines.append(f"  {model} k={k}: the own model's mean accuracy {verdict}")
    return "\n".join(lines)


def _mean(rows: list[dict], column: str) -> float | None:
    values = [r[column] for r in rows if r[column] is not None]
    return float(np.mean(values)) if values else None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
