"""Walk-forward validation: train on what was known before a cut date, evaluate on the
window after it (beside the paper's stratified folds, which mix past and future posts).

    popray train --out out --protocol walk_forward

For each profile the last `cuts` windows of `horizon_days` (default 6 x 8 weeks; the
last one ends just after the profile's last post) are evaluated in turn. A window's
models train on everything published before its start (an expanding window) and score
the items published inside it.

What a cut's models may know, and how later posts are kept out of it:
- Training labels are recomputed, by the same label SQL, on the export as it stood at
  the cut: posts published before it and follower counts dated before it. A rolling
  window around a post near the cut therefore ends at the cut (its quantiles come from
  earlier posts only); global quantiles, the residual fit and moving averages cover the
  history before the cut; followers at post time are interpolated between earlier
  follower points and extrapolated past the last of them, as they would have been then.
- The window's items are scored against their classes once each is settled: labels
  computed on the export as it stood half a label window (`label.window_days` / 2)
  after the window's end, when every scored post's centred rolling window is complete
  (the paper's definition of its class; observed later, so nothing leaks into training).
- The epoch count is picked on the latest `inner_val_fraction` of the training items
  (by time), never on the window; the model is then retrained on every training item
  for that many epochs (the final models' rule).
Not as of the cut: likes and comments are the export's (an export has no history of
likes, so a post just before the cut counts the likes it gathered later); near-duplicate
decisions are the whole history's (no window is scored on a copy of a training item, the
paper's reason to remove them); the context features' PoR trend uses earlier posts only,
but their followers are estimated from the whole follower history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from popray import store
from popray.config import GridConfig, LabelConfig, WalkForwardConfig
from popray.dataset import Dataset
from popray.evaluate import ranking_targets, recent_classes
from popray.folds import Fold, fold_data
from popray.labels import label_tables
from popray.models import REGISTRY
from popray.tables import TS
from popray.train import fit_all, fit_fold

US_PER_DAY = 86_400_000_000
NO_CLASS = -1

# The export as it stood at each profile's cut (view as_of: profile_id, t).
POSTS_AS_OF = "SELECT p.* FROM posts p JOIN as_of a USING (profile_id) WHERE p.published_at < a.t"
FOLLOWERS_AS_OF = 'SELECT f.* FROM followers f JOIN as_of a USING (profile_id) WHERE f."at" < a.t'


@dataclass
class Timeline:
    """One profile's windows for one (scheme, k): window i is [bounds[i], bounds[i + 1])
    (microseconds since the epoch); `*_class[i]` is each item's class as known at the
    cut bounds[i], `*_truth[i]` as settled after window i (NO_CLASS: none, e.g. not yet
    published); rows as in the profile's Dataset."""

    bounds: np.ndarray  # (cuts + 1,) int64
    image_t: np.ndarray  # (n_images,) int64 publication times
    video_t: np.ndarray
    image_class: np.ndarray  # (cuts, n_images) int64
    video_class: np.ndarray
    image_truth: np.ndarray  # (cuts, n_images) int64
    video_truth: np.ndarray

    @property
    def windows(self) -> int:
        return len(self.bounds) - 1

    def rows(self, media_type: str, window: int) -> tuple[np.ndarray, np.ndarray]:
        """(training rows: published before the cut with a class then, in time order;
        evaluation rows: published in the window with a settled class)."""
        image = media_type == "image"
        t = self.image_t if image else self.video_t
        cls, truth = (
            (self.image_class, self.image_truth) if image else (self.video_class, self.video_truth)
        )
        start, stop = self.bounds[window], self.bounds[window + 1]
        train = np.flatnonzero((t < start) & (cls[window] != NO_CLASS))
        train = train[np.argsort(t[train], kind="stable")]
        test = np.flatnonzero((t >= start) & (t < stop) & (truth[window] != NO_CLASS))
        return train, test


def usable(tl: Timeline, model: str, k: int, window: int, cfg: WalkForwardConfig) -> bool:
    """A window is trained when it has items to score and `min_train_per_class` training
    items of every class (of the model's own media type)."""
    media_type = REGISTRY[model].validate_on
    train, test = tl.rows(media_type, window)
    cls = (tl.image_class if media_type == "image" else tl.video_class)[window]
    counts = np.bincount(cls[train], minlength=k)
    return len(test) > 0 and counts.min() >= cfg.min_train_per_class


def _bounds(posts: pa.Table, cfg: WalkForwardConfig) -> dict[str, np.ndarray]:
    """profile -> its window bounds (midnights UTC): the last window ends at the end of the
    day of the profile's last post."""
    con = duckdb.connect()
    try:
        con.register("posts", posts)
        ends = con.sql(
            "SELECT profile_id, (epoch_us(max(published_at)) // $day + 1) * $day "
            "FROM posts GROUP BY profile_id",
            params={"day": US_PER_DAY},
        ).fetchall()
    finally:
        con.close()
    horizon = round(cfg.horizon_days * US_PER_DAY)
    steps = np.arange(cfg.cuts, -1, -1, dtype=np.int64)
    return {profile: end - steps * horizon for profile, end in ends}


def labels_as_of(tables: dict[str, pa.Table], as_of: dict[str, int], config: LabelConfig):
    """The `labels` rows of `config.scheme` computed from the export as it stood at each
    profile's time `as_of` (µs): posts published and follower counts dated before it."""
    con = duckdb.connect()
    try:
        con.register("posts", tables["posts"])
        con.register("followers", tables["followers"])
        cut = pa.table(
            {
                "profile_id": pa.array(list(as_of), pa.string()),
                "t": pa.array(list(as_of.values()), pa.int64()).cast(TS),
            }
        )
        con.register("as_of", cut)
        posts = con.sql(POSTS_AS_OF).to_arrow_table()
        followers = con.sql(FOLLOWERS_AS_OF).to_arrow_table()
    finally:
        con.close()
    return label_tables(
        posts, tables["media"], followers, tables["excluded"], config, only=config.scheme
    )


def build_timelines(
    out: Path, datasets: dict[int, Dataset], labels: LabelConfig, cfg: WalkForwardConfig
) -> tuple[dict[int, dict[str, Timeline]], dict[tuple[int, str], int | None], dict]:
    """Every profile's windows for each k of `datasets` (two labellings of the export per
    window: at its cut, and settled after it), and, from the settled labels, the recent-PoR
    baseline of each scored item and its ranking targets: ((k -> profile -> Timeline),
    (k, media_id) -> class, (k, media_id) -> (rank_score, recent guess))."""
    if labels.scheme == "residual" and labels.keep_extremes is not None:
        raise ValueError(
            "walk_forward: residual with keep_extremes keeps only the items that are extreme "
            "over the whole history, a choice made with later posts; use stratified_kfold"
        )
    tables = {n: store.read_table(out, n) for n in ("posts", "media", "followers", "excluded")}
    bounds = _bounds(tables["posts"], cfg)
    published = _published(tables)
    settle = round(labels.window_days * US_PER_DAY / 2)
    ks = sorted(datasets)
    # classes per k for every dataset row (all profiles at once): [kind][window] arrays
    known = {k: {"class": ([], []), "truth": ([], [])} for k in ks}
    recent: dict[tuple[int, str], int | None] = {}
    targets: dict[tuple[int, str], tuple] = {}
    for window in range(cfg.cuts):
        for kind, shift, bound in (("class", 0, window), ("truth", settle, window + 1)):
            as_of = {profile: int(b[bound]) + shift for profile, b in bounds.items()}
            current = labels_as_of(tables, as_of, labels)
            mine = current.filter(pc.equal(current["scheme"], labels.scheme))
            classes = dict(
                zip(
                    zip(mine["k"].to_pylist(), mine["media_id"].to_pylist(), strict=True),
                    mine["class"].to_pylist(),
                    strict=True,
                )
            )
            for k in ks:
                for side, ids in enumerate((datasets[k].image_ids, datasets[k].video_ids)):
                    row = [classes.get((k, m)) for m in ids]
                    known[k][kind][side].append(
                        np.array([NO_CLASS if c is None else c for c in row], np.int64)
                    )
            if kind == "truth":  # the window's items, judged like the models: settled labels
                inside = {
                    m
                    for m, profile in zip(
                        mine["media_id"].to_pylist(), mine["profile_id"].to_pylist(), strict=True
                    )
                    if bounds[profile][window] <= published[m] < bounds[profile][window + 1]
                }
                baseline = recent_classes(mine, labels.scheme)
                recent |= {key: c for key, c in baseline.items() if key[1] in inside}
                ranked = ranking_targets(mine, labels.scheme)
                targets |= {key: v for key, v in ranked.items() if key[1] in inside}
    timelines = {}
    for k in ks:
        ds = datasets[k]
        arrays = {
            (kind, side): np.stack(known[k][kind][side])
            for kind in ("class", "truth")
            for side in (0, 1)
        }
        image_t = np.array([published[m] for m in ds.image_ids], np.int64)
        video_t = np.array([published[m] for m in ds.video_ids], np.int64)
        timelines[k] = {}
        for profile in ds.profiles():
            img, vid = (np.asarray(r, np.int64) for r in ds._rows[profile])
            timelines[k][profile] = Timeline(
                bounds[profile],
                image_t[img],
                video_t[vid],
                arrays["class", 0][:, img],
                arrays["class", 1][:, vid],
                arrays["truth", 0][:, img],
                arrays["truth", 1][:, vid],
            )
    return timelines, recent, targets


def _published(tables: dict[str, pa.Table]) -> dict[str, int]:
    """media_id -> its post's publication time (µs)."""
    con = duckdb.connect()
    try:
        con.register("posts", tables["posts"])
        con.register("media", tables["media"])
        rows = con.sql(
            "SELECT m.media_id, epoch_us(p.published_at) FROM media m JOIN posts p USING (post_id)"
        ).fetchall()
    finally:
        con.close()
    return dict(rows)


def run_windows(
    model: str, k: int, seed: int, own: Dataset, tl: Timeline, cfg: GridConfig, device: str
) -> tuple[list[dict], list[pa.Table]]:
    """Train and score every usable window of one profile (see the module docstring):
    (one trials entry per window, the windows' predictions)."""
    entries, tables = [], []
    for window in range(tl.windows):
        if usable(tl, model, k, window, cfg.walk_forward):
            entry, table = _window(model, k, seed, own, tl, window, cfg, device)
            entries.append(entry)
            tables.append(table)
    return entries, tables


def _window(
    model: str, k: int, seed: int, own: Dataset, tl: Timeline, window: int, cfg: GridConfig, device
) -> tuple[dict, pa.Table]:
    spec = REGISTRY[model]
    media_type = spec.validate_on
    other = "video" if media_type == "image" else "image"
    ids = np.asarray(own.image_ids if media_type == "image" else own.video_ids, dtype=object)
    other_ids = np.asarray(own.image_ids if other == "image" else own.video_ids, dtype=object)
    train, test = tl.rows(media_type, window)
    extra = tuple(other_ids[tl.rows(other, window)[0]]) if spec.train_extra != "none" else ()
    at_cut = replace(own, image_y=tl.image_class[window], video_y=tl.video_class[window])
    settled = replace(own, image_y=tl.image_truth[window], video_y=tl.video_truth[window])
    start = time.perf_counter()
    # the epoch count: validated on the latest training items, never on the window
    n_inner = max(1, round(cfg.walk_forward.inner_val_fraction * len(train)))
    inner = Fold(window, tuple(ids[train[:-n_inner]]), tuple(ids[train[-n_inner:]]), extra)
    picked = fit_fold(model, k, fold_data(at_cut, model, inner), cfg.train, seed, device)
    full = fold_data(at_cut, model, Fold(window, tuple(ids[train]), (), extra))
    epochs = cfg.train.model_copy(update={"epochs": picked.best_epoch})
    net = fit_all(model, k, full.x_train, full.y_train, epochs, seed, full.train_views, device)
    scored = fold_data(settled, model, Fold(window, (), tuple(ids[test])))
    with torch.inference_mode():
        x = torch.as_tensor(scored.x_val, dtype=torch.float32)
        proba = torch.softmax(net(x), dim=1).numpy().astype(np.float32)
    pred = proba.argmax(axis=1)
    cut_at, window_end = int(tl.bounds[window]), int(tl.bounds[window + 1])
    entry = {
        "fold": window,
        "cut_at": cut_at,
        "window_end": window_end,
        "best_epoch": picked.best_epoch,
        "val_accuracy": float((pred == scored.y_val).mean()),
        "n_train": len(train),
        "n_extra": len(extra),
        "n_val": len(test),
        "train_s": time.perf_counter() - start,
    }
    table = pa.table(
        {
            "media_id": pa.array(list(ids[test]), pa.string()),
            "label": pa.array(scored.y_val, pa.int32()),
            "pred": pa.array(pred, pa.int32()),
            "proba": pa.array(list(proba), pa.list_(pa.float32())),
            "fold": pa.array([window] * len(test), pa.int32()),
            "cut_at": pa.array([cut_at] * len(test), pa.int64()).cast(TS),
        }
    )
    return entry, table
