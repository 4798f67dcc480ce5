"""The top of the report: the answers its readers want first, across profiles and per profile.

1. How well popray ranks a profile's posts. For the models `popray predict` uses (the
   best in the folds, the largest k): Spearman ρ and top-20% precision against the
   recent-PoR baseline, and a plain "better than guessing: yes / no". For a new profile,
   the cross-profile model on profiles it never saw.
2. What works and what does not: the highest- and lowest-scored images (out of fold),
   with their Grad-CAM.
3. The PoR trend, then the candidates of the latest `popray predict`, ranked.

Class balance, quarantine and the full tables follow in the report's details section.
"""

from __future__ import annotations

import html
from pathlib import Path

from popray.training.models import REGISTRY

KFOLD, WALK_FORWARD, GROUPED = "stratified_kfold", "walk_forward", "profile_grouped"
SIGNIFICANCE = 0.05


def verdict(row: dict | None) -> tuple[bool, str]:
    """(better than guessing, why) for one metrics row: ρ > 0 at the 5% level (one-sided)
    and above the recent-PoR baseline's ρ on the same items."""
    if row is None or row["spearman_mean"] is None:
        return False, "nothing to rank"
    rho, p, base = row["spearman_mean"], row["spearman_p_value"], row["recent_spearman"]
    if rho <= 0:
        return False, f"ranks no better than random (ρ {rho:.2f})"
    if p is None or p >= SIGNIFICANCE:
        return False, f"ρ {rho:.2f} could be chance (p = {_p(p)})"
    if base is not None and base >= rho:
        return False, f"the recent-PoR baseline ranks as well (ρ {base:.2f} ≥ {rho:.2f})"
    against = "" if base is None else f" > baseline {base:.2f}"
    return True, f"ρ {rho:.2f}{against}, p = {_p(p)}"


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def chosen(rows: list[dict], profile: str | None) -> list[tuple[dict, dict | None]]:
    """Per media type, the (folds row, walk-forward row or None) of the model predict
    uses for `profile` (None: pooled over profiles): the largest k, the best accuracy in
    the folds."""
    mine = [r for r in rows if r["profile_id"] == profile and r["protocol"] == KFOLD]
    if not mine:
        return []
    image_ks = [r["k"] for r in mine if REGISTRY[r["model"]].validate_on == "image"]
    k = max(image_ks or [r["k"] for r in mine])
    picked = []
    for media in ("image", "video"):
        of_type = [r for r in mine if r["k"] == k and REGISTRY[r["model"]].validate_on == media]
        if not of_type:
            continue
        best = max(of_type, key=lambda r: r["accuracy_mean"])
        forward = next(
            (
                r
                for r in rows
                if (r["profile_id"], r["protocol"], r["model"], r["k"])
                == (profile, WALK_FORWARD, best["model"], k)
            ),
            None,
        )
        picked.append((best, forward))
    return picked


def ranking_table(rows: list[dict]) -> str:
    """One row per (profile, media type): the model, ρ in the folds and walk-forward
    (recent-PoR baseline in brackets), top-20% precision, and the verdict (on the
    walk-forward windows when they ran: the number to expect for posts not yet published;
    else on the folds)."""
    profiles = sorted({r["profile_id"] for r in rows if r["profile_id"] is not None})
    who = ([None] if len(profiles) > 1 else []) + profiles
    body = ""
    for profile in who:
        for folds, forward in chosen(rows, profile):
            good, why = verdict(forward or folds)
            main = forward or folds
            name = "all profiles" if profile is None else profile
            body += (
                f"<tr><th>{html.escape(name)}</th><td>{folds['validated_on']}s</td>"
                f"<td>{html.escape(folds['model'])}, k={folds['k']}</td>"
                f'<td class="num">{_rho(folds)}</td><td class="num">{_rho(forward)}</td>'
                f'<td class="num">{_num(main["top20_precision_mean"])} '
                f"[{_num(main['recent_top20_precision'])}; {_num(main['top_class_share'])}]</td>"
                f'<td class="{"yes" if good else "no"}"><b>{"yes" if good else "no"}</b>: '
                f"{html.escape(why)}</td></tr>"
            )
    if not body:
        return "<p>(no validated models: run <code>popray train</code>)</p>"
    return (
        "<p>How well popray orders a profile's posts by popularity, with the models "
        "<code>popray predict</code> uses. ρ: Spearman's rank correlation between the "
        "predicted and the actual popularity within the profile (1 = perfect order, 0 = "
        'random); in brackets the recent-PoR baseline ("it will do as well as the last '
        'post"). Top 20%: of the posts ranked in the top fifth, the share that is in the '
        "top class [baseline; a random pick]. The verdict uses the walk-forward windows "
        "(trained on the past, scored on the weeks after) when they ran.</p>"
        "<table><tr><th>profile</th><th>media</th><th>model</th><th>ρ folds</th>"
        "<th>ρ walk-forward</th><th>top 20%</th><th>better than guessing?</th></tr>"
        f"{body}</table>"
    )


def _rho(r: dict | None) -> str:
    if r is None or r["spearman_mean"] is None:
        return "-"
    return f"{r['spearman_mean']:.2f} [{_num(r['recent_spearman'])}]"


def new_profiles(rows: list[dict], cross: list[dict]) -> str:
    """For a profile without history: the cross-profile models on profiles they never
    saw, and from what history a profile's own model does better."""
    from popray.training.pooled_text import by_history, crossover

    grouped = [r for r in rows if r["protocol"] == GROUPED and r["profile_id"] is None]
    if not grouped:
        return ""
    items = []
    for r in sorted(grouped, key=lambda r: (REGISTRY[r["model"]].validate_on, r["k"])):
        good, why = verdict(r)
        wins = crossover(by_history(cross, r["model"], r["k"]))
        after = (
            f"a profile's own model does better from {wins} items of history"
            if wins
            else "no profile's own model did better, at any history length"
        )
        items.append(
            f"<li>{r['validated_on']}s, k={r['k']}: ρ {_num(r['spearman_mean'])} "
            f"(better than guessing: {'yes' if good else 'no'}, {html.escape(why)}); "
            f"{after}.</li>"
        )
    return (
        "<h3>A new profile, with no history</h3><p><code>popray predict --profile NEW</code> "
        "ranks with the cross-profile models, trained on every profile's posts. Scored "
        "only on profiles they never saw:</p>"
        f"<ul>{''.join(items)}</ul>"
    )


def extremes(explained: list[dict], img) -> str:
    """Per profile, the highest- and lowest-scored images (out of fold) with Grad-CAM;
    `img(path, alt)` embeds one."""
    picked = [r for r in explained if r["picked"] in ("top", "bottom") and r["path"]]
    if not picked:
        return "<p>(none: run <code>popray explain</code>)</p>"
    parts = []
    for profile in sorted({r["profile_id"] for r in picked}):
        for end, title in (("top", "scored highest"), ("bottom", "scored lowest")):
            mine = [r for r in picked if (r["profile_id"], r["picked"]) == (profile, end)]
            figs = "".join(
                f"<figure>{img(r['path'], r['media_id'])}<figcaption>"
                f"{html.escape(r['media_id'])}: score {r['score']:.2f}, actual class "
                f"{r['label']} of 0–{r['k'] - 1}</figcaption></figure>"
                for r in mine
            )
            k = mine[0]["k"] if mine else "-"
            head = f"<h4>{html.escape(profile)}: {title} (image model, k = {k})</h4>"
            parts.append(f'{head}<div class="cams">{figs}</div>')
    return (
        "<p>The profile's own images that its image model scored highest and lowest when "
        "they were held out (score 0–1: the expected class over k − 1), with Grad-CAM: red "
        "marks the regions behind the model's prediction.</p>" + "".join(parts)
    )


def candidates(rows: list[dict], img) -> str:
    """The latest `popray predict` ranking, best first, with each image's Grad-CAM."""
    if not rows:
        return ""
    body = ""
    for r in rows:
        heat = img(r["gradcam"], r["file"]) if r.get("gradcam") else ""
        whose = "cross-profile" if r["profile_id"] == "*" else r["profile_id"] or ""
        score = "" if r["score"] is None else f"{r['score']:.2f}"
        body += (
            f'<tr><td class="num">{r["rank"] or "-"}</td><td class="num">{score}</td>'
            f"<td>{html.escape(Path(r['file']).name)}</td>"
            f"<td>{html.escape(r['model'] or '')} ({html.escape(whose)})</td>"
            f'<td class="thumb">{heat}</td><td>{html.escape(r["error"] or "")}</td></tr>'
        )
    return (
        "<table><tr><th>rank</th><th>score</th><th>file</th><th>model (whose)</th>"
        f"<th>Grad-CAM</th><th>error</th></tr>{body}</table>"
    )


def history_table(cross: list[dict]) -> str:
    """The cross-profile models against each profile's own, by history length."""
    from popray.training.pooled_text import by_history

    if not cross:
        return ""
    body = ""
    for model, k in sorted({(r["model"], r["k"]) for r in cross}):
        for s in by_history(cross, model, k):
            body += (
                f"<tr><td>{html.escape(model)}</td><td>{k}</td><td>{s['history']}</td>"
                f'<td class="num">{s["profiles"]}</td>'
                + "".join(
                    f'<td class="num">{_num(s[c])}</td>'
                    for c in ("own_accuracy", "pooled_accuracy", "own_spearman", "pooled_spearman")
                )
                + "</tr>"
            )
    return (
        "<h3>Cross-profile model against each profile's own, by history length</h3><p>"
        "Each profile's latest fifth of posts is a test set; its own model trained on the "
        "h posts just before it, the cross-profile model on the other profiles only "
        "(table <code>cross_profile</code>); means over profiles.</p>"
        "<table><tr><th>model</th><th>k</th><th>h</th><th>profiles</th><th>own accuracy</th>"
        "<th>cross-profile accuracy</th><th>own ρ</th><th>cross-profile ρ</th></tr>"
        f"{body}</table>"
    )
