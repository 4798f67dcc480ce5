"""The embedding tables assembled by the cluster (after `embed_write` staged the rows).

A table has one part per (backbone, profile) (`embed_write.part_of`). `assemble`
rewrites the parts of the profiles whose items changed, from their earlier rows and the
staged ones: on a cluster a Ray task per part (on one machine a thread of the driver)
reads its sources a record batch at a time and builds the part's Parquet file in memory
(no builder holds more than one part's rows); the driver only writes each file in place.
The other parts stay as they were, so a nightly run rewrites (and publishes) only what
changed. (DuckDB was tried for this join: its vectors of 2,048 rows of 15 x 1280 floats
ran out of a 1 GB limit.)
"""

from __future__ import annotations

import os
import tempfile
import time
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

from popray.io import store
from popray.io.storage import Location, put_file
from popray.media.embed_write import part_of, parts_of

BATCH_ROWS = 128  # rows per record batch while assembling (<= 10 MB of video embeddings)
LOCAL = pafs.LocalFileSystem()
WRITERS = max(1, min(8, os.cpu_count() or 1))  # parts built at once on the driver's node
IN_FLIGHT_PER_CPU = 2  # parts built at once on a cluster, per CPU ...
IN_FLIGHT_MAX = 128  # ... and at most: each waits in the object store for the driver
# a file that a part's rows are read from: (its file system, its path) on the run's
# storage; (None, its path) on the driver's node (OUT); or (None, a reference to its
# bytes in the object store), such a file sent to a task that may run on another node
Source = tuple[pafs.FileSystem | None, Any]


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
