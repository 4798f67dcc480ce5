"""Near-duplicates (paper 4.1): nearest neighbours in embedding space, per profile and
media type; a Euclidean distance below the threshold makes two items duplicates.

    popray dedup --out out

Images compare their view-0 embeddings; videos their thumbnail embeddings and must also
have the same length and frame rate (within tolerances). Duplicates group transitively;
each group keeps one item: a single-media post beats a carousel, between equals the most
recent wins (then the smaller media_id, so the choice is deterministic). Writes tables
`duplicates` (every member of a group) and `nn_distances` (each item's nearest
neighbour, for the threshold histogram).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from popray.config import DedupConfig
from popray.io import store
from popray.io.tables import empty, table_schema
from popray.media.neighbours import DedupItems, dedup_items
from popray.training.embedding_read import embedding_rows, part_files
from popray.training.object_rows import Rows

IN_FLIGHT_PER_CPU = 2  # tasks queued per cluster CPU: the driver holds only their items


# media type -> its embeddings table and the column compared
SOURCES = {"image": ("embeddings_image", "embedding"), "video": ("embeddings_video", "thumbnail")}


def _items(keys: pa.Table, vectors: np.ndarray, kind: str) -> DedupItems:
    return DedupItems(
        media_id=keys["media_id"].to_pylist(),
        vectors=np.asarray(vectors, np.float32),
        published_us=keys["t"].to_numpy(),
        single=keys["single"].to_numpy(zero_copy_only=False),
        duration_s=keys["duration_s"].to_numpy() if kind == "video" else None,
        fps=keys["fps"].to_numpy() if kind == "video" else None,
    )


def _keys(out: Path, backbone: str) -> list[tuple]:
    """Per media type: its embeddings' part files, the column compared, and the keys of
    its items (dedup_images.sql / dedup_videos.sql), in (profile, media_id) order."""
    from popray.io.store import sql_text

    found = []
    con = store.connect(out)
    try:
        for kind, (table, column) in SOURCES.items():
            files = part_files(out, table)
            if files.paths:
                params = {"backbone": backbone, "files": [str(p) for p in files.paths]}
                keys = con.sql(sql_text(f"dedup_{kind}s"), params=params).to_arrow_table()
                found.append((kind, files, column, keys))
    finally:
        con.close()
    return found


def _units(
    out: Path, backbone: str, reused: Callable[[str, str, pa.Table], bool] = lambda *a: False
) -> Iterator[tuple[str, str, pa.Table, Rows | None]]:
    """(profile, media type, its items' keys, their vectors in the object store), one
    (profile, media type) at a time, in profile order. DuckDB returns keys only (where
    each vector is stored); tasks on this node read the vectors into the object store
    (`embedding_read.embedding_rows`), so the driver holds no vector. A unit that `reused`
    (profile, media type, keys) accepts gets no vectors (None): none of its rows is read."""
    for kind, files, column, keys in _keys(out, backbone):
        spans = [(keys["profile_id"][lo].as_py(), lo, hi) for lo, hi in _runs(keys["profile_id"])]
        todo = [not reused(p, kind, keys.slice(lo, hi - lo)) for p, lo, hi in spans]
        rows = [np.arange(lo, hi) for (_, lo, hi), new in zip(spans, todo, strict=True) if new]
        wanted = keys.take(np.concatenate(rows)) if rows else None
        vectors = embedding_rows(files, wanted, column, remote=True) if rows else None
        at = 0
        for (profile, lo, hi), new in zip(spans, todo, strict=True):
            unit = keys.slice(lo, hi - lo)
            if new:
                yield profile, kind, unit, vectors.select(np.arange(at, at + hi - lo))
                at += hi - lo
            else:
                yield profile, kind, unit, None


UNIT_FORMAT = 1  # of a dedup unit's fingerprint: bumped when what a task computes changes
UNIT_COLUMNS = ("media_id", "sha256", "preprocess", "t", "single", "duration_s", "fps")


def unit_key(
    profile: str, kind: str, keys: pa.Table, backbone: str, threshold: float, cfg: DedupConfig
) -> str:
    """The fingerprint of everything one (profile, media type)'s dedup rows depend on:
    its items (ids, bytes, preprocessing, post times and kinds, video lengths and frame
    rates), the backbone, the threshold and the options."""
    head = [UNIT_FORMAT, profile, kind, backbone, threshold, cfg.model_dump(mode="json")]
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for name in UNIT_COLUMNS:
        if name in keys.column_names:
            digest.update(json.dumps(keys[name].to_pylist()).encode())
    return digest.hexdigest()[:16]


def _published(out: Path, backbone: str) -> dict[tuple[str, str], tuple[str, pa.Table, pa.Table]]:
    """(profile, media type) -> (its unit, its `duplicates` rows with group ids counted
    from 0, its `nn_distances` rows), from the tables in OUT (the published run's)."""
    if not all(store.has_table(out, t) for t in ("dedup_units", "duplicates", "nn_distances")):
        return {}
    tables = []
    for name in ("dedup_units", "duplicates", "nn_distances"):
        table = store.read_table(out, name)
        tables.append(table.filter(pc.equal(table["backbone"], backbone)))
    units, dups, nns = tables
    dups, nns = _by_unit(dups), _by_unit(nns)
    found = {}
    for profile, kind, unit in zip(
        *(units[c].to_pylist() for c in ("profile_id", "media_type", "unit")), strict=True
    ):
        mine = dups.get((profile, kind), empty("duplicates"))
        if mine.num_rows:  # group ids from 0 within the unit, as its task numbered them
            ids = pc.subtract(mine["group_id"], pc.min(mine["group_id"]))
            mine = mine.set_column(mine.schema.get_field_index("group_id"), "group_id", ids)
        no_nns = empty("nn_distances")
        found[(profile, kind)] = (unit, mine, nns.get((profile, kind), no_nns))
    return found


def _by_unit(table: pa.Table) -> dict[tuple[str, str], pa.Table]:
    """The rows of each (profile, media type), in their order in `table`."""
    if not table.num_rows:
        return {}
    order = pc.sort_indices(table, [("profile_id", "ascending"), ("media_type", "ascending")])
    table = table.take(order)  # a stable sort: each unit's rows keep their order
    key = pc.binary_join_element_wise(table["profile_id"], table["media_type"], "\x00")
    return {
        (table["profile_id"][lo].as_py(), table["media_type"][lo].as_py()): table.slice(lo, hi - lo)
        for lo, hi in _runs(key)
    }


def _runs(values: pa.ChunkedArray | pa.Array) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal consecutive values (none when empty)."""
    codes = pc.dictionary_encode(values).combine_chunks().indices.to_numpy()
    bounds = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist(), len(values)]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]


@dataclass(frozen=True)
class DedupUnit:
    """One unit of dedup's work, a Ray task's: a profile's media of one type, one backbone."""

    profile_id: str
    media_type: str
    backbone: str

    def rows(self, found: list[dict], name: str) -> pa.Table:
        """`found` (rows without the unit's columns) as table `name`."""
        tag = asdict(self)  # profile_id, media_type, backbone: columns of both tables
        return pa.Table.from_pylist([tag | r for r in found], schema=table_schema(name))


@dataclass(frozen=True)
class DedupReport:
    """What `run_dedup` found and published."""

    duplicates: pa.Table
    nn_distances: pa.Table
    threshold: float

    def line(self) -> str:
        removed = pc.sum(pc.invert(self.duplicates["kept"])).as_py() or 0
        groups = len(pc.unique(self.duplicates["group_id"]))
        return (
            f"{removed} near-duplicates in {groups} groups (threshold {self.threshold:g}); "
            f"{self.nn_distances.num_rows} items compared"
        )


def _dedup_one(
    unit: DedupUnit, keys: pa.Table, vectors: Rows, threshold: float, cfg: DedupConfig
) -> tuple[pa.Table, pa.Table]:
    """Ray task: the `duplicates` and `nn_distances` rows of one (profile, media type),
    group ids counted from 0 within it; it gathers its vectors from the object store."""
    items = _items(keys, vectors.array(), unit.media_type)
    dups, nns = dedup_items(items, threshold, cfg)
    return unit.rows(dups, "duplicates"), unit.rows(nns, "nn_distances")


def _numbered(done: list[tuple[pa.Table, pa.Table]]) -> tuple[pa.Table, pa.Table]:
    """Tables `duplicates` and `nn_distances` of every unit, in order, each unit's group
    ids shifted past those of the units before it."""
    dup_parts, nn_parts, offset = [], [], 0
    column = table_schema("duplicates").get_field_index("group_id")
    for dups, nns in done:
        ids = dups["group_id"]
        dup_parts.append(dups.set_column(column, "group_id", pc.add(ids, offset)))
        nn_parts.append(nns)
        offset += len(pc.unique(ids))
    return _concat(dup_parts, "duplicates"), _concat(nn_parts, "nn_distances")


def run_dedup(
    out: Path, cfg: DedupConfig, backbone: str, echo: Callable[[str], None] = lambda line: None
) -> DedupReport:
    """Find near-duplicates among the embedded media of `out`, one Ray task per
    (profile, media type), at most `IN_FLIGHT_PER_CPU` per cluster CPU in flight; publish
    both tables. Group ids are numbered in (media type, profile) order, as the tasks were
    submitted, whatever order they finish in. A (profile, media type) whose unit
    (`unit_key`) matches the published run's takes over its rows: its vectors are not read."""
    import ray

    from popray.cluster import ensure_ray

    store.require(out, {"media": "ingest"})  # before Ray starts
    ensure_ray()
    threshold = cfg.threshold_for(backbone)
    old = _published(out, backbone)
    units: dict[tuple[str, str], str] = {}

    def reused(profile: str, kind: str, keys: pa.Table) -> bool:
        unit = units[(profile, kind)] = unit_key(profile, kind, keys, backbone, threshold, cfg)
        return old.get((profile, kind), ("",))[0] == unit

    task = ray.remote(num_cpus=1, max_retries=3)(_dedup_one)
    limit = max(1, int(ray.cluster_resources().get("CPU", 1) * IN_FLIGHT_PER_CPU))
    pending: dict[ray.ObjectRef, int] = {}
    done: list[tuple[pa.Table, pa.Table] | None] = []

    def take(refs: list[ray.ObjectRef]) -> None:
        for ref in refs:
            done[pending.pop(ref)] = ray.get(ref)

    for profile, kind, keys, vectors in _units(out, backbone, reused):
        if vectors is None:
            done.append(old[(profile, kind)][1:])
            continue
        unit = DedupUnit(profile, kind, backbone)
        pending[task.remote(unit, keys, vectors, threshold, cfg)] = len(done)
        done.append(None)
        if len(pending) >= limit:
            take(ray.wait(list(pending), num_returns=1)[0])
    take(list(pending))
    taken = sum(1 for key, unit in units.items() if old.get(key, ("",))[0] == unit)
    echo(f"dedup: {len(units) - taken} (profile, media type) recomputed, {taken} reused")
    duplicates, nn_distances = _numbered(done)
    store.write_table(out, "duplicates", duplicates, part=backbone)
    store.write_table(out, "nn_distances", nn_distances, part=backbone)
    rows = [(p, k, backbone, u) for (p, k), u in units.items()]
    names = table_schema("dedup_units").names
    table = pa.Table.from_pylist(
        [dict(zip(names, r, strict=True)) for r in rows], schema=table_schema("dedup_units")
    )
    store.write_table(out, "dedup_units", table, part=backbone)
    store.refresh_views(out)
    return DedupReport(duplicates, nn_distances, threshold)


def _concat(parts: list[pa.Table], name: str) -> pa.Table:
    if not parts:
        return empty(name)
    return pa.concat_tables(parts)
