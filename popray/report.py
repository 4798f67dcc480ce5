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
from popray.report_metrics import metrics_html
from popray.summary import sections

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
            text = metrics_html(_rows(con, "metrics")) + answer.history_table(cross)
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
