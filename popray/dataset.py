"""Training data: the labelled, embedded, de-duplicated media of OUT as arrays.

SQL in `schemas/sql/training_images.sql` and `training_videos.sql`. Excluded media were
never embedded, quarantined ones have no embedding, and near-duplicates not kept by
`popray dedup` are left out here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    image_profile: list[str] = field(default_factory=list)  # empty: all one profile
    video_profile: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.image_profile and not self.video_profile:
            self.image_profile = [ONE_PROFILE] * len(self.image_ids)
            self.video_profile = [ONE_PROFILE] * len(self.video_ids)

    def profiles(self) -> list[str]:
        return sorted(set(self.image_profile) | set(self.video_profile))

    def for_profile(self, profile: str) -> Dataset:
        """The items of one profile (folds, models and metrics are per profile)."""
        img = np.array([p == profile for p in self.image_profile], dtype=bool)
        vid = np.array([p == profile for p in self.video_profile], dtype=bool)

        def pick(values: list, mask: np.ndarray) -> list:
            return [v for v, keep in zip(values, mask, strict=True) if keep]

        return Dataset(
            image_ids=pick(self.image_ids, img),
            image_sha256=pick(self.image_sha256, img),
            image_views=self.image_views[img] if len(img) else self.image_views,
            image_y=self.image_y[img] if len(img) else self.image_y,
            video_ids=pick(self.video_ids, vid),
            video_sha256=pick(self.video_sha256, vid),
            video_frames=self.video_frames[vid] if len(vid) else self.video_frames,
            video_pooled=self.video_pooled[vid] if len(vid) else self.video_pooled,
            video_y=self.video_y[vid] if len(vid) else self.video_y,
            scheme=self.scheme,
            image_profile=[profile] * int(img.sum()),
            video_profile=[profile] * int(vid.sum()),
        )


def _stack(column, dims: int) -> np.ndarray:
    """A fixed-size list column as a float32 array with `dims` axes."""
    values = column.to_pylist()
    if not values:
        return np.zeros((0,) * dims, np.float32)
    return np.asarray(values, dtype=np.float32)


def load_dataset(out: Path, backbone: str, k: int, scheme: Scheme = "por_rolling") -> Dataset:
    """Arrays for training on `out` with the embeddings of `backbone` and the k classes
    of label scheme `scheme` (items the scheme gives no class are left out)."""
    for needed, stage in (("labels", "label"), ("duplicates", "dedup")):
        if not store.has_table(out, needed):
            raise FileNotFoundError(f"{out}: table {needed!r} missing; run `popray {stage}`")
    params = {"k": k, "scheme": scheme, "backbone": backbone}
    con = store.connect(out)
    try:
        img = con.sql(sql_text("training_images"), params=params).to_arrow_table()
        vid = con.sql(sql_text("training_videos"), params=params).to_arrow_table()
    finally:
        con.close()
    return Dataset(
        image_ids=img["media_id"].to_pylist(),
        image_sha256=img["sha256"].to_pylist(),
        image_views=_stack(img["views"], 3),
        image_y=img["y"].to_numpy().astype(np.int64),
        video_ids=vid["media_id"].to_pylist(),
        video_sha256=vid["sha256"].to_pylist(),
        video_frames=_stack(vid["frames"], 3),
        video_pooled=_stack(vid["pooled"], 2),
        video_y=vid["y"].to_numpy().astype(np.int64),
        scheme=scheme,
        image_profile=img["profile_id"].to_pylist(),
        video_profile=vid["profile_id"].to_pylist(),
    )
