"""Training data: the labelled, embedded, de-duplicated media of OUT as arrays.

SQL in `schemas/sql/training_images.sql` and `training_videos.sql`. Excluded media were
never embedded, quarantined ones have no embedding, and near-duplicates not kept by
`popray dedup` are left out here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from popray import store
from popray.labels import sql_text


@dataclass
class Dataset:
    image_ids: list[str]
    image_sha256: list[str]
    image_views: np.ndarray  # (n, 1 + views, width), view 0 = the image itself
    image_y: np.ndarray
    video_ids: list[str]
    video_sha256: list[str]
    video_frames: np.ndarray  # (m, 15, width)
    video_pooled: np.ndarray  # (m, width)
    video_y: np.ndarray


def _stack(column, dims: int) -> np.ndarray:
    """A fixed-size list column as a float32 array with `dims` axes."""
    values = column.to_pylist()
    if not values:
        return np.zeros((0,) * dims, np.float32)
    return np.asarray(values, dtype=np.float32)


def load_dataset(
    out: Path, backbone: str, k: int, labels: Literal["rolling", "global"] = "rolling"
) -> Dataset:
    """Arrays for training on `out` with the embeddings of `backbone` and k classes."""
    for needed, stage in (("labels", "label"), ("duplicates", "dedup")):
        if not store.has_table(out, needed):
            raise FileNotFoundError(f"{out}: table {needed!r} missing; run `popray {stage}`")
    params = {"k": k, "labels": labels, "backbone": backbone}
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
    )
