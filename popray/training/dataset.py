"""Training data: the labelled, embedded, de-duplicated media of OUT as arrays.

SQL in `schemas/sql/training_images.sql` and `training_videos.sql`: they pick the items
and say where their embedding rows are stored (keys only); the embeddings are read from
the Parquet files a few row groups at a time (by Ray tasks when the arrays go to the
object store), so no query and no driver holds them all. `load_keys` runs the queries
alone; its `datasets(profiles=...)` then reads the rows of just the profiles a run trains
(the train stage reuses the others' trials). Excluded media were never
embedded, quarantined ones have no embedding, and near-duplicates not kept by `popray
dedup` are left out here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from popray.config import Scheme
from popray.errors import MissingError
from popray.io import store
from popray.io.storage import put_file
from popray.io.store import sql_text

ONE_PROFILE = "profile"  # the profile of items built without one (synthetic test data)
BATCH_ROWS = 512  # at least this many stored rows are read per object-store chunk


class Rows:
    """A float32 array kept in Ray's object store as chunks of stored rows (one chunk per
    record batch read): the driver holds only references and offsets. Indexing with row
    numbers gathers just those rows, where it runs (a trial, a task); `select` keeps a
    subset without fetching anything.

    `index` says which stored rows make up the array, in its order: (n,), one stored row
    per row, or (n, g), g stored rows stacked per row (an image's views, stored one per
    row); None: every stored row, as stored. -1: a row that was not read
    (`TrainingKeys.datasets` with `profiles`): gathering it raises `NotRead`."""

    def __init__(
        self,
        refs: list,
        sizes: list[int],
        row_shape: tuple[int, ...],
        index: np.ndarray | None = None,
    ) -> None:
        self.refs, self.row_shape = refs, tuple(row_shape)  # the shape of one stored row
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.index = index
        n = int(self.offsets[-1]) if index is None else len(index)
        group = () if index is None else index.shape[1:]
        self.shape = (n, *group, *self.row_shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def _physical(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        return rows if self.index is None else self.index[rows]

    @property
    def complete(self) -> bool:
        """Every row of it was read."""
        return self.index is None or bool((self.index >= 0).all())

    def select(self, rows: np.ndarray) -> Rows:
        """Rows `rows` of this array, still in the object store."""
        sizes = np.diff(self.offsets).tolist()
        return Rows(self.refs, sizes, self.row_shape, self._physical(rows))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows, in the given order, as one local array (each chunk they touch
        is fetched once)."""
        import ray

        physical = self._physical(rows)
        stored = physical.reshape(-1)
        if len(stored) and stored.min() < 0:
            raise NotRead(
                f"{int((stored < 0).sum())} embedding rows asked for were not read: read "
                "their profiles first (TrainingKeys.datasets(profiles=...))"
            )
        out = np.empty((len(stored), *self.row_shape), np.float32)
        chunk = np.searchsorted(self.offsets, stored, side="right") - 1
        order = np.argsort(chunk, kind="stable")
        bounds = np.flatnonzero(np.diff(chunk[order])) + 1
        for at in np.split(order, bounds) if len(order) else []:
            c = chunk[at[0]]
            out[at] = ray.get(self.refs[c])[stored[at] - self.offsets[c]]
        return out.reshape(*physical.shape, *self.row_shape)

    def array(self) -> np.ndarray:
        return self.take(np.arange(len(self)))

    def __getitem__(self, key):
        if isinstance(key, np.ndarray) and key.ndim == 1 and key.dtype.kind in "iu":
            return self.take(key)
        return self.array()[key]


class NotRead(RuntimeError):
    """Embedding rows used that the run did not read (a bug in the caller: the profiles it
    trains must be read first)."""


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

    @property
    def complete(self) -> bool:
        """Every item's embeddings were read (see `TrainingKeys.datasets`)."""
        return all(x.complete for x in self._arrays() if isinstance(x, Rows))

    def read_ids(self) -> list[str]:
        """The ids of the items whose embeddings were read."""
        ids: list[str] = []
        for names, x in ((self.image_ids, self.image_views), (self.video_ids, self.video_frames)):
            if isinstance(x, Rows) and x.index is not None and names:
                read = (x.index >= 0).reshape(len(names), -1).all(axis=1)
                ids += [m for m, ok in zip(names, read.tolist(), strict=True) if ok]
            else:
                ids += names
        return ids

    def local(self) -> Dataset:
        """The same items with every array in this process (itself if already so)."""
        return self.for_profiles(self.profiles()) if self.remote else self

    def for_profiles(self, profiles: list[str], remote: bool = False) -> Dataset:
        """The items of several profiles (the cross-profile model trains on them);
        `remote`: arrays in the object store stay there (see `Rows.select`)."""
        rows = [self._rows.get(p, ([], [])) for p in profiles]
        img, vid = (sorted(i for r in rows for i in r[s]) for s in (0, 1))
        return self.subset(img, vid, remote)

    def subset(self, images: list[int], videos: list[int], remote: bool = False) -> Dataset:
        """The items at rows `images` and `videos` (each in increasing order); `remote`:
        see `for_profiles`."""
        img, vid = np.asarray(images, np.int64), np.asarray(videos, np.int64)
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
    """One media type's training items, in training order (profile, media_id), as the
    keys query gave them, and where each item's embedding rows are stored."""

    ids: list[str]
    sha256: list[str]
    profile: list[str]
    y: np.ndarray
    stored: np.ndarray  # (n, g): positions of its g stored rows over the part files

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


@dataclass
class _Parts:
    """The part files of an embeddings table and the rows of each one's row groups
    (from the footers, read once). Stored rows are numbered over the files read one
    after another."""

    paths: list[Path]
    groups: list[list[int]]  # per file, the rows of each row group

    @classmethod
    def of(cls, out: Path, table: str) -> _Parts:
        paths = sorted(store.table_dir(out, table).glob("*.parquet"))
        metas = [pq.ParquetFile(p).metadata for p in paths]
        return cls(
            paths, [[m.row_group(g).num_rows for g in range(m.num_row_groups)] for m in metas]
        )

    @property
    def starts(self) -> np.ndarray:
        """The number of each file's first stored row."""
        counts = [sum(g) for g in self.groups]
        return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])[:-1]

    def ranges(self, wanted: np.ndarray) -> Iterator[tuple[Path, list[int], np.ndarray]]:
        """The units of reading: runs of consecutive row groups of one file, of at least
        BATCH_ROWS rows (or the file's rest), that hold any of the stored rows `wanted`
        (ascending): (file, its row groups, the wanted rows' numbers within them)."""
        for path, sizes, start in zip(self.paths, self.groups, self.starts, strict=True):
            first = at = int(start)
            groups: list[int] = []
            for g, size in enumerate(sizes):
                groups.append(g)
                at += size
                if at - first < BATCH_ROWS and g < len(sizes) - 1:
                    continue
                lo, hi = np.searchsorted(wanted, [first, at])
                if hi > lo:
                    yield path, groups, wanted[lo:hi] - first
                first, groups = at, []


def _pick(
    path: Path | np.ndarray,
    groups: list[int],
    rows: np.ndarray,
    columns: dict[str, int],
    features: dict[str, list[float]] | None,
) -> tuple:
    """Rows `rows` of row groups `groups` of one part file: one float32 array per column
    (name -> axes), each vector with its item's context features appended when
    `features` is given; last, the number of rows. (Reads only those row groups: at most
    ROW_GROUP_BYTES each when popray wrote the file.) `path`: the file, or its bytes."""
    source = pa.BufferReader(path) if isinstance(path, np.ndarray) else path
    file = pq.ParquetFile(source, pre_buffer=False)
    picked = file.read_row_groups(groups, columns=[*columns, "media_id"]).take(pa.array(rows))
    arrays = [_stack(picked[name], dims) for name, dims in columns.items()]
    if features is not None:
        ctx = _context(picked["media_id"].to_pylist(), features)
        arrays = [_append(x, ctx) for x in arrays]
    return (*arrays, len(rows))


def _row_shapes(path: Path, columns: dict[str, int], context: bool) -> dict[str, tuple]:
    """The shape of one stored row of each column, from the file's schema (a fixed-size
    list per axis), with the context features' width added to the last axis."""
    schema = pq.read_schema(path)
    shapes = {}
    for name in columns:
        shape, kind = [], schema.field(name).type
        while pa.types.is_fixed_size_list(kind):
            shape.append(kind.list_size)
            kind = kind.value_type
        if context:
            shape[-1] += len(CONTEXT_FEATURES)
        shapes[name] = tuple(shape)
    return shapes


IN_FLIGHT = 4  # read tasks at once on the driver's node: each holds a few row groups
SENT_IN_FLIGHT = 64  # ... on a cluster's other nodes: each holds its file's bytes too


def _ships() -> bool:
    """Whether the cluster has alive nodes besides the driver's: then the driver sends
    OUT's files to read tasks on any node, rather than running the tasks on its own."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    return any(n["Alive"] and n["NodeID"] != here for n in ray.nodes())


def _read(
    files: _Parts,
    wanted: np.ndarray,
    columns: dict[str, int],
    features: dict[str, list[float]] | None,
    remote: bool,
) -> tuple[dict[str, list], list[int]]:
    """The stored rows `wanted` (ascending positions over the part files) of `columns`
    (name -> axes of its array), read from the files a few row groups at a time, in file
    order: per column one float32 array per unit read (`_Parts.ranges`), and the rows of
    each.

    `remote`: Ray tasks read the units and keep the arrays in the object store; the
    driver holds only their references, and never maps their pages. On one node the
    tasks run there and open OUT's files; on a cluster of several nodes the driver sends
    each file's bytes once through the object store, and the tasks run on any node, so
    the decompressing and gathering are the cluster's work. Else the arrays are read here
    (and put in the object store when `remote` under Ray Client, whose tasks run where
    this machine's files are not)."""
    import ray
    from ray.util.client import ray as client

    parts: dict[str, list] = {name: [] for name in columns}
    sizes: list[int] = []
    if remote and not client.is_connected():
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ship = _ships()
        if ship:
            task = ray.remote(_pick).options(num_returns=len(columns) + 1)
            window = SENT_IN_FLIGHT
        else:
            node = ray.get_runtime_context().get_node_id()
            here = NodeAffinitySchedulingStrategy(node, soft=False)
            # no CPU asked: the driver's node may have none (a cluster's head)
            task = ray.remote(_pick).options(
                num_cpus=0, num_returns=len(columns) + 1, scheduling_strategy=here
            )
            window = IN_FLIGHT
        shared = ray.put(features)
        counts: list = []
        pending: list = []
        sent: dict[Path, ray.ObjectRef] = {}  # the file being read (units come in file order)
        for path, *unit in files.ranges(wanted):
            while len(pending) >= window:  # a sliding window: the next starts as one ends
                _, pending = ray.wait(pending, num_returns=1)
            if ship and path not in sent:
                sent = {path: put_file(path)}
            *refs, count = task.remote(sent[path] if ship else path, *unit, columns, shared)
            for name, ref in zip(columns, refs, strict=True):
                parts[name].append(ref)
            counts.append(count)
            pending.append(count)
        sizes = ray.get(counts)  # raises a read task's error here, not in a trial
    else:
        for unit in files.ranges(wanted):
            *arrays, count = _pick(*unit, columns, features)
            for name, x in zip(columns, arrays, strict=True):
                parts[name].append(ray.put(x) if remote else x)
            sizes.append(count)
    if sum(sizes) != len(wanted):
        raise RuntimeError(
            f"{files.paths[0].parent if files.paths else 'embeddings'}: "
            f"{len(wanted) - sum(sizes)} "
            "embedding rows went missing while being read (a concurrent write?)"
        )
    return parts, sizes


def part_files(out: Path, table: str) -> _Parts:
    """The part files of embeddings table `table` (their paths are a keys query's
    `$files`), with their row groups."""
    return _Parts.of(out, table)


def embedding_rows(
    files: _Parts, keys: pa.Table, column: str, remote: bool = False
) -> np.ndarray | Rows:
    """The vectors of `column` (one per stored row) at the rows that `keys` names, one
    row per key (its `file`: the index in `files.paths`, `row`: the row in that file), in
    the order of `keys`. `remote`: read by tasks into the object store (`Rows`), the
    driver holds none of them."""
    stored = files.starts[keys["file"].to_numpy()] + keys["row"].to_numpy()
    [arrays] = _arrays([stored.astype(np.int64)[:, None]], files, {column: 2}, None, remote)
    return arrays[column]


def _arrays(
    stored: list[np.ndarray],
    files: _Parts,
    columns: dict[str, int],
    features: dict[str, list[float]] | None,
    remote: bool,
    grouped: bool = False,
    masks: list[np.ndarray] | None = None,
) -> list[dict[str, np.ndarray | Rows]]:
    """Each column (name -> axes of the stored column) of the items of each array of
    `stored` ((n, g): the positions of each item's g stored rows, `_Side.stored`), in
    the items' order: (n, g, ...) when `grouped` (an image's views), else (n, ...) from
    the first of them. The arrays (one per k) share their stored rows: each row is read
    once, for all of them. `masks` (one per array, with `remote`): read only the items
    marked, the others' rows stay unread (`Rows`, index -1)."""
    if masks is None:
        masks = [np.ones(len(positions), bool) for positions in stored]
    elif not remote:
        raise ValueError("reading only some items needs remote=True (the object store)")
    flat = [positions[mask].reshape(-1) for positions, mask in zip(stored, masks, strict=True)]
    wanted = np.unique(np.concatenate(flat)) if flat else np.zeros(0, np.int64)
    parts, sizes = _read(files, wanted, columns, features, remote)
    items = any(len(positions) for positions in stored)
    shapes = _row_shapes(files.paths[0], columns, features is not None) if items else {}
    local = {} if remote or not sizes else {n: np.concatenate(parts[n]) for n in columns}
    result = []
    for positions, mask in zip(stored, masks, strict=True):
        position = np.where(mask[:, None], np.searchsorted(wanted, positions), -1)
        if not grouped:
            position = position[:, 0]
        arrays: dict[str, np.ndarray | Rows] = {}
        for name, dims in columns.items():
            if not items:
                empty = np.zeros((0,) * (dims + grouped), np.float32)
                width = np.zeros((0, len(CONTEXT_FEATURES)))
                arrays[name] = _append(empty, width) if features is not None else empty
            elif remote:
                arrays[name] = Rows(parts[name], sizes, shapes[name], position)
            else:
                arrays[name] = local[name][position]
        result.append(arrays)
    return result


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
) -> dict[int, Dataset]:
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
    image_files: _Parts
    videos: list[_Side]
    video_files: _Parts

    def datasets(
        self, remote: bool = False, profiles: Collection[str] | None = None
    ) -> dict[int, Dataset]:
        """One Dataset per k, every item in it; the embedding rows read once for all ks.
        `profiles` (with `remote`): read only those profiles' rows; the others' stay
        unread (`Dataset.complete` is False, and gathering them raises `NotRead`)."""
        only = None if profiles is None else set(profiles)
        views = _arrays(
            [s.stored for s in self.images],
            self.image_files,
            {"embedding": 2},
            self.features,
            remote,
            grouped=True,
            masks=None if only is None else [_mask(s, only) for s in self.images],
        )
        frames = _arrays(
            [s.stored for s in self.videos],
            self.video_files,
            {"frames": 3, "pooled": 2},
            self.features,
            remote,
            masks=None if only is None else [_mask(s, only) for s in self.videos],
        )
        zipped = zip(self.ks, self.images, views, self.videos, frames, strict=True)
        return {
            k: Dataset(
                image_ids=image.ids,
                image_sha256=image.sha256,
                image_views=view["embedding"],
                image_y=image.y,
                video_ids=video.ids,
                video_sha256=video.sha256,
                video_frames=frame["frames"],
                video_pooled=frame["pooled"],
                video_y=video.y,
                scheme=self.scheme,
                context=self.context,
                image_profile=image.profile,
                video_profile=video.profile,
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
    for needed, stage in (("labels", "label"), ("duplicates", "dedup")):
        if not store.has_table(out, needed):
            raise MissingError(f"{out}: table {needed!r} missing; run `popray {stage}`")
    ks = list(dict.fromkeys(ks))
    sides: dict[str, tuple[list[_Side], _Parts]] = {}
    con = store.connect(out)
    try:
        features = None
        if context:
            rows = con.sql(sql_text("context_features"), params={"backbone": backbone})
            features = dict(rows.fetchall())
        for kind, table in (("image", "embeddings_image"), ("video", "embeddings_video")):
            files = _Parts.of(out, table)
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
