"""Where embeddings go: written by the cluster, assembled into the tables by the cluster.

The embedding pipeline (`popray.embed`) ends in `write_block`, a Ray Data task that turns
each embedded block into rows of `embeddings_image` / `embeddings_video` and writes them as
Parquet files under a staging folder of the run's storage (object storage on a cluster:
the task's own node writes there), one folder per table part. Only each item's
(media_id, sha256, kind, error) comes back to the driver.

A table has one part per (backbone, profile) (`part_of`). `assemble` rewrites the parts
of the profiles whose items changed, from their earlier rows and the staged ones: on a
cluster a Ray task per part (on one machine a thread of the driver) reads its sources a
record batch at a time and builds the part's Parquet file in memory (no builder holds
more than one part's rows); the driver only writes each file in place. The other parts
stay as they were, so a nightly run rewrites (and publishes) only what changed. (DuckDB
was tried for this join: its vectors of 2,048 rows of 15 x 1280 floats ran out of a
1 GB limit.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from popray.config import EmbedConfig
from popray.io import store
from popray.io.storage import Location, put_file
from popray.io.tables import embeddings_image_schema, embeddings_video_schema
from popray.media import decode
from popray.training.models import model_input

STATUS = ("media_id", "sha256", "kind", "error", "device")  # what comes back per item
BATCH_ROWS = 128  # rows per record batch while assembling (<= 10 MB of video embeddings)
LOCAL = pafs.LocalFileSystem()
WRITERS = max(1, min(8, os.cpu_count() or 1))  # parts built at once on the driver's node
IN_FLIGHT_PER_CPU = 2  # parts built at once on a cluster, per CPU ...
IN_FLIGHT_MAX = 128  # ... and at most: each waits in the object store for the driver
# a file that a part's rows are read from: (its file system, its path) on the run's
# storage; (None, its path) on the driver's node (OUT); or (None, a reference to its
# bytes in the object store), such a file sent to a task that may run on another node
Source = tuple[pafs.FileSystem | None, Any]


def schemas(width: int) -> dict[str, pa.Schema]:
    return {"image": embeddings_image_schema(width), "video": embeddings_video_schema(width)}


def _vectors(rows: np.ndarray, *shape: int) -> pa.Array:
    """float32 rows (n, *shape, width) as nested fixed-size lists, without a Python loop."""
    arr = pa.array(np.ascontiguousarray(rows, np.float32).ravel())
    for size in (rows.shape[-1], *reversed(shape)):
        arr = pa.FixedSizeListArray.from_arrays(arr, size)
    return arr


def image_table(items: list[dict], cfg: EmbedConfig, key: str, width: int) -> pa.Table:
    """One row per view of each embedded image (view 0: the image itself): columns
    built from the stacked vectors (a row dict per view cost 4 ms per image)."""
    embs = [np.asarray(r["embeddings"], np.float32) for r in items]
    n = np.array([len(e) for e in embs], np.int64)
    total = int(n.sum())
    columns = {
        "media_id": pa.array(np.repeat([r["media_id"] for r in items], n), pa.string()),
        "sha256": pa.array(np.repeat([r["sha256"] for r in items], n), pa.string()),
        "backbone": pa.array([cfg.backbone] * total, pa.string()),
        "preprocess": pa.array([key] * total, pa.string()),
        "view": pa.array(np.concatenate([np.arange(k, dtype=np.int32) for k in n]), pa.int32()),
        "embedding": _vectors(np.concatenate(embs).reshape(total, width)),
    }
    return pa.Table.from_pydict(columns, schema=schemas(width)["image"])


def video_table(items: list[dict], cfg: EmbedConfig, key: str, width: int) -> pa.Table:
    """One row per embedded video: its 15 frames, their max over time, and the
    thumbnail's embedding (the file's when there is one, else the first frame's)."""
    embs = [np.asarray(r["embeddings"], np.float32) for r in items]
    metas = [json.loads(r["meta"]) for r in items]
    frames = np.stack([e[: decode.N_FRAMES] for e in embs])  # (n, 15, width)
    thumbs = np.stack(
        [
            e[decode.N_FRAMES] if m["thumbnail_source"] == "file" else e[0]
            for e, m in zip(embs, metas, strict=True)
        ]
    )
    times = np.array([m["frame_times_s"] for m in metas], np.float32)
    columns = {
        "media_id": pa.array([r["media_id"] for r in items], pa.string()),
        "sha256": pa.array([r["sha256"] for r in items], pa.string()),
        "backbone": pa.array([cfg.backbone] * len(items), pa.string()),
        "preprocess": pa.array([key] * len(items), pa.string()),
        "duration_s": pa.array([m["duration_s"] for m in metas], pa.float64()),
        "fps": pa.array([m["fps"] for m in metas], pa.float64()),
        "n_frames_total": pa.array([m["n_frames_total"] for m in metas], pa.int64()),
        "frame_times_s": _vectors(times),
        "frames": _vectors(frames, decode.N_FRAMES),
        "pooled": _vectors(model_input("vector", "video", frames)),  # what vector models eat
        "thumbnail": _vectors(thumbs),
        "thumbnail_source": pa.array([m["thumbnail_source"] for m in metas], pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=schemas(width)["video"])


def write_block(
    batch: dict[str, np.ndarray], cfg: EmbedConfig, keys: dict[str, str], staging: Location
) -> dict[str, np.ndarray]:
    """Ray Data task: write the block's embedding rows to `staging/<kind>/<part>/<uuid>.parquet`,
    a file per table part (column `part`, the part of the item's profile; without it
    `staging/<kind>/<uuid>.parquet`); return only each item's status (its error, "" when
    embedded)."""
    found: dict[tuple[str, str], list[dict]] = {}
    parts = batch["part"] if "part" in batch else [""] * len(batch["media_id"])
    for i in range(len(batch["media_id"])):
        if not batch["error"][i]:
            r = {k: batch[k][i] for k in ("media_id", "sha256", "kind", "meta", "embeddings")}
            found.setdefault((str(r["kind"]), str(parts[i])), []).append(r)
    builders = {"image": image_table, "video": video_table}
    for (kind, part), items in sorted(found.items()):
        width = np.asarray(items[0]["embeddings"]).shape[1]
        table = builders[kind](items, cfg, keys[kind], width)
        folder = staging.child(f"{kind}/{part}" if part else kind)
        folder.fs.create_dir(folder.path(), recursive=True)
        path = folder.path(f"{uuid.uuid4().hex}.parquet")
        pq.write_table(table, path, filesystem=folder.fs, compression="zstd")
    return {k: batch[k] for k in STATUS}


def staged_width(staging: Location) -> int | None:
    """The embedding width of the staged rows (None: nothing staged)."""
    for kind, column in (("image", "embedding"), ("video", "pooled")):
        files = staging.child(kind).files()
        if files:
            folder = staging.child(kind)
            schema = pq.read_schema(folder.path(files[0]), filesystem=folder.fs)
            return schema.field(column).type.list_size
    return None


def part_of(backbone: str, profile: str) -> str:
    """The part of an embeddings table that holds one profile's rows: a nightly run
    rewrites only the parts of the profiles whose items changed, and the files of the
    others stay as they were (a publication links or copies them, never re-uploads)."""
    return f"{backbone}.p{hashlib.sha256(profile.encode()).hexdigest()[:16]}"


def parts_of(out: Path, name: str, backbone: str) -> dict[str, Path]:
    """part -> file of `backbone`'s rows in table `name`: one per profile, and the single
    part (`<backbone>.parquet`) of the runs before per-profile parts."""
    own = re.compile(re.escape(backbone) + r"(\.p[0-9a-f]{16})?")
    folder = store.table_dir(out, name)
    return {p.stem: p for p in sorted(folder.glob("*.parquet")) if own.fullmatch(p.stem)}


@dataclass
class Assembled:
    """What `assemble` did to a table's parts."""

    written: int = 0  # parts written: new profiles, or a profile whose items changed
    kept: int = 0  # parts left as they were
    removed: int = 0  # parts of profiles with no item left (and the old single part)
    build_core_s: float = 0.0  # CPU seconds of the threads that built the written parts
    write_s: float = 0.0  # the driver getting the parts' files and writing them

    def __add__(self, other: Assembled) -> Assembled:
        return Assembled(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def assemble(
    out: Path,
    name: str,
    backbone: str,
    schema: pa.Schema,
    key: str,
    staged: Location | None,
    current: list[tuple[str, str, str]],
    owner: dict[str, str] | None = None,
) -> Assembled:
    """Write `backbone`'s parts of table `name`, one per profile: the rows (a row per
    view for images) of each current (media_id, sha256, profile_id). A profile's part is
    written only when its (media_id, sha256) pairs differ from those its file holds with
    preprocessing `key`; the others are kept, and parts no current item needs are removed.

    A part's rows come from its earlier file, the rows this run staged for it under
    `staged/<part>/` (`owner`: the part each staged sha256 was staged under; "" at the
    top of `staged`), and, for an exact duplicate of an item embedded under another
    profile, that profile's file. Each written part is built from them a record batch at
    a time, by a Ray task on a cluster or a thread of the driver on one machine
    (`_built`); the driver holds only the keys and writes the files."""
    wanted: dict[str, dict[str, list[str]]] = {}
    for media_id, sha, profile in current:
        wanted.setdefault(part_of(backbone, profile), {}).setdefault(sha, []).append(media_id)
    existing = parts_of(out, name, backbone)
    held = {part: _held(existing[part], key) for part in wanted if part in existing}
    stale = [p for p in wanted if held.get(p) != _pairs(wanted[p])]
    staged_files: dict[str, list[str]] = {}
    for rel in staged.files() if staged is not None else []:
        staged_files.setdefault(rel.rsplit("/", 1)[0] if "/" in rel else "", []).append(rel)
    owner = owner or {}
    have = {part: {sha for _, sha in pairs} for part, pairs in held.items()}
    # an item this run did not stage and its part does not hold: an exact duplicate of
    # one embedded under another profile, or a row of the single part of older runs
    missing = {p: set(wanted[p]) - have.get(p, set()) - set(owner) for p in stale}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".assemble-", dir=out) as tmp:
        scattered = _scatter(existing, missing, key, Path(tmp))

        def sources(part: str) -> list[Source]:
            own = existing.get(part)
            found = [(None, str(own))] if own is not None and have.get(part) else []
            from_staging = {owner.get(sha, "") for sha in wanted[part] if sha in owner}
            for folder in sorted({part, *from_staging} & set(staged_files)):
                found += [(staged.fs, staged.path(rel)) for rel in staged_files[folder]]
            return found + [(None, str(path)) for path in scattered.get(part, [])]

        built = _built(stale, sources, wanted, key, schema, staged)
        core_s, write_s = _write_parts(out, name, built, wanted)
    removed = [path for part, path in existing.items() if part not in wanted]
    for path in removed:  # last: a run killed before here finds them and removes them again
        path.unlink()
    return Assembled(len(stale), len(wanted) - len(stale), len(removed), core_s, write_s)


def _write_parts(out: Path, name: str, built, wanted: dict) -> tuple[float, float]:
    """Write each part `_built` yields into OUT, checking it found every item it wants;
    (the builders' CPU seconds, the driver's seconds getting and writing them)."""
    core_s = write_s = 0.0
    for part, data, found, build_s, get_s in built:
        start = time.perf_counter()
        store.write_part_bytes(out, name, part, data)
        write_s += get_s + time.perf_counter() - start
        core_s += build_s
        if found != set(wanted[part]):
            lost = sorted(set(wanted[part]) - found)
            raise RuntimeError(
                f"{name}: no embedding rows found for {len(lost)} item(s) of part {part} "
                f"(sha256 {lost[0][:12]}...); run `popray embed` again"
            )
    return core_s, write_s


def _pairs(shas: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {(media_id, sha) for sha, ids in shas.items() for media_id in ids}


def _held(path: Path, key: str) -> set[tuple[str, str]]:
    """The (media_id, sha256) pairs that a part's file holds with preprocessing `key`."""
    table = pq.read_table(path, columns=["media_id", "sha256", "preprocess"])
    table = table.filter(pc.equal(table["preprocess"], key))
    return set(zip(table["media_id"].to_pylist(), table["sha256"].to_pylist(), strict=True))


def _built(
    stale: list[str],
    sources: Callable[[str], list[Source]],
    wanted: dict[str, dict[str, list[str]]],
    key: str,
    schema: pa.Schema,
    staged: Location | None,
) -> Iterator[tuple[str, np.ndarray, set[str], float, float]]:
    """(part, its Parquet file, the sha256 it holds rows of, the CPU seconds its build
    took, the driver's seconds getting it) of each `stale` part, built by `_build` (the
    reading, filtering and compressing) in the order they finish, at most `limit` at
    once: the driver only writes them.

    Staged rows on object storage (a cluster): a Ray task per part, on any node; the
    files of the driver's node that a part needs (its earlier file, rows scattered from
    others) go to its task as bytes through the object store. Staged rows on this node's
    disk (one machine): threads of the driver, WRITERS at once (Parquet's decompression,
    compression and I/O release the GIL; Ray tasks cost 1.6x the wall time here)."""
    if not stale:
        return
    if staged is None or not staged.visible_to_cluster:
        with ThreadPoolExecutor(WRITERS) as pool:
            running: dict[Future, str] = {}
            for part in [*stale, None]:
                if part is not None:
                    running[pool.submit(_build, sources(part), wanted[part], key, schema)] = part
                while running and (part is None or len(running) >= WRITERS):
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield running.pop(future), *future.result(), 0.0
        return
    import ray

    from popray.cluster import ensure_ray

    ensure_ray()
    task = ray.remote(_build).options(num_cpus=1, max_retries=3)
    cpus = ray.cluster_resources().get("CPU", 1)
    limit = max(1, min(IN_FLIGHT_MAX, int(cpus * IN_FLIGHT_PER_CPU)))
    pending: dict[ray.ObjectRef, str] = {}
    for part in [*stale, None]:
        if part is not None:
            files = [(fs, path) if fs else (None, put_file(path)) for fs, path in sources(part)]
            pending[task.remote(files, wanted[part], key, schema)] = part
        while pending and (part is None or len(pending) >= limit):
            [ref], _ = ray.wait(list(pending), num_returns=1)
            start = time.perf_counter()
            data, found, build_s = ray.get(ref)
            yield pending.pop(ref), data, found, build_s, time.perf_counter() - start


def _build(
    sources: list[Source], wanted: dict[str, list[str]], key: str, schema: pa.Schema
) -> tuple[np.ndarray, set[str], float]:
    """Ray task: one part's Parquet file, in memory, from the rows of `sources` (see
    `assemble`), the sha256 it holds rows of, and the CPU seconds of its thread."""
    start = time.thread_time()
    found: set[str] = set()
    sink = pa.BufferOutputStream()
    store.write_stream(sink, schema, _rows(sources, wanted, key, schema, found))
    # an array, not bytes: the driver reads it in place from the object store, no copy
    data = np.frombuffer(sink.getvalue(), np.uint8)
    return data, found, time.thread_time() - start


SCATTER_BYTES = 256 << 20  # rows held while scattering, before they go to files


def _scatter(
    parts: dict[str, Path], missing: dict[str, set[str]], key: str, tmp: Path
) -> dict[str, list[Path]]:
    """The rows of the `missing` sha256 of each part (part -> sha256), read from whichever
    of `parts` holds them, each file once, and written to files under `tmp` per part
    (part -> its files): a part then reads its own rows only, however many parts the
    file feeds (the single part of older runs feeds them all)."""
    needs: dict[str, list[str]] = {}
    for part, shas in missing.items():
        for sha in shas:
            needs.setdefault(sha, []).append(part)
    files: dict[str, list[Path]] = {}
    if not needs:
        return files
    held: dict[str, list[pa.Table]] = {}
    size = 0

    def flush() -> None:
        for part, tables in held.items():
            folder = tmp / part
            folder.mkdir(exist_ok=True)
            path = folder / f"{len(files.get(part, []))}.parquet"
            pq.write_table(pa.concat_tables(tables), path)
            files.setdefault(part, []).append(path)
        held.clear()

    wanted = pa.array(list(needs), pa.string())
    for path in parts.values():
        keys = pq.read_table(path, columns=["sha256"])
        if not pc.any(pc.is_in(keys["sha256"], wanted)).as_py():
            continue
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            shas = batch.column("sha256").to_pylist()
            pres = batch.column("preprocess").to_pylist()
            to: dict[str, list[int]] = {}
            for i, (sha, pre) in enumerate(zip(shas, pres, strict=True)):
                if pre == key:
                    for part in needs.get(sha, ()):
                        to.setdefault(part, []).append(i)
            for part, rows in to.items():
                taken = pa.Table.from_batches([batch]).take(pa.array(rows, pa.int64()))
                held.setdefault(part, []).append(taken)
                size += taken.nbytes
            if size > SCATTER_BYTES:
                flush()
                size = 0
    flush()
    return files


def _open(fs: pafs.FileSystem | None, path: Any) -> pa.NativeFile:
    if fs is not None:
        return fs.open_input_file(path)
    if isinstance(path, str):
        return LOCAL.open_input_file(path)
    import ray

    return pa.BufferReader(ray.get(path))


def _rows(
    sources: list[Source],
    wanted: dict[str, list[str]],
    key: str,
    schema: pa.Schema,
    found: set[str],
):
    """The batches `assemble` writes for one part (see there); adds to `found` the
    sha256 it wrote rows of."""
    seen: set[tuple[str, int]] = set()
    for fs, path in sources:
        with _open(fs, path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=BATCH_ROWS):
                shas = batch.column("sha256").to_pylist()
                keys = batch.column("preprocess").to_pylist()
                views = (
                    batch.column("view").to_pylist()
                    if "view" in schema.names
                    else [0] * batch.num_rows
                )
                take, ids = [], []
                for i, (sha, pre, view) in enumerate(zip(shas, keys, views, strict=True)):
                    if pre != key or sha not in wanted or (sha, view) in seen:
                        continue
                    seen.add((sha, view))
                    found.add(sha)
                    for media_id in wanted[sha]:
                        take.append(i)
                        ids.append(media_id)
                if take:
                    rows = pa.Table.from_batches([batch]).take(pa.array(take, pa.int64()))
                    at = rows.schema.get_field_index("media_id")
                    yield rows.set_column(at, "media_id", pa.array(ids, pa.string()))
