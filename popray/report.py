"""The run report: one self-contained HTML page, `OUT/report/index.html`.

    popray report --out out

First the answers (popray/answer.py): how well popray ranks each profile's posts
against guessing, the highest- and lowest-scored posts with their Grad-CAM, the PoR
trend, the candidates of the latest `popray predict`. Then the details: run summary
(inputs, quarantined rows and why, duplicates, class balance), the metrics next to the
paper's, the cross-profile comparison, every figure under `OUT/figures/`, Grad-CAM
examples of each class. Images are embedded as data URIs and the page loads
nothing from anywhere, so it works when copied elsewhere or opened offline.
"""

from __future__ import annotations

import base64
import html
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from popray import answer
from popray.figures import CAPTIONS
from popray.io import store
from popray.plots.common import FIG_DIR
from popray.summary import sections
from popray.training.models import REGISTRY

REPORT_DIR = "report"
TREND = "por_over_time"  # the figure shown at the top
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0; } .sub { color: #666; margin-top: .2em; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
.cams { display: flex; flex-wrap: wrap; gap: 12px; }
.cams figure { width: 270px; margin: 0; } .cams img { width: 100%; }
.warn { background: #fff4e5; border-left: 4px solid #f0a030; padding: .5em 1em; }
td.yes { background: #e6f4ea; } td.no { background: #fdecea; }
td.thumb img { width: 160px; } h2.details { border-top: 2px solid #999; padding-top: .6em; }
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _cell(value) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(_cell(v) for v in r.values()) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary(con) -> str:
    parts = []
    for title, sql in sections(con):
        rows = con.sql(sql).to_arrow_table().to_pylist()
        parts.append(f"<h3>{html.escape(title.replace('_', ' '))}</h3>{_table(rows)}")
    return "".join(parts)


def _metrics(con) -> str:
    """One table per (scheme, backbone, features) trained, pooled over profiles; then each
    profile's accuracy when there are several."""
    everything = _rows(con, "metrics")
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


def _gradcam(con, out: Path) -> str:
    rows = _rows(con, "heatmaps")
    figs = []
    for r in rows:
        proba = " ".join(f"{p:.2f}" for p in r["proba"])
        what = r["media_id"] or Path(r["file"]).name
        label = "" if r["label"] is None else f"class {r['label']}, "
        caption = f"{what}: {label}predicted {r['pred']} ({proba}), k={r['k']}"
        figs.append(
            f"<figure>{_img(out / r['path'], caption)}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    if not figs:
        return "<p>(none)</p>"
    intro = (
        "<p>Heatmaps of the image model's top class over the original photo (red: the "
        "regions that raise that class most). Class 0 is the least popular, class k−1 the "
        "most popular, relative to the profile's own images.</p>"
    )
    return f'{intro}<div class="cams">{"".join(figs)}</div>'


def _figures(out: Path) -> str:
    """Every PNG under OUT/figures: the known ones in reading order with their caption."""
    found = {p.stem: p for p in (out / FIG_DIR).glob("*.png")} if (out / FIG_DIR).exists() else {}
    found.pop(TREND, None)  # at the top of the report
    names = [n for n in CAPTIONS if n in found] + sorted(set(found) - set(CAPTIONS))
    parts = [
        f"<figure>{_img(found[n], n)}<figcaption>{html.escape(CAPTIONS.get(n, n))}</figcaption>"
        "</figure>"
        for n in names
    ]
    return "".join(parts) or "<p>(none: run <code>popray figures</code>)</p>"


def _rows(con, query: str) -> list[dict]:
    """The rows of the named query `query` of popray/io/sql/report.sql."""
    return con.sql(store.sql_text(f"report.{query}")).to_arrow_table().to_pylist()


def _main_group(rows: list[dict]) -> list[dict]:
    """The metrics of the setting the report answers for: the paper's label scheme when
    trained, embeddings alone before context features."""
    groups = sorted(
        {(r["scheme"], r["backbone"], r["features"]) for r in rows},
        key=lambda g: (g[0] != "por_rolling", g[2], g),
    )
    return [r for r in rows if groups and (r["scheme"], r["backbone"], r["features"]) == groups[0]]


def _answers(con, out: Path, views: set[str]) -> list[tuple[str, str]]:
    """The sections at the top of the report (popray/answer.py)."""

    def img(path: str, alt: str) -> str:
        return _img(out / path, alt)

    found = []
    if "metrics" in views:
        rows = _main_group(_rows(con, "metrics"))
        cross = _rows(con, "cross_profile") if "cross_profile" in views else []
        text = answer.ranking_table(rows) + answer.new_profiles(rows, cross)
        found.append(("How well popray ranks each profile's posts", text))
    if "explanations" in views:
        explained = _rows(con, "explanations")
        found.append(("What works, and what does not", answer.extremes(explained, img)))
    trend = out / FIG_DIR / f"{TREND}.png"
    if trend.exists():
        caption = html.escape(CAPTIONS[TREND])
        found.append(
            (
                "Popularity Rate over time",
                f"<figure>{_img(trend, TREND)}<figcaption>{caption}</figcaption></figure>",
            )
        )
    if "predictions_new" in views:
        ranked = _rows(con, "ranked_candidates")
        found.append(("Candidates, ranked (latest popray predict)", answer.candidates(ranked, img)))
    return found


def write_report(out: Path) -> Path:
    """Write `OUT/report/index.html` (atomically) and return its path: the answers
    first, then the details."""
    con = store.connect(out)
    try:
        views = store.view_names(con)
        top = _answers(con, out, views)
        sections = [("Run summary", _summary(con))]
        if "metrics" in views:
            cross = _rows(con, "cross_profile") if "cross_profile" in views else []
            text = _metrics(con) + answer.history_table(cross)
            sections.append(("Validation: every model, k and protocol", text))
        sections.append(("Figures", _figures(out)))
        if "explanations" in views:
            sections.append(("Grad-CAM: a sample of each class", _gradcam(con, out)))
    finally:
        con.close()
    answers = "".join(f"<h2>{html.escape(t)}</h2>{s}" for t, s in top)
    details = (
        '<h2 id="details" class="details">Details</h2><p>Class balance, quarantine, every '
        "table and figure.</p>"
    )
    body = answers + details + "".join(f"<h2>{html.escape(t)}</h2>{s}" for t, s in sections)
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>popray report</title><style>{STYLE}</style></head><body>"
        f'<h1>popray report</h1><p class="sub">{html.escape(str(out))} — written '
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>{body}</body></html>"
    )
    folder = out / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "index.html"
    tmp = folder / f".index-{uuid.uuid4().hex}.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, target)
    return target
