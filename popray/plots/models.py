"""The figures of the models (the paper's setting: embeddings alone): confusion matrices,
reliability diagrams and the walk-forward accuracy per window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from popray.plots.common import SUFFIX, TITLE, query, save
from popray.training.models import REGISTRY


def confusion_matrices(
    out: Path, k: int, scheme: str, backbone: str, protocol: str = "stratified_kfold"
) -> Path:
    """Row-normalised confusion matrices per model, mean ± std over seeds (Figs. 5-8)."""
    grid = {"k": k, "scheme": scheme, "backbone": backbone, "protocol": protocol}
    metrics = query(out, "pooled_metrics", **grid).to_pylist()
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
    return save(fig, out, f"confusion_k{k}{SUFFIX[protocol]}")


def reliability(
    out: Path, k: int, scheme: str, backbone: str, protocol: str = "stratified_kfold", bins=10
) -> Path:
    """Accuracy against confidence per model, all seeds' validation predictions."""
    grid = {"k": k, "scheme": scheme, "backbone": backbone, "protocol": protocol}
    rows = query(out, "validation_predictions", **grid).to_pylist()
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
    return save(fig, out, f"reliability_k{k}{SUFFIX[protocol]}")


def walk_forward(out: Path, scheme: str, backbone: str) -> Path:
    """Accuracy of each walk-forward window (by its cut date; pooled over seeds and
    profiles) per model and k, beside the share of the window's images in their commonest
    class."""
    rows = query(out, "walk_forward_windows", scheme=scheme, backbone=backbone).to_pylist()
    majority = {
        (r["k"], r["cut_at"]): r["accuracy"]
        for r in query(out, "walk_forward_majority", scheme=scheme, backbone=backbone).to_pylist()
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
    return save(fig, out, "walk_forward")
