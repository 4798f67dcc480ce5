"""Where embeddings go: written by the cluster, assembled into the tables without holding
them in the driver.

The embedding pipeline (`popray.embed`) ends in `write_block`, a Ray Data task that turns
each embedded block into rows of `embeddings_image` / `embeddings_video` and writes them as
Parquet files under a staging folder of the run's storage (object storage on a cluster:
the task's own node writes there). Only each item's (media_id, sha256, kind, error) comes
back to the driver. `assemble_part` then builds a table's part from the rows an earlier
run made and the staged ones, streamed a record batch at a time into the Parquet part,
so the driver's memory stays flat whatever the number of media. (DuckDB was tried for
this join: its vectors of 2,048 rows of 15 x 1280 floats ran out of a 1 GB limit.)
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from popray import decode, store
from popray.config import EmbedConfig
from popray.storage import Location
from popray.tables import embeddings_image_schema, embeddings_video_schema

STATUS = ("media_id", "sha256", "kind", "error")  # what comes back to the driver per item
BATCH_ROWS = 128  # rows per record batch while assembling (<= 10 MB of video embeddings)


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
        "pooled": _vectors(frames.max(axis=1)),
        "thumbnail": _vectors(thumbs),
        "thumbnail_source": pa.array([m["thumbnail_source"] for m in metas], pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=schemas(width)["video"])


def write_block(
    batch: dict[str, np.ndarray], cfg: EmbedConfig, keys: dict[str, str], staging: Location
) -> dict[str, np.ndarray]:
    """Ray Data task: write the block's embedding rows to `staging/<kind>/<uuid>.parquet`;
    return only each item's status (its error, "" when embedded)."""
    found: dict[str, list[dict]] = {"image": [], "video": []}
    for i in range(len(batch["media_id"])):
        if not batch["error"][i]:
            r = {k: batch[k][i] for k in ("media_id", "sha256", "kind", "meta", "embeddings")}
            found[str(r["kind"])].append(r)
    for kind, build in (("image", image_table), ("video", video_table)):
        if found[kind]:
            width = np.asarray(found[kind][0]["embeddings"]).shape[1]
            table = build(found[kind], cfg, keys[kind], width)
            folder = staging.child(kind)
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


def assemble_part(
    out: Path,
    name: str,
    part: str,
    schema: pa.Schema,
    key: str,
    staged: Location | None,
    current: list[tuple[str, str]],
) -> None:
    """Write `name`'s part `part`: the rows (a row per view for images) of each current
    (media_id, sha256), from the part's earlier rows made with preprocessing `key`, then
    the rows this run staged under `staged`. Both are read a record batch at a time;
    only the keys (sha256, view) are held, so memory does not grow with the vectors.
    An item's rows are kept once per (sha256, view) and copied for every current media
    item with that sha256 (exact duplicates). Row order follows the sources."""
    wanted: dict[str, list[str]] = {}
    for media_id, sha in current:
        wanted.setdefault(sha, []).append(media_id)
    sources = []
    previous = store.table_dir(out, name) / f"{part}.parquet"
    if previous.exists():
        sources.append((pafs.LocalFileSystem(), str(previous)))
    if staged is not None:  # None: this run embedded nothing new
        sources += [(staged.fs, staged.path(f)) for f in staged.files()]
    store.write_batches(out, name, _rows(sources, wanted, key, schema), part, schema)


def _rows(sources, wanted: dict[str, list[str]], key: str, schema: pa.Schema):
    """The batches `assemble_part` writes (see there)."""
    seen: set[tuple[str, int]] = set()
    for fs, path in sources:
        with fs.open_input_file(path) as handle:
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
                    for media_id in wanted[sha]:
                        take.append(i)
                        ids.append(media_id)
                if take:
                    rows = pa.Table.from_batches([batch]).take(pa.array(take, pa.int64()))
                    at = rows.schema.get_field_index("media_id")
                    yield rows.set_column(at, "media_id", pa.array(ids, pa.string()))
