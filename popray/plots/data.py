"""The figures of the data: PoR over time and by post kind, followers at post time, the
near-duplicate distances and closest pairs, and the t-SNE map of the embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from PIL import Image

from popray.media import decode
from popray.plots.common import CLASS_COLOURS, NO_CLASS, query, save


def por_over_time(out: Path, k: int) -> Path:
    """PoR over time per media type, coloured by class: global vs rolling (paper Fig. 2)."""
    rows = query(out, "labels_over_time", k=k).to_pylist()
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
    return save(fig, out, "por_over_time")


def por_by_post_kind(out: Path, k: int) -> Path:
    """PoR of image-only posts vs posts with a video (paper Fig. 1b)."""
    rows = query(out, "post_kinds", k=k).to_pylist()
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
    return save(fig, out, "por_by_post_kind")


def followers(out: Path, k: int) -> Path:
    """Known follower counts against the estimates at post time (extrapolated ones marked)."""
    known = query(out, "follower_points").to_pylist()
    est = query(out, "labels_over_time", k=k).to_pylist()
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
    return save(fig, out, "followers")


def nn_histogram(out: Path, threshold: float) -> Path:
    """Each item's distance to its nearest neighbour, threshold marked (paper Fig. 3a)."""
    rows = query(out, "nn_distances")
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
    return save(fig, out, "nn_distances")


def closest_pairs(out: Path, threshold: float, n: int = 8) -> Path:
    """Contact sheet of the n closest image pairs, to check the threshold by eye."""
    from popray.io.store import input_dir_of

    pairs = query(out, "closest_pairs", n=n).to_pylist()
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
    return save(fig, out, "closest_pairs")


TSNE_POINTS = 3000  # t-SNE is quadratic-ish in points: a map of more shows no more


def tsne_rows(
    out: Path, k: int, backbone: str, scheme: str, points: int = TSNE_POINTS, seed: int = 0
) -> tuple[list[dict], int]:
    """The items the t-SNE map shows, and how many there are in all: every embedded,
    labelled item when there are at most `points`, else a sample of `points` picked by a
    hash of (media_id, seed). DuckDB keeps only the top `points` while it scans, so
    neither the query nor the driver grows with the profiles; an item stays in or out of
    the sample from one run to the next, whatever else is added."""
    table = query(
        out, "tsne_items", k=k, backbone=backbone, scheme=scheme, seed=seed, points=points
    )
    total = table["total"][0].as_py() if table.num_rows else 0
    rows = sorted(table.drop_columns(["total"]).to_pylist(), key=lambda r: r["media_id"])
    return rows, total


def _thumbnails(ax, root, rows: list[dict], xy: np.ndarray, n: int, seed: int) -> None:
    """Thumbnails of `n` points picked with `seed`, framed in their class's colour."""
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(rows), size=min(n, len(rows)), replace=False):
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
    _thumbnails(ax, input_dir_of(out), rows, xy, thumbs, seed)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best")
    shown = f"{total} items" if len(rows) == total else f"a sample of {len(rows)} of {total} items"
    ax.set_title(
        f"t-SNE of image and video-thumbnail embeddings ({backbone}), {scheme} k={k}: {shown}"
    )
    return save(fig, out, "tsne")
