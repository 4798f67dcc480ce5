"""The paper's figures, from the output tables, as PNG files under `OUT/figures/`.

    popray figures --out out

Each function draws one figure with matplotlib's object API (no pyplot, no global
backend state) and returns its path. Figures of stages that have not run are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from PIL import Image

from popray.errors import MissingError
from popray.io import store
from popray.media import decode
from popray.training.models import REGISTRY

FIG_DIR = "figures"
# Every figure, in reading order, with the caption the report shows under it.
CAPTIONS = {
    "por_over_time": "Popularity Rate over time per media type, coloured by class: global "
    "classes (left) vs the rolling window the paper uses (right), paper Fig. 2.",
    "por_by_post_kind": "PoR of image-only posts vs posts with a video (paper Fig. 1b).",
    "followers": "Known follower counts and the estimates at post time; red: extrapolated "
    "outside the known range.",
    "nn_distances": "Distance of each item to its nearest neighbour; below the dashed "
    "threshold two items are near-duplicates (paper Fig. 3a).",
    "closest_pairs": "The closest image pairs, to check the threshold by eye.",
    "tsne": "t-SNE of image and video-thumbnail embeddings coloured by rolling class, "
    "with a few thumbnails (paper Fig. 4).",
    "confusion_k2": "Confusion matrices, k = 2, stratified folds (paper Figs. 5-8).",
    "confusion_k3": "Confusion matrices, k = 3, stratified folds (paper Figs. 5-8).",
    "reliability_k2": "Reliability diagrams, k = 2, stratified folds: observed accuracy per "
    "confidence bin (on the diagonal = calibrated), validation predictions of every seed.",
    "reliability_k3": "Reliability diagrams, k = 3, stratified folds.",
    "confusion_k2_walk_forward": "Confusion matrices, k = 2, walk-forward: trained before "
    "each cut, scored on the window after it.",
    "confusion_k3_walk_forward": "Confusion matrices, k = 3, walk-forward.",
    "reliability_k2_walk_forward": "Reliability diagrams, k = 2, walk-forward.",
    "reliability_k3_walk_forward": "Reliability diagrams, k = 3, walk-forward.",
    "walk_forward": "Walk-forward accuracy per evaluation window (mean over seeds and "
    "profiles) against the recent-PoR baseline on the same items: is the model as good on "
    "the next weeks' posts as the folds say?",
}
SUFFIX = {"stratified_kfold": "", "walk_forward": "_walk_forward"}
TITLE = {"stratified_kfold": "stratified folds", "walk_forward": "walk-forward"}
NO_CLASS = "#999999"  # items a scheme gives no class
CLASS_COLOURS = ["#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b"]
LABELS_SQL = """
SELECT l.media_id, l.media_type, l.published_at, l.por, l.followers_est,
       l.followers_extrapolated, l.post_type,
       any_value(l.class) FILTER (WHERE l.scheme = 'por_global') AS class_global,
       any_value(l.class) FILTER (WHERE l.scheme = 'por_rolling') AS class_rolling
FROM labels l WHERE l.k = $k AND l.scheme IN ('por_global', 'por_rolling')
GROUP BY ALL ORDER BY l.published_at, l.media_id"""
POST_KIND_SQL = """
SELECT p.post_id, any_value(l.por) AS por, bool_or(l.media_type = 'video') AS has_video
FROM labels l JOIN posts p USING (post_id) WHERE l.k = $k GROUP BY p.post_id"""


def _query(out: Path, sql: str, **params) -> pa.Table:
    con = store.connect(out)
    try:
        return con.sql(sql, params=params or None).to_arrow_table()
    finally:
        con.close()


def _save(fig: Figure, out: Path, name: str) -> Path:
    path = out / FIG_DIR / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def por_over_time(out: Path, k: int) -> Path:
    """PoR over time per media type, coloured by class: global vs rolling (paper Fig. 2)."""
    rows = _query(out, LABELS_SQL, k=k).to_pylist()
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True, squeeze=False)
    for r, media_type in enumerate(("image", "video")):
        mine = [x for x in rows if x["media_type"] == media_type]
        for c, scheme in enumerate(("global", "rolling")):
            ax = axes[r][c]
            for cls in range(k):
                pts = [x for x in mine if x[f"class_{scheme}"] == cls]
                ax.scatter(
                    [x["published_at"] for x in pts],
                    [x["por"] for x in pts],
                    s=9,
                    color=CLASS_COLOURS[cls],
                    label=f"class {cls}",
                )
            ax.set_yscale("log")
            ax.set_title(f"{media_type}s, {scheme} classes (k={k}, n={len(mine)})")
            ax.set_ylabel("PoR")
            ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Popularity Rate over time: global vs rolling-window classes")
    return _save(fig, out, "por_over_time")


def por_by_post_kind(out: Path, k: int) -> Path:
    """PoR of image-only posts vs posts with a video (paper Fig. 1b)."""
    rows = _query(out, POST_KIND_SQL, k=k).to_pylist()
    groups = [
        [r["por"] for r in rows if not r["has_video"]],
        [r["por"] for r in rows if r["has_video"]],
    ]
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.boxplot(groups, showfliers=True)
    ax.set_xticks(
        [1, 2],
        [f"image-only posts\n(n={len(groups[0])})", f"posts with video\n(n={len(groups[1])})"],
    )
    ax.set_yscale("log")
    ax.set_ylabel("PoR")
    ax.set_title("PoR by post kind")
    return _save(fig, out, "por_by_post_kind")


def followers(out: Path, k: int) -> Path:
    """Known follower counts against the estimates at post time (extrapolated ones marked)."""
    known = _query(out, 'SELECT "at", followers FROM followers ORDER BY "at"').to_pylist()
    est = _query(out, LABELS_SQL, k=k).to_pylist()
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(
        [r["at"] for r in known],
        [r["followers"] for r in known],
        "o",
        ms=3,
        color="black",
        label=f"known ({len(known)} points)",
    )
    for flag, colour, name in (
        (False, "#1f77b4", "interpolated"),
        (True, "#d62728", "extrapolated"),
    ):
        pts = [r for r in est if r["followers_extrapolated"] == flag]
        ax.plot(
            [r["published_at"] for r in pts],
            [r["followers_est"] for r in pts],
            ".",
            ms=4,
            color=colour,
            label=f"at post time, {name} ({len(pts)})",
        )
    ax.set_ylabel("followers")
    ax.set_title("Followers: known points and estimates at post time")
    ax.legend(fontsize=8)
    return _save(fig, out, "followers")


def nn_histogram(out: Path, threshold: float) -> Path:
    """Each item's distance to its nearest neighbour, threshold marked (paper Fig. 3a)."""
    rows = _query(out, "SELECT media_type, distance FROM nn_distances WHERE distance IS NOT NULL")
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for media_type, colour in (("image", "#1f77b4"), ("video", "#ff7f0e")):
        d = [r["distance"] for r in rows.to_pylist() if r["media_type"] == media_type]
        ax.hist(d, bins=40, alpha=0.6, color=colour, label=f"{media_type}s ({len(d)})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("distance to the nearest neighbour (embedding space)")
    ax.set_ylabel("items")
    ax.legend()
    ax.set_title("Nearest-neighbour distances")
    return _save(fig, out, "nn_distances")


def closest_pairs(out: Path, threshold: float, n: int = 8) -> Path:
    """Contact sheet of the n closest image pairs, to check the threshold by eye."""
    from popray.io.store import input_dir_of

    sql = """SELECT d.media_id, d.nn_media_id, d.distance, a.path AS a, b.path AS b
             FROM nn_distances d JOIN media a ON a.media_id = d.media_id
             JOIN media b ON b.media_id = d.nn_media_id
             WHERE d.media_type = 'image' AND d.media_id < d.nn_media_id
             ORDER BY d.distance LIMIT $n"""
    pairs = _query(out, sql, n=n).to_pylist()
    root = input_dir_of(out)
    fig = Figure(figsize=(6, 1.6 * max(1, len(pairs))), layout="constrained")
    axes = fig.subplots(max(1, len(pairs)), 2, squeeze=False)
    for row, pair in zip(axes, pairs, strict=False):
        for ax, key, mid in ((row[0], "a", "media_id"), (row[1], "b", "nn_media_id")):
            ax.imshow(decode.resize(decode.load_image(root.read_bytes(pair[key])), 160))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(pair[mid], fontsize=7)
        verdict = "duplicate" if pair["distance"] < threshold else "kept apart"
        row[0].set_ylabel(f"{pair['distance']:.2f}\n{verdict}", fontsize=8)
    fig.suptitle(f"Closest image pairs (threshold {threshold:g})")
    return _save(fig, out, "closest_pairs")


TSNE_POINTS = 3000  # t-SNE is quadratic-ish in points: a map of more shows no more


def tsne_rows(
    out: Path, k: int, backbone: str, scheme: str, points: int = TSNE_POINTS, seed: int = 0
) -> tuple[list[dict], int]:
    """The items the t-SNE map shows, and how many there are in all: every embedded,
    labelled item when there are at most `points`, else a sample of `points` picked by a
    hash of (media_id, seed). DuckDB keeps only the top `points` while it scans, so
    neither the query nor the driver grows with the profiles; an item stays in or out of
    the sample from one run to the next, whatever else is added."""
    sql = """
    WITH items AS (
        SELECT l.media_id, l.media_type, l.class AS cls, m.path, m.thumbnail_path,
               coalesce(i.embedding, v.thumbnail) AS v
        FROM labels l JOIN media m USING (media_id)
        LEFT JOIN embeddings_image i ON i.media_id = l.media_id AND i.view = 0
            AND i.backbone = $backbone
        LEFT JOIN embeddings_video v ON v.media_id = l.media_id AND v.backbone = $backbone
        WHERE l.k = $k AND l.scheme = $scheme AND coalesce(i.embedding, v.thumbnail) IS NOT NULL
    )
    SELECT *, (SELECT count(*) FROM items) AS total FROM items
    ORDER BY hash(media_id, $seed) LIMIT $points"""
    table = _query(out, sql, k=k, backbone=backbone, scheme=scheme, seed=seed, points=points)
    total = table["total"][0].as_py() if table.num_rows else 0
    rows = sorted(table.drop_columns(["total"]).to_pylist(), key=lambda r: r["media_id"])
    return rows, total


def tsne_map(
    out: Path,
    k: int,
    backbone: str,
    scheme: str,
    thumbs: int = 14,
    seed: int = 0,
    points: int = TSNE_POINTS,
) -> Path:
    """t-SNE of image and video-thumbnail embeddings (at most `points` of them, see
    `tsne_rows`), coloured by class (of `scheme`; grey: none), with thumbnails of a few
    points (paper Fig. 4)."""
    from sklearn.manifold import TSNE

    from popray.io.store import input_dir_of

    rows, total = tsne_rows(out, k, backbone, scheme, points, seed)
    if len(rows) < 5:
        raise ValueError(f"t-SNE needs at least 5 embedded, labelled items; {len(rows)} found")
    x = np.asarray([r["v"] for r in rows], np.float32)
    xy = TSNE(perplexity=min(30, max(2, len(x) // 4)), random_state=seed, init="pca").fit_transform(
        x
    )
    fig = Figure(figsize=(10, 8), layout="constrained")
    ax = fig.subplots()
    for cls in range(k):
        for media_type, marker in (("image", "o"), ("video", "^")):
            sel = [
                i for i, r in enumerate(rows) if r["cls"] == cls and r["media_type"] == media_type
            ]
            ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                s=14,
                marker=marker,
                color=CLASS_COLOURS[cls],
                label=f"class {cls}, {media_type}s",
            )
    none = [i for i, r in enumerate(rows) if r["cls"] is None]
    if none:
        ax.scatter(xy[none, 0], xy[none, 1], s=10, color=NO_CLASS, label="no class")
    root = input_dir_of(out)
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(rows), size=min(thumbs, len(rows)), replace=False):
        r = rows[i]
        source = r["path"] if r["media_type"] == "image" else r["thumbnail_path"]
        if not source:
            continue
        img = Image.fromarray(decode.resize(decode.load_image(root.read_bytes(source)), 56))
        box = AnnotationBbox(
            OffsetImage(np.asarray(img), zoom=0.9),
            xy[i],
            frameon=True,
            bboxprops={
                "edgecolor": NO_CLASS if r["cls"] is None else CLASS_COLOURS[r["cls"]],
                "lw": 2,
            },
        )
        ax.add_artist(box)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best")
    shown = f"{total} items" if len(rows) == total else f"a sample of {len(rows)} of {total} items"
    ax.set_title(
        f"t-SNE of image and video-thumbnail embeddings ({backbone}), {scheme} k={k}: {shown}"
    )
    return _save(fig, out, "tsne")


# the models' figures show the paper's setting: embeddings alone, one protocol at a time
GRID_FILTER = (
    "k = $k AND scheme = $scheme AND backbone = $backbone AND features = 'embedding' "
    "AND protocol = $protocol"
)
POOLED = " AND profile_id IS NULL"  # metrics: the row pooling every profile


def confusion_matrices(
    out: Path, k: int, scheme: str, backbone: str, protocol: str = "stratified_kfold"
) -> Path:
    """Row-normalised confusion matrices per model, mean ± std over seeds (Figs. 5-8)."""
    sql = f"SELECT * FROM metrics WHERE {GRID_FILTER}{POOLED}"
    metrics = _query(out, sql, k=k, scheme=scheme, backbone=backbone, protocol=protocol).to_pylist()
    order = list(REGISTRY)
    metrics.sort(key=lambda m: order.index(m["model"]))
    fig = Figure(figsize=(3.3 * max(1, len(metrics)), 3.6), layout="constrained")
    axes = fig.subplots(1, max(1, len(metrics)), squeeze=False)[0]
    for ax, m in zip(axes, metrics, strict=False):
        mean, std = np.asarray(m["confusion_mean"]), np.asarray(m["confusion_std"])
        ax.imshow(mean, vmin=0, vmax=1, cmap="Blues")
        for i in range(k):
            for j in range(k):
                colour = "white" if mean[i, j] > 0.6 else "black"
                ax.text(
                    j,
                    i,
                    f"{mean[i, j]:.2f}\n±{std[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=colour,
                )
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(
            f"{m['model']}\nacc {m['accuracy_mean']:.2f} ± {m['accuracy_std']:.2f}", fontsize=9
        )
    fig.suptitle(
        f"Confusion matrices, k={k}, {TITLE[protocol]} (row-normalised, mean ± std over seeds)"
    )
    return _save(fig, out, f"confusion_k{k}{SUFFIX[protocol]}")


def reliability(
    out: Path, k: int, scheme: str, backbone: str, protocol: str = "stratified_kfold", bins=10
) -> Path:
    """Accuracy against confidence per model, all seeds' validation predictions."""
    sql = f"SELECT model, label, proba FROM predictions WHERE {GRID_FILTER}"
    rows = _query(out, sql, k=k, scheme=scheme, backbone=backbone, protocol=protocol).to_pylist()
    models = [m for m in REGISTRY if any(r["model"] == m for r in rows)]
    fig = Figure(figsize=(3.3 * max(1, len(models)), 3.6), layout="constrained")
    axes = fig.subplots(1, max(1, len(models)), squeeze=False)[0]
    edges = np.linspace(0, 1, bins + 1)
    for ax, model in zip(axes, models, strict=False):
        mine = [r for r in rows if r["model"] == model]
        proba = np.asarray([r["proba"] for r in mine])
        y = np.asarray([r["label"] for r in mine])
        confidence, right = proba.max(axis=1), proba.argmax(axis=1) == y
        which = np.minimum((confidence * bins).astype(int), bins - 1)
        centres = (edges[:-1] + edges[1:]) / 2
        acc = [right[which == b].mean() if (which == b).any() else np.nan for b in range(bins)]
        ax.bar(centres, acc, width=1 / bins, edgecolor="black", alpha=0.7)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top class)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{model} (n={len(mine)})", fontsize=9)
    fig.suptitle(f"Reliability, k={k}, {TITLE[protocol]}")
    return _save(fig, out, f"reliability_k{k}{SUFFIX[protocol]}")


WALK_FORWARD_ROWS = """
FROM predictions WHERE scheme = $scheme AND backbone = $backbone AND features = 'embedding'
  AND protocol = 'walk_forward'"""
WINDOWS_SQL = f"""
SELECT model, k, cut_at, avg((pred = label)::DOUBLE) AS accuracy,
       count(DISTINCT media_id) AS n
{WALK_FORWARD_ROWS} GROUP BY ALL ORDER BY model, k, cut_at"""
# the share of a window's images in their commonest class (guessing it is right that often)
MAJORITY_SQL = f"""
SELECT k, cut_at, max(n) / sum(n) AS accuracy FROM (
    SELECT k, cut_at, label, count(DISTINCT media_id) AS n
    {WALK_FORWARD_ROWS} AND model = 'image' GROUP BY ALL)
GROUP BY ALL"""


def walk_forward(out: Path, scheme: str, backbone: str) -> Path:
    """Accuracy of each walk-forward window (by its cut date; pooled over seeds and
    profiles) per model and k, beside the share of the window's images in their commonest
    class."""
    rows = _query(out, WINDOWS_SQL, scheme=scheme, backbone=backbone).to_pylist()
    majority = {
        (r["k"], r["cut_at"]): r["accuracy"]
        for r in _query(out, MAJORITY_SQL, scheme=scheme, backbone=backbone).to_pylist()
    }
    ks = sorted({r["k"] for r in rows})
    fig = Figure(figsize=(6 * max(1, len(ks)), 3.8), layout="constrained")
    axes = fig.subplots(1, max(1, len(ks)), squeeze=False)[0]
    for ax, k in zip(axes, ks, strict=False):
        for model in REGISTRY:
            mine = [r for r in rows if r["k"] == k and r["model"] == model]
            if mine:
                n = sum(r["n"] for r in mine)
                ax.plot(
                    [r["cut_at"] for r in mine],
                    [r["accuracy"] for r in mine],
                    "o-",
                    label=f"{model} (n={n})",
                    ms=4,
                )
        cuts = sorted({r["cut_at"] for r in rows if r["k"] == k})
        ax.plot(
            cuts,
            [majority.get((k, c), np.nan) for c in cuts],
            "k--",
            label="commonest class (images)",
        )
        ax.axhline(1 / k, color="grey", lw=0.8, ls=":", label="1/k")
        ax.set_ylim(0, 1)
        ax.set_xlabel("cut (window start)")
        ax.set_ylabel("accuracy on the window")
        ax.set_title(f"k={k}")
        ax.legend(fontsize=7)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
    fig.suptitle(f"Walk-forward accuracy per window ({scheme}, {backbone})")
    return _save(fig, out, "walk_forward")


def _protocols(out: Path) -> list[str]:
    """The validation protocols the metrics table holds (the paper's first)."""
    if not store.has_table(out, "metrics"):
        return ["stratified_kfold"]  # the models' figures are skipped: no metrics
    found = set(_query(out, "SELECT DISTINCT protocol FROM metrics")["protocol"].to_pylist())
    return [p for p in SUFFIX if p in found]


def run_figures(
    out: Path,
    backbone: str,
    threshold: float,
    echo: Callable[[str], None] = lambda s: None,
    scheme: str = "por_rolling",
) -> list[Path]:
    """Every figure whose tables exist (models' figures: those of `scheme` and
    `backbone`); one progress line per figure."""
    ks = _query(out, "SELECT DISTINCT k FROM labels WHERE scheme = $s", s=scheme)["k"]
    ks = sorted(ks.to_pylist())
    if not ks:
        raise MissingError(f"{out}: no labels of scheme {scheme!r}; run `popray label`")
    k = ks[-1]
    plan: list[tuple[str, Callable[[], Path]]] = [
        ("labels", lambda: por_over_time(out, k)),
        ("labels", lambda: por_by_post_kind(out, k)),
        ("labels", lambda: followers(out, k)),
        ("nn_distances", lambda: nn_histogram(out, threshold)),
        ("nn_distances", lambda: closest_pairs(out, threshold)),
        ("embeddings_image", lambda: tsne_map(out, k, backbone, scheme)),
    ]
    protocols = _protocols(out)
    for protocol in protocols:
        plan += [
            ("metrics", lambda k=k_, p=protocol: confusion_matrices(out, k, scheme, backbone, p))
            for k_ in ks
        ]
        plan += [
            ("predictions", lambda k=k_, p=protocol: reliability(out, k, scheme, backbone, p))
            for k_ in ks
        ]
    if "walk_forward" in protocols:
        plan.append(("predictions", lambda: walk_forward(out, scheme, backbone)))
    paths = []
    for i, (table, draw) in enumerate(plan, start=1):
        if not store.has_table(out, table):
            echo(f"[{i}/{len(plan)}] skipped: table {table} missing")
            continue
        paths.append(draw())
        echo(f"[{i}/{len(plan)}] {paths[-1]}")
    return paths
