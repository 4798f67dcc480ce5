"""Benchmark: what a nightly run rewrites and publishes, on a finished run.

    python -m jobs.benchmark publish --out OUT [--work DIR]

On copies of OUT and of the export it was made from (`ingest.json`), in WORK:
1. a staged run assembles the embedding tables again (an OUT from before per-profile
   parts is split into them; nothing is embedded) and is pushed to an S3 server (moto's,
   on loopback): the first publication, every file uploaded;
2. the export gets 3 new posts on one profile (`bench_nightly.add_posts`); a staged run
   ingests it and embeds the new media: the embedding parts that change are counted;
3. that run is pushed: what changed is uploaded, the rest copied on the storage.
The train and later stages are left out: they write small tables, and the embeddings
are what grows (the bulk of a run's bytes).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pyarrow.parquet as pq

from popray.config import EmbedConfig
from popray.embed import run_embed
from popray.ingest import run_ingest
from popray.io import remote, store
from popray.io.publish import current, staged_run
from popray.io.store import input_dir_of
from popray.tools.bench_nightly import add_posts

EMBEDDINGS = ("embeddings_image", "embeddings_video")


def bench_publish(out: Path, work: Path) -> dict:
    """The whole benchmark in `work` (emptied first); one result row."""
    from moto.server import ThreadedMotoServer

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    export = work / "export"
    shutil.copytree(input_dir_of(out).uri, export, symlinks=True)
    mine = work / "out"
    shutil.copytree(out, mine, symlinks=True)
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(name, value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        remote.resolve(f"s3://bench?{query}&allow_bucket_creation=true")[0].create_dir("bench")
        uri = f"s3://bench/popray?{query}"
        cfg = EmbedConfig()
        start = time.perf_counter()
        with staged_run(mine) as run:
            run_embed(run, cfg)
        split_s = time.perf_counter() - start
        first = _push(mine, uri)
        profiles = sorted(set(store.read_table(mine, "posts")["profile_id"].to_pylist()))
        changed = profiles[len(profiles) // 2]
        add_posts(export, changed)
        before = current(mine)
        start = time.perf_counter()
        with staged_run(mine) as run:
            run_ingest(export, run)
            report = run_embed(run, cfg)
        nightly_s = time.perf_counter() - start
        written, total = _rewritten(before, current(mine))
        second = _push(mine, uri)
    finally:
        server.stop()
    return {
        "bench": "publish",
        "out": str(out),
        "profiles": len(profiles),
        "changed_profile": changed,
        "split_s": round(split_s, 1),
        "first_push": first,
        "nightly_ingest_embed_s": round(nightly_s, 1),
        "nightly_embedded": report.embedded,
        "embedding_parts_rewritten": written,
        "embedding_parts": total,
        "nightly_push": second,
        "nightly_uploaded_share": round(
            second["uploaded_bytes"] / max(1, first["uploaded_bytes"]), 4
        ),
    }


def _push(out: Path, uri: str) -> dict:
    start = time.perf_counter()
    pushed = remote.push(out, uri)
    return {
        "s": round(time.perf_counter() - start, 2),
        "uploaded": pushed.uploaded,
        "uploaded_bytes": pushed.uploaded_bytes,
        "copied": pushed.copied,
        "copied_bytes": pushed.copied_bytes,
    }


def _rewritten(before: Path, after: Path) -> tuple[int, int]:
    """(embedding part files of `after` that are not `before`'s own, all of them)."""
    files = [p for name in EMBEDDINGS for p in store.table_dir(after, name).glob("*.parquet")]
    new = 0
    for path in files:
        old = before / path.relative_to(after)
        new += not (old.exists() and old.stat().st_ino == path.stat().st_ino)
    return new, len(files)


def _vectors(like: Path | None):
    """(n, views, width) image vectors: those of a finished run's OUT, else random ones
    with 4 views."""
    import numpy as np

    if like is None:
        return np.random.default_rng(0).normal(size=(1000, 5, 1280)).astype(np.float32)
    rows = store.read_table(like, "embeddings_image").sort_by(
        [("media_id", "ascending"), ("view", "ascending")]
    )
    views = int(max(rows["view"].to_pylist())) + 1
    flat = np.asarray(rows["embedding"].combine_chunks().flatten().to_numpy(), np.float32)
    return flat.reshape(-1, views, len(flat) // rows.num_rows)


def _stage(staging: Path, current: list[tuple[str, str, str]], vectors) -> None:
    """Stage `current` (media_id, sha256, profile) as the pipeline does: a file per 16
    items and part, the vectors cycled."""
    from popray.media.embed_write import image_table, part_of

    cfg = EmbedConfig(views=vectors.shape[1] - 1)
    by_part: dict[str, list[tuple[int, tuple[str, str, str]]]] = {}
    for i, item in enumerate(current):
        by_part.setdefault(part_of("bb", item[2]), []).append((i, item))
    for part, mine in by_part.items():
        folder = staging / part
        folder.mkdir(parents=True)
        for at in range(0, len(mine), 16):
            block = [
                {"media_id": m, "sha256": s, "embeddings": vectors[i % len(vectors)]}
                for i, (m, s, _) in mine[at : at + 16]
            ]
            table = image_table(block, cfg, "key", vectors.shape[2])
            pq.write_table(table, folder / f"{at}.parquet", compression="zstd")


def bench_assemble(
    work: Path,
    items: int = 20_000,
    profiles: int = 100,
    like: Path | None = None,
    tasks: bool = False,
) -> dict:
    """The cost of `embed_assemble.assemble` on a first run: `items` images of `profiles`
    profiles staged as the pipeline stages them (a file per 16 items and part),
    assembled into their parts, by threads of the driver as on one machine, or (`tasks`)
    by Ray tasks as on a cluster (the staging as a `file://` URI, as if on object
    storage; Ray started before the clock): the wall time, the builders' CPU seconds and
    the driver's own (getting and writing the files), per MB of vectors. The vectors
    are those of a finished run's images (`like`: its OUT, cycled; they compress as real
    ones do), else random with 4 views."""
    import ray

    from popray.cluster import ensure_ray
    from popray.io.storage import Location
    from popray.media.embed_assemble import assemble
    from popray.media.embed_write import part_of, schemas

    shutil.rmtree(work, ignore_errors=True)
    staging = Location.parse(f"file://{work / 'staging'}" if tasks else work / "staging")
    vectors = _vectors(like)
    views, width = vectors.shape[1], vectors.shape[2]
    current = [(f"m{i}", f"s{i}", f"p{i % profiles}") for i in range(items)]
    _stage(work / "staging", current, vectors)
    owner = {s: part_of("bb", p) for _, s, p in current}
    staged_bytes = sum(f.stat().st_size for f in (work / "staging").rglob("*.parquet"))
    raw_mb = items * views * width * 4 / 1e6
    ensure_ray()
    start = time.perf_counter()
    schema = schemas(width)["image"]
    done = assemble(work / "out", "embeddings_image", "bb", schema, "key", staging, current, owner)
    seconds = time.perf_counter() - start
    files = sorted((work / "out").rglob("*.parquet"))
    written = sum(f.stat().st_size for f in files)
    alone = _write_alone(work / "out", files)
    return {
        "bench": "assemble",
        "items": items,
        "profiles": profiles,
        "views": views - 1,
        "vectors": str(like) if like else "random",
        "by": "Ray tasks" if tasks else "threads",
        "parts_written": done.written,
        "vectors_mb": round(raw_mb, 1),
        "staged_mb": round(staged_bytes / 1e6, 1),
        "written_mb": round(written / 1e6, 1),
        "seconds": round(seconds, 2),
        "cpus": ray.cluster_resources().get("CPU"),
        "tasks_core_s": round(done.build_core_s, 2),
        "driver_s": round(done.write_s, 2),
        "s_per_vector_mb": seconds / raw_mb,
        "core_s_per_vector_mb": done.build_core_s / raw_mb,
        "driver_s_per_vector_mb": done.write_s / raw_mb,
        "driver_write_alone_s": round(alone, 3),
        "driver_write_alone_s_per_vector_mb": alone / raw_mb,
    }


def _write_alone(out: Path, files: list[Path]) -> float:
    """Seconds the driver takes to write the parts' `files` again from memory, with
    nothing else on the cores (a cluster's driver node builds no part)."""
    contents = [(f.stem, f.read_bytes()) for f in files]
    start = time.perf_counter()
    for part, data in contents:
        store.write_part_bytes(out, "embeddings_image", part, data)
    return time.perf_counter() - start


def bench_send(out: Path) -> dict:
    """The driver's cost of sending OUT's embedding files to read tasks on other nodes
    (`embedding_read._read` on a cluster): each file read and its bytes put in the object store
    (Ray started before the clock), per MB of the vectors it holds; twice, the second
    pass into an object store whose memory is mapped already, as it is once a driver
    has sent more than the store holds. Across a network the driver's link adds its own
    bound (`popray plan`)."""
    from popray.cluster import ensure_ray
    from popray.io.storage import put_file
    from popray.tools.plan_costs import VIDEO_VECTORS, WIDTH

    ensure_ray()
    per_row = {"embeddings_image": 1, "embeddings_video": VIDEO_VECTORS}
    files = [(f, n) for n in per_row for f in sorted(store.table_dir(out, n).glob("*.parquet"))]
    vectors = sum(pq.ParquetFile(f).metadata.num_rows * per_row[n] for f, n in files)
    passes = []
    for _ in range(2):  # the first into a fresh object store (its pages not yet mapped)
        start = time.perf_counter()
        for path, _ in files:
            ref = put_file(path)
            del ref  # as `_read` does: one file held at a time
        passes.append(time.perf_counter() - start)
    vector_mb = vectors * WIDTH * 4 / 1e6
    return {
        "bench": "send",
        "files": len(files),
        "file_mb": round(sum(f.stat().st_size for f, _ in files) / 1e6, 1),
        "vectors_mb": round(vector_mb, 1),
        "first_s": round(passes[0], 3),
        "seconds": round(passes[1], 3),
        "s_per_vector_mb": passes[1] / vector_mb,
    }
