"""Walk-forward timelines: every profile's classes as known at each cut and as settled
after each window, computed on the cluster.

`popray train` with the walk_forward protocol calls `build_timelines`; see
popray.training.walkforward for what a cut's models may know. Each window needs the export
labelled twice (as it stood at the window's cut, and half a label window after its end):
2 x `cuts` labellings of the whole export. Every label scheme is computed per profile
(popray/io/sql/labels_*.sql: PARTITION BY / GROUP BY profile_id), so the profiles are
split into groups of about `POSTS_PER_TASK` posts, and a Ray task labels each group's
slice of the export at every cut; the driver only slices the tables and merges the
groups' small results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from popray.config import LabelConfig, WalkForwardConfig
from popray.errors import ConfigError
from popray.io import store
from popray.io.tables import TS, US_PER_DAY
from popray.labels import label_tables
from popray.training.baselines import ranking_targets, recent_classes
from popray.training.dataset import TrainingSet
from popray.training.timeline_groups import (
    TABLES,
    GroupItems,
    profile_groups,
    split_items,
    split_tables,
)

NO_CLASS = -1
# posts per labelling task: 12 labellings of 20,000 posts take a few seconds of a core
POSTS_PER_TASK = 20_000


@dataclass
class Timeline:
    """One profile's windows for one (scheme, k): window i is [bounds[i], bounds[i + 1])
    (microseconds since the epoch); `*_class[i]` is each item's class as known at the
    cut bounds[i], `*_truth[i]` as settled after window i (NO_CLASS: none, e.g. not yet
    published); rows as in the profile's TrainingSet."""

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


def _bounds(posts: pa.Table, cfg: WalkForwardConfig) -> dict[str, np.ndarray]:
    """profile -> its window bounds (midnights UTC): the last window ends at the end of the
    day of the profile's last post."""
    ends = store.query_tables("timelines.window_end", {"posts": posts}, day=US_PER_DAY).to_pylist()
    horizon = round(cfg.horizon_days * US_PER_DAY)
    steps = np.arange(cfg.cuts, -1, -1, dtype=np.int64)
    return {r["profile_id"]: r["end_us"] - steps * horizon for r in ends}


def labels_as_of(tables: dict[str, pa.Table], as_of: dict[str, int], config: LabelConfig):
    """The `labels` rows of `config.scheme` computed from the export as it stood at each
    profile's time `as_of` (µs): posts published and follower counts dated before it."""
    cut = pa.table(
        {
            "profile_id": pa.array(list(as_of), pa.string()),
            "t": pa.array(list(as_of.values()), pa.int64()).cast(TS),
        }
    )
    posts = store.query_tables("timelines.posts_as_of", {"posts": tables["posts"], "as_of": cut})
    followers = store.query_tables(
        "timelines.followers_as_of", {"followers": tables["followers"], "as_of": cut}
    )
    return label_tables(
        posts, tables["media"], followers, tables["excluded"], config, only=config.scheme
    )


Timelines = dict[int, dict[str, Timeline]]


@dataclass
class WalkForward:
    """What `build_timelines` finds: each k's profiles' windows (k -> profile ->
    Timeline), and, from the settled labels, the recent-PoR baseline's class of each item
    scored in a window ((k, media_id) -> class) and its ranking targets ((k, media_id) ->
    (rank_score, recent guess))."""

    timelines: Timelines
    recent: dict[tuple[int, str], int | None]
    targets: dict[tuple[int, str], tuple]

    def add(self, part: WalkForward) -> None:
        """Take in another group of profiles' (the profiles stay in the order added)."""
        for k, per in part.timelines.items():
            self.timelines.setdefault(k, {}).update(per)
        self.recent |= part.recent
        self.targets |= part.targets


def build_timelines(
    out: Path,
    datasets: dict[int, TrainingSet],
    labels: LabelConfig,
    cfg: WalkForwardConfig,
    posts_per_task: int = POSTS_PER_TASK,
) -> WalkForward:
    """Every profile's windows for each k of `datasets` (two labellings of the export per
    window: at its cut, and settled after it), and, from the settled labels, the recent-PoR
    baseline of each scored item and its ranking targets (`WalkForward`).

    A Ray task per group of profiles of about `posts_per_task` posts labels its slice of
    the export (see the module docstring); any grouping gives the same result."""
    import ray

    if labels.scheme == "residual" and labels.keep_extremes is not None:
        raise ConfigError(
            "walk_forward: residual with keep_extremes keeps only the items that are extreme "
            "over the whole history, a choice made with later posts; use stratified_kfold"
        )
    tables = {n: store.read_table(out, n) for n in TABLES}
    groups = profile_groups(tables["posts"], posts_per_task)
    task = ray.remote(_group_timelines).options(num_cpus=1)
    parts = zip(split_tables(tables, groups), split_items(datasets, groups), strict=True)
    refs = [task.remote(part, items, labels, cfg) for part, items in parts]
    found = WalkForward({k: {} for k in sorted(datasets)}, {}, {})
    for ref in refs:  # in group order: the profiles stay sorted
        found.add(ray.get(ref))
    return found


def _group_timelines(
    tables: dict[str, pa.Table],
    items: dict[int, GroupItems],
    labels: LabelConfig,
    cfg: WalkForwardConfig,
) -> WalkForward:
    """`build_timelines` for one group of profiles: `tables`, their slice of the export;
    `items`, their training items per k."""
    bounds = _bounds(tables["posts"], cfg)
    published = _published(tables)
    settle = round(labels.window_days * US_PER_DAY / 2)
    ks = sorted(items)
    # classes per k for every item (all the group's profiles at once): [kind][side] lists
    known = {k: {"class": ([], []), "truth": ([], [])} for k in ks}
    recent: dict[tuple[int, str], int | None] = {}
    targets: dict[tuple[int, str], tuple] = {}
    for window in range(cfg.cuts):
        for kind, shift, bound in (("class", 0, window), ("truth", settle, window + 1)):
            as_of = {profile: int(b[bound]) + shift for profile, b in bounds.items()}
            current = labels_as_of(tables, as_of, labels)
            mine = current.filter(pc.equal(current["scheme"], labels.scheme))
            _record(known, kind, mine, items)
            if kind == "truth":  # the window's items, judged like the models: settled labels
                inside = _inside(mine, bounds, published, window)
                baseline = recent_classes(mine, labels.scheme)
                recent |= {key: c for key, c in baseline.items() if key[1] in inside}
                ranked = ranking_targets(mine, labels.scheme)
                targets |= {key: v for key, v in ranked.items() if key[1] in inside}
    timelines: Timelines = {}
    for k in ks:
        arrays = {key: np.stack(known[k][key[0]][key[1]]) for key in _KEYS}
        image_t = np.array([published[m] for m in items[k].images.ids], np.int64)
        video_t = np.array([published[m] for m in items[k].videos.ids], np.int64)
        timelines[k] = {
            profile: Timeline(
                bounds[profile],
                image_t[img],
                video_t[vid],
                arrays["class", 0][:, img],
                arrays["class", 1][:, vid],
                arrays["truth", 0][:, img],
                arrays["truth", 1][:, vid],
            )
            for profile, (img, vid) in items[k].rows().items()
        }
    return WalkForward(timelines, recent, targets)


_KEYS = [(kind, side) for kind in ("class", "truth") for side in (0, 1)]


def _record(known: dict, kind: str, mine: pa.Table, items: dict[int, GroupItems]) -> None:
    """Append each item's class in the labels `mine` (NO_CLASS: none) to `known`."""
    classes = dict(
        zip(
            zip(mine["k"].to_pylist(), mine["media_id"].to_pylist(), strict=True),
            mine["class"].to_pylist(),
            strict=True,
        )
    )
    for k, its in items.items():
        for side, ids in enumerate((its.images.ids, its.videos.ids)):
            row = [classes.get((k, m)) for m in ids]
            known[k][kind][side].append(
                np.array([NO_CLASS if c is None else c for c in row], np.int64)
            )


def _inside(mine: pa.Table, bounds: dict, published: dict, window: int) -> set[str]:
    """The media of `mine` published inside window `window` of their profile."""
    return {
        m
        for m, profile in zip(
            mine["media_id"].to_pylist(), mine["profile_id"].to_pylist(), strict=True
        )
        if bounds[profile][window] <= published[m] < bounds[profile][window + 1]
    }


def _published(tables: dict[str, pa.Table]) -> dict[str, int]:
    """media_id -> its post's publication time (µs)."""
    rows = store.query_tables("timelines.published", {n: tables[n] for n in ("posts", "media")})
    return dict(zip(rows["media_id"].to_pylist(), rows["published_us"].to_pylist(), strict=True))
