"""Loading the training data: the labelled, embedded, de-duplicated media of OUT, per k a
`TrainingSet` (popray/training/dataset.py).

SQL in `popray/io/sql/training_images.sql` and `training_videos.sql`: they pick the items
and say where their embedding rows are stored (keys only); the embeddings are read from
the Parquet files a few row groups at a time (`embedding_read`; by Ray tasks when the
arrays go to the object store, `object_rows`), so no query and no driver holds them
all. `load_keys` runs the queries alone; its `datasets(profiles=...)` then reads the rows
of just the profiles a run trains (the train stage reuses the others' trials). Excluded
media were never embedded, quarantined ones have no embedding, and near-duplicates not
kept by `popray dedup` are left out here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from popray.config import Scheme
from popray.io import store
from popray.io.store import sql_text
from popray.training.dataset import Items, TrainingSet
from popray.training.embedding_read import PartFiles, read_arrays
from popray.training.object_rows import Rows

TRAINING_NEEDS = {"labels": "label", "duplicates": "dedup"}  # table -> the stage writing it


@dataclass
class _Side:
    """One media type's training items, in training order (profile, media_id), as the
    keys query gave them, and where each item's embedding rows are stored."""

    ids: list[str]
    sha256: list[str]
    profile: list[str]
    y: np.ndarray
    stored: np.ndarray  # (n, g): positions of its g stored rows over the part files

    def items(
        self, embeddings: np.ndarray | Rows, pooled: np.ndarray | Rows | None = None
    ) -> Items:
        """These items with their embeddings (read by `read_arrays`)."""
        return Items(self.ids, self.sha256, self.y, embeddings, pooled, self.profile)

    @classmethod
    def of(cls, keys: pa.Table, starts: np.ndarray) -> _Side:
        """From the keys query (`files`: the part file of each stored row, `rows`: its row
        in that file; `starts`: the position of each part file's first row)."""
        lengths = pc.list_value_length(keys["rows"]).to_numpy()
        if len(set(lengths.tolist())) > 1:
            raise ValueError(f"rows of unequal length {sorted(set(lengths.tolist()))}")
        group = int(lengths[0]) if len(lengths) else 1
        files = pc.list_flatten(keys["files"]).to_numpy().astype(np.int64)
        rows = pc.list_flatten(keys["rows"]).to_numpy().astype(np.int64)
        return cls(
            ids=keys["media_id"].to_pylist(),
            sha256=keys["sha256"].to_pylist(),
            profile=keys["profile_id"].to_pylist(),
            y=keys["y"].to_numpy().astype(np.int64),
            stored=(starts[files] + rows).reshape(len(keys), group),
        )


def load_dataset(
    out: Path,
    backbone: str,
    k: int,
    scheme: Scheme = "por_rolling",
    context: bool = False,
    remote: bool = False,
) -> TrainingSet:
    """Arrays for training on `out` with the embeddings of `backbone` and the k classes
    of label scheme `scheme` (items the scheme gives no class are left out); `context`:
    each vector gets the item's context features appended (popray/io/sql/context_features.sql).

    DuckDB picks the items and says where their embeddings are stored (keys only); the
    embeddings are then read from the Parquet files a few row groups at a time, so
    memory does not grow with the data. `remote`: Ray tasks on this node read them and
    keep the arrays in the object store (`Rows`), so the driver never holds the
    embeddings, only ids and classes; trials and tasks gather the rows of the profiles
    they train."""
    return load_datasets(out, backbone, [k], scheme, context, remote)[k]


def load_datasets(
    out: Path,
    backbone: str,
    ks: list[int],
    scheme: Scheme = "por_rolling",
    context: bool = False,
    remote: bool = False,
) -> dict[int, TrainingSet]:
    """`load_dataset` for each k of `ks`, reading each embedding row once for all of them
    (the ks classify the same items: reading per k read them len(ks) times)."""
    return load_keys(out, backbone, ks, scheme, context).datasets(remote)


@dataclass
class TrainingKeys:
    """Each k's training items (ids, classes, profiles) and where their embedding rows are
    stored, before any embedding is read: `datasets` reads the rows, of every profile or
    of the profiles a run trains (a nightly run reuses the rest and reads only those)."""

    ks: list[int]
    scheme: str
    context: bool
    features: dict[str, list[float]] | None
    images: list[_Side]  # one per k
    image_files: PartFiles
    videos: list[_Side]
    video_files: PartFiles

    def datasets(
        self, remote: bool = False, profiles: Collection[str] | None = None
    ) -> dict[int, TrainingSet]:
        """One TrainingSet per k, every item in it; the embedding rows read once for all ks.
        `profiles` (with `remote`): read only those profiles' rows; the others' stay
        unread (`TrainingSet.complete` is False, and gathering them raises `NotRead`)."""
        only = None if profiles is None else set(profiles)
        views = read_arrays(
            [s.stored for s in self.images],
            self.image_files,
            {"embedding": 2},
            self.features,
            remote,
            grouped=True,
            masks=None if only is None else [_mask(s, only) for s in self.images],
        )
        frames = read_arrays(
            [s.stored for s in self.videos],
            self.video_files,
            {"frames": 3, "pooled": 2},
            self.features,
            remote,
            masks=None if only is None else [_mask(s, only) for s in self.videos],
        )
        zipped = zip(self.ks, self.images, views, self.videos, frames, strict=True)
        return {
            k: TrainingSet(
                Items(image.ids, image.sha256, image.y, view["embedding"], None, image.profile),
                Items(
                    video.ids,
                    video.sha256,
                    video.y,
                    frame["frames"],
                    frame["pooled"],
                    video.profile,
                ),
                scheme=self.scheme,
                context=self.context,
            )
            for k, image, view, video, frame in zipped
        }


def _mask(side: _Side, profiles: set[str]) -> np.ndarray:
    """Which of `side`'s items belong to `profiles`."""
    return np.fromiter((p in profiles for p in side.profile), bool, len(side.profile))


def load_keys(
    out: Path,
    backbone: str,
    ks: list[int],
    scheme: Scheme = "por_rolling",
    context: bool = False,
) -> TrainingKeys:
    """The training items of each k of `ks` (see `load_dataset`) and where their
    embedding rows are stored, from the training queries; no embedding is read yet."""
    store.require(out, TRAINING_NEEDS)
    ks = list(dict.fromkeys(ks))
    sides: dict[str, tuple[list[_Side], PartFiles]] = {}
    con = store.connect(out)
    try:
        features = None
        if context:
            rows = con.sql(sql_text("context_features"), params={"backbone": backbone})
            features = dict(rows.fetchall())
        for kind, table in (("image", "embeddings_image"), ("video", "embeddings_video")):
            files = PartFiles.of(out, table)
            per_k = []
            for k in ks:
                params = {"k": k, "scheme": scheme, "backbone": backbone}
                params["files"] = [str(p) for p in files.paths]
                if files.paths:
                    keys = con.sql(sql_text(f"training_{kind}s"), params=params).to_arrow_table()
                else:
                    keys = _NO_KEYS
                per_k.append(_Side.of(keys, files.starts))
            sides[kind] = (per_k, files)
    finally:
        con.close()
    return TrainingKeys(ks, scheme, context, features, *sides["image"], *sides["video"])


_NO_KEYS = pa.table(
    {
        "profile_id": pa.array([], pa.string()),
        "media_id": pa.array([], pa.string()),
        "sha256": pa.array([], pa.string()),
        "y": pa.array([], pa.int32()),
        "files": pa.array([], pa.list_(pa.int64())),
        "rows": pa.array([], pa.list_(pa.int64())),
    }
)
