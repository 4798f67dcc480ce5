"""Splitting the walk-forward's work by profile: groups of whole profiles of about
`POSTS_PER_TASK` posts, each group's slice of the export tables and of the training
items (popray/training/timelines.py labels each slice in a Ray task).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from popray.training.dataset import TrainingSet

TABLES = ("posts", "media", "followers", "excluded")


@dataclass(frozen=True)
class Owned:
    """One media type's training items of a group of profiles: ids and owners, in the
    TrainingSet's order (no arrays)."""

    ids: list[str]
    profile: list[str]


@dataclass(frozen=True)
class GroupItems:
    """One k's training items of a group of profiles, as in its TrainingSet."""

    images: Owned
    videos: Owned

    def rows(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """profile -> (its image rows, its video rows), the profiles sorted."""
        rows: dict[str, tuple[list[int], list[int]]] = {}
        for side, items in enumerate((self.images, self.videos)):
            for i, profile in enumerate(items.profile):
                rows.setdefault(profile, ([], []))[side].append(i)
        return {p: tuple(np.asarray(r, np.int64) for r in rows[p]) for p in sorted(rows)}


def profile_groups(posts: pa.Table, posts_per_task: int) -> list[list[str]]:
    """The profiles of `posts`, sorted, cut into runs of at least `posts_per_task` posts
    (the last run: the rest)."""
    counts = posts.group_by("profile_id").aggregate([("profile_id", "count")])
    counts = counts.sort_by("profile_id")
    groups: list[list[str]] = [[]]
    size = 0
    for profile, n in zip(
        counts["profile_id"].to_pylist(), counts["profile_id_count"].to_pylist(), strict=True
    ):
        if size >= posts_per_task:
            groups.append([])
            size = 0
        groups[-1].append(profile)
        size += n
    return [g for g in groups if g]


def _group_of(values: pa.Array | pa.ChunkedArray, groups: list[list[str]]) -> np.ndarray:
    """The group of each profile in `values` (-1: in no group)."""
    profiles = pa.array([p for g in groups for p in g], pa.string())
    first = np.cumsum([0, *(len(g) for g in groups)])[:-1]
    at = pc.fill_null(pc.index_in(values, value_set=profiles), -1).to_numpy()
    return np.where(at >= 0, np.searchsorted(first, at, side="right") - 1, -1)


def _by_group(group: np.ndarray, n: int) -> list[np.ndarray]:
    """The rows of each group 0..n-1, ascending."""
    keep = np.flatnonzero(group >= 0)
    order = keep[np.argsort(group[keep], kind="stable")]
    bounds = np.cumsum(np.bincount(group[keep], minlength=n))[:-1]
    return np.split(order, bounds)


def split_tables(tables: dict[str, pa.Table], groups: list[list[str]]) -> list[dict]:
    """Each group's slice of the export tables (a profile's rows stay whole: excluded
    media go with their media's profile)."""
    media_group = _group_of(tables["media"]["profile_id"], groups)
    at = pc.fill_null(
        pc.index_in(tables["excluded"]["media_id"], value_set=tables["media"]["media_id"]), -1
    ).to_numpy()
    excluded_group = np.full(len(at), -1, np.int64)
    excluded_group[at >= 0] = media_group[at[at >= 0]]
    owner = {
        "posts": _group_of(tables["posts"]["profile_id"], groups),
        "media": media_group,
        "followers": _group_of(tables["followers"]["profile_id"], groups),
        "excluded": excluded_group,
    }
    rows = {name: _by_group(owner[name], len(groups)) for name in TABLES}
    return [{name: tables[name].take(rows[name][g]) for name in TABLES} for g in range(len(groups))]


def split_items(datasets: dict[int, TrainingSet], groups: list[list[str]]) -> list[dict]:
    """Each group's training items, per k."""
    parts: list[dict[int, GroupItems]] = [{} for _ in groups]
    for k, ds in datasets.items():
        sides = []
        for items in (ds.images, ds.videos):
            rows = _by_group(_group_of(pa.array(items.profile, pa.string()), groups), len(groups))
            ids, owners = np.asarray(items.ids, object), np.asarray(items.profile, object)
            sides.append([Owned(ids[r].tolist(), owners[r].tolist()) for r in rows])
        for g, (images, videos) in enumerate(zip(*sides, strict=True)):
            parts[g][k] = GroupItems(images, videos)
    return parts
