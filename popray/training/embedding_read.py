"""Reading stored embedding rows from OUT's Parquet part files, a few row groups at a
time, into arrays: here, or by Ray tasks into the object store (`object_rows.Rows`),
on the driver's node or, on a cluster of several nodes, on any node (the driver sends
each file's bytes once). Context features are appended to each vector as it is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from popray.io import store
from popray.io.storage import put_file
from popray.training.object_rows import Rows

BATCH_ROWS = 512  # at least this many stored rows are read per object-store chunk


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
class PartFiles:
    """The part files of an embeddings table and the rows of each one's row groups
    (from the footers, read once). Stored rows are numbered over the files read one
    after another."""

    paths: list[Path]
    groups: list[list[int]]  # per file, the rows of each row group

    @classmethod
    def of(cls, out: Path, table: str) -> PartFiles:
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
    files: PartFiles,
    wanted: np.ndarray,
    columns: dict[str, int],
    features: dict[str, list[float]] | None,
    remote: bool,
) -> tuple[dict[str, list], list[int]]:
    """The stored rows `wanted` (ascending positions over the part files) of `columns`
    (name -> axes of its array), read from the files a few row groups at a time, in file
    order: per column one float32 array per unit read (`PartFiles.ranges`), and the rows of
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
        sizes = _read_by_tasks(files, wanted, columns, features, parts)
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


def _read_by_tasks(
    files: PartFiles,
    wanted: np.ndarray,
    columns: dict[str, int],
    features: dict[str, list[float]] | None,
    parts: dict[str, list],
) -> list[int]:
    """`_read` by Ray tasks (see there): each unit's arrays, as object references, go to
    `parts`; returns the rows of each unit."""
    import ray
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
    return ray.get(counts)  # raises a read task's error here, not in a trial


def part_files(out: Path, table: str) -> PartFiles:
    """The part files of embeddings table `table` (their paths are a keys query's
    `$files`), with their row groups."""
    return PartFiles.of(out, table)


def embedding_rows(
    files: PartFiles, keys: pa.Table, column: str, remote: bool = False
) -> np.ndarray | Rows:
    """The vectors of `column` (one per stored row) at the rows that `keys` names, one
    row per key (its `file`: the index in `files.paths`, `row`: the row in that file), in
    the order of `keys`. `remote`: read by tasks into the object store (`Rows`), the
    driver holds none of them."""
    stored = files.starts[keys["file"].to_numpy()] + keys["row"].to_numpy()
    [arrays] = read_arrays([stored.astype(np.int64)[:, None]], files, {column: 2}, None, remote)
    return arrays[column]


def read_arrays(
    stored: list[np.ndarray],
    files: PartFiles,
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
