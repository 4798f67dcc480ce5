"""Training data: the labelled, embedded, de-duplicated media of OUT as arrays.

SQL in `schemas/sql/training_images.sql` and `training_videos.sql`. Excluded media were
never embedded, quarantined ones have no embedding, and near-duplicates not kept by
`popray dedup` are left out here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from popray import store
from popray.config import Scheme
from popray.labels import sql_text

ONE_PROFILE = "profile"  # the profile of items built without one (synthetic test data)


@dataclass
class Dataset:
    """One k's training items of every profile; `for_profile` cuts out one profile's."""

    image_ids: list[str]
    image_sha256: list[str]
    image_views: np.ndarray  # (n, 1 + views, width), view 0 = the image itself
    image_y: np.ndarray
    video_ids: list[str]
    video_sha256: list[str]
    video_frames: np.ndarray  # (m, 15, width)
    video_pooled: np.ndarray  # (m, width)
    video_y: np.ndarray
    scheme: str = "por_rolling"  # the label scheme the classes come from
    context: bool = False  # CONTEXT_FEATURES appended to every embedding vector
    image_profile: list[str] = field(default_factory=list)  # empty: all one profile
    video_profile: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.image_profile and not self.video_profile:
            self.image_profile = [ONE_PROFILE] * len(self.image_ids)
            self.video_profile = [ONE_PROFILE] * len(self.video_ids)

    @property
    def features(self) -> str:
        """What the models see, as the `features` column of the grid's tables says it."""
        return "embedding+context" if self.context else "embedding"

    @cached_property
    def _rows(self) -> dict[str, tuple[list[int], list[int]]]:
        """profile -> (its image rows, its video rows): one pass, then reused (a grid
        cuts out each profile many times)."""
        rows: dict[str, tuple[list[int], list[int]]] = {}
        for side, owners in enumerate((self.image_profile, self.video_profile)):
            for i, profile in enumerate(owners):
                rows.setdefault(profile, ([], []))[side].append(i)
        return rows

    def profiles(self) -> list[str]:
        return sorted(self._rows)

    def rows_of(self, profile: str) -> tuple[list[int], list[int]]:
        """The row numbers of one profile's images and videos (no copy of any array)."""
        return self._rows.get(profile, ([], []))

    def for_profile(self, profile: str) -> Dataset:
        """The items of one profile (folds, models and metrics are per profile)."""
        if self.profiles() == [profile]:
            return self
        return self.for_profiles([profile])

    def for_profiles(self, profiles: list[str]) -> Dataset:
        """The items of several profiles (the cross-profile model trains on them)."""
        rows = [self._rows.get(p, ([], [])) for p in profiles]
        img, vid = (np.asarray(sorted(i for r in rows for i in r[s]), np.int64) for s in (0, 1))
        return Dataset(
            image_ids=[self.image_ids[i] for i in img],
            image_sha256=[self.image_sha256[i] for i in img],
            image_views=self.image_views[img] if len(self.image_ids) else self.image_views,
            image_y=self.image_y[img] if len(self.image_ids) else self.image_y,
            video_ids=[self.video_ids[i] for i in vid],
            video_sha256=[self.video_sha256[i] for i in vid],
            video_frames=self.video_frames[vid] if len(self.video_ids) else self.video_frames,
            video_pooled=self.video_pooled[vid] if len(self.video_ids) else self.video_pooled,
            video_y=self.video_y[vid] if len(self.video_ids) else self.video_y,
            scheme=self.scheme,
            context=self.context,
            image_profile=[self.image_profile[i] for i in img],
            video_profile=[self.video_profile[i] for i in vid],
        )


CONTEXT_FEATURES = (
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
    "post_image",
    "post_video",
    "post_carousel",
    "carousel_size",
    "caption_length",
    "hashtags",
    "video_duration",
    "por_trend",
)


def _context(ids: list[str], features: dict[str, list[float]]) -> np.ndarray:
    """(n, len(CONTEXT_FEATURES)) context of the items `ids`, in order."""
    return np.asarray([features[m] for m in ids], np.float32).reshape(len(ids), -1)


def _append(x: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """Each vector of x (n, ..., width) gets its item's context appended: the same
    context for every view of an image and every frame of a video."""
    if not len(x):
        return np.zeros((*x.shape[:-1], x.shape[-1] + len(CONTEXT_FEATURES)), np.float32)
    ctx = ctx.reshape(len(ctx), *(1,) * (x.ndim - 2), ctx.shape[-1])
    return np.concatenate([x, np.broadcast_to(ctx, (*x.shape[:-1], ctx.shape[-1]))], axis=-1)


def _stack(column, dims: int) -> np.ndarray:
    """A fixed-size list column as a float32 array with `dims` axes."""
    values = column.to_pylist()
    if not values:
        return np.zeros((0,) * dims, np.float32)
    return np.asarray(values, dtype=np.float32)


def load_dataset(
    out: Path, backbone: str, k: int, scheme: Scheme = "por_rolling", context: bool = False
) -> Dataset:
    """Arrays for training on `out` with the embeddings of `backbone` and the k classes
    of label scheme `scheme` (items the scheme gives no class are left out); `context`:
    each vector gets the item's context features appended (schemas/sql/context_features.sql)."""
    for needed, stage in (("labels", "label"), ("duplicates", "dedup")):
        if not store.has_table(out, needed):
            raise FileNotFoundError(f"{out}: table {needed!r} missing; run `popray {stage}`")
    params = {"k": k, "scheme": scheme, "backbone": backbone}
    con = store.connect(out)
    try:
        img = con.sql(sql_text("training_images"), params=params).to_arrow_table()
        vid = con.sql(sql_text("training_videos"), params=params).to_arrow_table()
        features = {}
        if context:
            rows = con.sql(sql_text("context_features"), params={"backbone": backbone})
            features = dict(rows.fetchall())
    finally:
        con.close()
    views, frames = _stack(img["views"], 3), _stack(vid["frames"], 3)
    pooled = _stack(vid["pooled"], 2)
    if context:
        image_ctx = _context(img["media_id"].to_pylist(), features)
        video_ctx = _context(vid["media_id"].to_pylist(), features)
        views = _append(views, image_ctx)
        frames = _append(frames, video_ctx)
        pooled = _append(pooled, video_ctx)
    return Dataset(
        image_ids=img["media_id"].to_pylist(),
        image_sha256=img["sha256"].to_pylist(),
        image_views=views,
        image_y=img["y"].to_numpy().astype(np.int64),
        video_ids=vid["media_id"].to_pylist(),
        video_sha256=vid["sha256"].to_pylist(),
        video_frames=frames,
        video_pooled=pooled,
        video_y=vid["y"].to_numpy().astype(np.int64),
        scheme=scheme,
        context=context,
        image_profile=img["profile_id"].to_pylist(),
        video_profile=vid["profile_id"].to_pylist(),
    )
