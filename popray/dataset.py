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
import pyarrow as pa
import pyarrow.compute as pc

from popray import store
from popray.config import Scheme
from popray.labels import sql_text

ONE_PROFILE = "profile"  # the profile of items built without one (synthetic test data)
BATCH_ROWS = 512  # rows per object-store chunk while loading (<= ~40 MB of video frames)


class Rows:
    """A float32 array of n rows kept in Ray's object store, one chunk per record batch
    of the query: the driver holds only references and offsets. Indexing with row
    numbers gathers just those rows, where it runs (a trial, a task); `select` keeps a
    subset without fetching anything."""

    def __init__(
        self,
        refs: list,
        sizes: list[int],
        row_shape: tuple[int, ...],
        index: np.ndarray | None = None,
    ) -> None:
        self.refs, self.row_shape = refs, tuple(row_shape)
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.index = index  # the chunks' rows this array is made of (None: all of them)
        n = int(self.offsets[-1]) if index is None else len(index)
        self.shape = (n, *self.row_shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def _physical(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        return rows if self.index is None else self.index[rows]

    def select(self, rows: np.ndarray) -> Rows:
        """Rows `rows` of this array, still in the object store."""
        sizes = np.diff(self.offsets).tolist()
        return Rows(self.refs, sizes, self.row_shape, self._physical(rows))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (ascending row numbers), as one local array."""
        import ray

        physical = self._physical(rows)
        chunk = np.searchsorted(self.offsets, physical, side="right") - 1
        parts = []
        for c in np.unique(chunk):
            block = ray.get(self.refs[c])
            parts.append(block[physical[chunk == c] - self.offsets[c]])
        if not parts:
            return np.zeros((0, *self.row_shape), np.float32)
        return np.concatenate(parts)

    def array(self) -> np.ndarray:
        return self.take(np.arange(len(self)))

    def __getitem__(self, key):
        if isinstance(key, np.ndarray) and key.ndim == 1 and key.dtype.kind in "iu":
            return self.take(key)
        return self.array()[key]


def _take(x: np.ndarray | Rows, rows: np.ndarray, remote: bool = False) -> np.ndarray | Rows:
    if isinstance(x, Rows):
        return x.select(rows) if remote else x.take(rows)
    return x[rows]


@dataclass
class Dataset:
    """One k's training items of every profile; `for_profile` cuts out one profile's."""

    image_ids: list[str]
    image_sha256: list[str]
    image_views: np.ndarray | Rows  # (n, 1 + views, width), view 0 = the image itself
    image_y: np.ndarray
    video_ids: list[str]
    video_sha256: list[str]
    video_frames: np.ndarray | Rows  # (m, 15, width)
    video_pooled: np.ndarray | Rows  # (m, width)
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

    def for_profile(self, profile: str, remote: bool = False) -> Dataset:
        """The items of one profile (folds, models and metrics are per profile);
        `remote`: see `for_profiles`."""
        if self.profiles() == [profile] and (remote or not self.remote):
            return self
        return self.for_profiles([profile], remote)

    @property
    def remote(self) -> bool:
        """Its arrays are in the object store (`load_dataset(remote=True)`)."""
        return any(isinstance(x, Rows) for x in self._arrays())

    def _arrays(self) -> tuple:
        return (self.image_views, self.video_frames, self.video_pooled)

    def local(self) -> Dataset:
        """The same items with every array in this process (itself if already so)."""
        return self.for_profiles(self.profiles()) if self.remote else self

    def for_profiles(self, profiles: list[str], remote: bool = False) -> Dataset:
        """The items of several profiles (the cross-profile model trains on them);
        `remote`: arrays in the object store stay there (see `Rows.select`)."""
        rows = [self._rows.get(p, ([], [])) for p in profiles]
        img, vid = (np.asarray(sorted(i for r in rows for i in r[s]), np.int64) for s in (0, 1))
        return Dataset(
            image_ids=[self.image_ids[i] for i in img],
            image_sha256=[self.image_sha256[i] for i in img],
            image_views=_take(self.image_views, img, remote),
            image_y=self.image_y[img] if len(self.image_ids) else self.image_y,
            video_ids=[self.video_ids[i] for i in vid],
            video_sha256=[self.video_sha256[i] for i in vid],
            video_frames=_take(self.video_frames, vid, remote),
            video_pooled=_take(self.video_pooled, vid, remote),
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


def _stack(column: pa.ChunkedArray | pa.Array, dims: int) -> np.ndarray:
    """A fixed-size list column as a float32 array with `dims` axes, without a Python
    object per value (the values buffer is viewed, then copied once as float32)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not len(array):
        return np.zeros((0,) * dims, np.float32)
    shape = [len(array)]
    while pa.types.is_fixed_size_list(array.type) or pa.types.is_list(array.type):
        if pa.types.is_list(array.type):  # list(...) of the views: all of one length here
            sizes = pc.list_value_length(array).to_numpy()
            if len(set(sizes.tolist())) != 1:
                raise ValueError(f"rows of unequal length {sorted(set(sizes.tolist()))}")
            shape.append(int(sizes[0]))
        else:
            shape.append(array.type.list_size)
        array = array.flatten()
    return np.asarray(array.to_numpy(zero_copy_only=False), np.float32).reshape(shape)


@dataclass
class _Side:
    """What one media type's query gave, batch by batch (see `load_dataset`)."""

    ids: list[str] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)
    arrays: dict[str, list] = field(default_factory=dict)  # column -> arrays or refs

    def add(self, batch: pa.RecordBatch, arrays: dict[str, np.ndarray], remote: bool) -> None:
        import ray

        self.ids += batch["media_id"].to_pylist()
        self.sha256 += batch["sha256"].to_pylist()
        self.y.append(batch["y"].to_numpy().astype(np.int64))
        self.profile += batch["profile_id"].to_pylist()
        for name, x in arrays.items():
            self.arrays.setdefault(name, []).append(
                (ray.put(x), len(x), x.shape[1:]) if remote else x
            )

    def column(self, name: str, dims: int, context: bool) -> np.ndarray | Rows:
        parts = self.arrays.get(name, [])
        if not parts:
            empty = np.zeros((0,) * dims, np.float32)
            return _append(empty, np.zeros((0, len(CONTEXT_FEATURES)))) if context else empty
        if isinstance(parts[0], tuple):  # object-store chunks
            return Rows([r for r, _, _ in parts], [n for _, n, _ in parts], parts[0][2])
        return np.concatenate(parts)

    def labels(self) -> np.ndarray:
        return np.concatenate(self.y) if self.y else np.zeros(0, np.int64)


def load_dataset(
    out: Path,
    backbone: str,
    k: int,
    scheme: Scheme = "por_rolling",
    context: bool = False,
    remote: bool = False,
) -> Dataset:
    """Arrays for training on `out` with the embeddings of `backbone` and the k classes
    of label scheme `scheme` (items the scheme gives no class are left out); `context`:
    each vector gets the item's context features appended (schemas/sql/context_features.sql).

    The queries are read a record batch at a time. `remote`: each batch's arrays go to
    Ray's object store as they come (`Rows`), so the driver never holds the embeddings,
    only ids and classes; tasks gather the rows of the profiles they train."""
    for needed, stage in (("labels", "label"), ("duplicates", "dedup")):
        if not store.has_table(out, needed):
            raise FileNotFoundError(f"{out}: table {needed!r} missing; run `popray {stage}`")
    params = {"k": k, "scheme": scheme, "backbone": backbone}
    image, video = _Side(), _Side()
    con = store.connect(out)
    try:
        features = {}
        if context:
            rows = con.sql(sql_text("context_features"), params={"backbone": backbone})
            features = dict(rows.fetchall())
        for side, query in ((image, "training_images"), (video, "training_videos")):
            reader = con.sql(sql_text(query), params=params).to_arrow_reader(BATCH_ROWS)
            for batch in reader:
                if not batch.num_rows:
                    continue
                if side is image:
                    arrays = {"views": _stack(batch["views"], 3)}
                else:
                    arrays = {
                        "frames": _stack(batch["frames"], 3),
                        "pooled": _stack(batch["pooled"], 2),
                    }
                if context:
                    ctx = _context(batch["media_id"].to_pylist(), features)
                    arrays = {name: _append(x, ctx) for name, x in arrays.items()}
                side.add(batch, arrays, remote)
    finally:
        con.close()
    return Dataset(
        image_ids=image.ids,
        image_sha256=image.sha256,
        image_views=image.column("views", 3, context),
        image_y=image.labels(),
        video_ids=video.ids,
        video_sha256=video.sha256,
        video_frames=video.column("frames", 3, context),
        video_pooled=video.column("pooled", 2, context),
        video_y=video.labels(),
        scheme=scheme,
        context=context,
        image_profile=image.profile,
        video_profile=video.profile,
    )
