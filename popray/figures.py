"""The paper's figures, from the output tables, as PNG files under `OUT/figures/`.

    popray figures --out out

Each function draws one figure with matplotlib's object API (no pyplot, no global
backend state) and returns its path. Figures of stages that have not run are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from popray.errors import MissingError
from popray.io import store
from popray.plots.common import SUFFIX, query
from popray.plots.data import (
    closest_pairs,
    followers,
    nn_histogram,
    por_by_post_kind,
    por_over_time,
    tsne_map,
)
from popray.plots.models import confusion_matrices, reliability, walk_forward

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


def _protocols(out: Path) -> list[str]:
    """The validation protocols the metrics table holds (the paper's first)."""
    if not store.has_table(out, "metrics"):
        return ["stratified_kfold"]  # the models' figures are skipped: no metrics
    found = set(query(out, "protocols")["protocol"].to_pylist())
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
    ks = query(out, "label_ks", scheme=scheme)["k"]
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
