"""The report's validation section (popray/report.py): the metrics of every model, k and
protocol next to the baselines and the paper's numbers, and each profile's accuracy.
"""

from __future__ import annotations

import html

from popray.training.models import REGISTRY


def metrics_html(everything: list[dict]) -> str:
    """The rows of table `metrics` as HTML: one table per (scheme, backbone, features)
    trained, pooled over profiles; then each profile's accuracy when there are several."""
    pooled = [r for r in everything if r["profile_id"] is None]

    def key(r: dict) -> tuple:
        return r["scheme"], r["backbone"], r["features"]

    # the paper's setting first, then the other schemes and feature sets
    groups = sorted({key(r) for r in pooled}, key=lambda g: (g[0] != "por_rolling", g[2], g))
    parts = [_metrics_table([r for r in pooled if key(r) == g]) for g in groups]
    profiles = sorted({r["profile_id"] for r in everything if r["profile_id"] is not None})
    if len(profiles) > 1:
        parts.append(_per_profile([r for r in everything if r["profile_id"] is not None]))
    return "".join(parts)


COLUMNS = ("scheme", "backbone", "features", "protocol", "model", "k")
SHORT = {
    "stratified_kfold": "folds",
    "walk_forward": "walk-forward",
    "profile_grouped": "unseen profiles",
}


def _per_profile(rows: list[dict]) -> str:
    """Accuracy (mean over seeds) of every profile, model, k and protocol: one row per
    profile."""
    cols = sorted({tuple(r[c] for c in COLUMNS) for r in rows})
    by = {(r["profile_id"], *(r[c] for c in COLUMNS)): r for r in rows}
    head = "".join(f"<th>{html.escape(f'{m} k={k} {SHORT[p]}')}</th>" for *_, p, m, k in cols)
    body = ""
    for profile in sorted({r["profile_id"] for r in rows}):
        tds = ""
        for col in cols:
            r = by.get((profile, *col))
            tds += (
                "<td>-</td>"
                if r is None
                else f'<td class="num">{r["accuracy_mean"]:.2f} '
                f"({r['majority_accuracy']:.2f}; n={r['n_items']})"
                + ("" if r["spearman_mean"] is None else f"; ρ {r['spearman_mean']:.2f}")
                + "</td>"
            )
        body += f"<tr><th>{html.escape(profile)}</th>{tds}</tr>"
    return (
        "<h3>Per profile</h3><p>Each profile has its own folds and models: accuracy, mean "
        "over seeds (its majority-class accuracy; items validated on; Spearman ρ of the "
        "ranking).</p>"
        f"<table><tr><th>profile</th>{head}</tr>{body}</table>"
    )


def _score_cell(r: dict | None) -> str:
    """A metrics row as one table cell: accuracy, baselines, p-value, ECE, n."""
    if r is None:
        return "<td>-</td>"
    top2 = f"; top-2 {r['top2_mean']:.2f}" if r["top2_mean"] is not None else ""
    recent = "" if r["recent_accuracy"] is None else f", recent {r['recent_accuracy']:.2f}"
    return (
        f'<td class="num">{r["accuracy_mean"]:.2f} ± {r["accuracy_std"]:.2f} '
        f"(majority {r['majority_accuracy']:.2f}{recent}; p={r['p_value']:.2g}; "
        f"ECE {r['ece_mean']:.2f}{top2}; n={r['n_items']}){_ranking_cell(r)}</td>"
    )


def _ranking_cell(r: dict) -> str:
    """The ranking columns of a metrics row, for a score cell ("" when not computed)."""
    if r.get("spearman_mean") is None and r.get("top20_precision_mean") is None:
        return ""

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    p = r["spearman_p_value"]
    return (
        f"<br>ranking: ρ {num(r['spearman_mean'])} (recent {num(r['recent_spearman'])}"
        f"{'' if p is None else f'; p={p:.2g}'}); top 20% {num(r['top20_precision_mean'])} "
        f"(recent {num(r['recent_top20_precision'])}, random {num(r['top_class_share'])})"
    )


def _metrics_table(rows: list[dict]) -> str:
    """Models down, (k, protocol) across: the paper's folds and walk-forward side by side,
    then the paper's number."""
    ks = sorted({r["k"] for r in rows})
    protocols = [p for p in SHORT if any(r["protocol"] == p for r in rows)]
    cells = {(r["model"], r["k"], r["protocol"]): r for r in rows}
    head = "".join(
        "".join(f"<th>k = {k}, {SHORT[p]}</th>" for p in protocols) + "<th>paper</th>" for k in ks
    )
    body, weak = "", []
    for model in (m for m in REGISTRY if any(key[0] == m for key in cells)):
        tds = ""
        for k in ks:
            paper = ""
            for protocol in protocols:
                r = cells.get((model, k, protocol))
                tds += _score_cell(r)
                if r is not None and r["paper_accuracy"] is not None:
                    paper = r["paper_accuracy"]
                if r is not None and r["p_value"] >= 0.05:
                    weak.append(f"{model} k={k} {SHORT[protocol]} (p={r['p_value']:.2g})")
            tds += f'<td class="num">{paper}</td>'
        body += f"<tr><th>{html.escape(model)}</th>{tds}</tr>"
    note = ""
    if weak:
        note = (
            '<p class="warn">Not better than guessing (the better of the majority-class and '
            "recent-PoR baselines, one-sided binomial test at 5%): "
            f"{html.escape(', '.join(weak))}.</p>"
        )
    first = rows[0] if rows else {}
    return (
        f"<p>Accuracy, mean ± std over {first.get('n_seeds')} seeds (each seed pooled over "
        "its folds, and over every profile's own folds), beside two baselines on the same "
        "items (always the profile's commonest class; the class of the profile's "
        "previous item of the same type). <b>folds</b>: the paper's stratified 5-fold, "
        "past and future posts mixed; <b>walk-forward</b>: models trained on what was "
        "known before each cut, scored on the posts of the window after it (their classes "
        "once settled) — the number to expect for posts not yet published. "
        "Then the p-value of the "
        "model against the better one, and the expected calibration error; labels "
        f"{html.escape(str(first.get('scheme')))}, backbone "
        f"{html.escape(str(first.get('backbone')))}, features "
        f"{html.escape(str(first.get('features')))}. Paper: Viola et al. 2021, on their "
        f"profile.</p><table><tr><th>model</th>{head}</tr>{body}</table>{note}"
    )
