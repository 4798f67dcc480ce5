"""The grid's metrics as text (`popray train`'s summary, the report): per protocol, each
model's accuracy against the baselines and the paper, then the ranking scores.
"""

from __future__ import annotations

import pyarrow as pa

from popray.training.models import REGISTRY

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
