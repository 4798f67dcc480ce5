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


def image_rows(r: dict, cfg: EmbedConfig, key: str) -> list[dict]:
    """One row per view of an embedded image (view 0: the image itself)."""
    return [
        {
            "media_id": r["media_id"],
            "sha256": r["sha256"],
            "backbone": cfg.backbone,
            "preprocess": key,
            "view": v,
            "embedding": e,
        }
        for v, e in enumerate(np.asarray(r["embeddings"], np.float32))
    ]


def video_row(r: dict, cfg: EmbedConfig, key: str) -> dict:
    """An embedded video's row: its 15 frames, their max over time, and the thumbnail's."""
    emb = np.asarray(r["embeddings"], np.float32)
    meta = json.loads(r["meta"])
    frames = emb[: decode.N_FRAMES]
    thumb = emb[decode.N_FRAMES] if meta["thumbnail_source"] == "file" else frames[0]
    return {
        "media_id": r["media_id"],
        "sha256": r["sha256"],
        "backbone": cfg.backbone,
        "preprocess": key,
        "duration_s": meta["duration_s"],
        "fps": meta["fps"],
        "n_frames_total": meta["n_frames_total"],
        "frame_times_s": meta["frame_times_s"],
        "frames": list(frames),
        "pooled": frames.max(axis=0),
        "thumbnail": thumb,
        "thumbnail_source": meta["thumbnail_source"],
    }


def write_block(
    batch: dict[str, np.ndarray], cfg: EmbedConfig, keys: dict[str, str], staging: Location
) -> dict[str, np.ndarray]:
    """Ray Data task: write the block's embedding rows to `staging/<kind>/<uuid>.parquet`;
    return only each item's status (its error, "" when embedded)."""
    rows: dict[str, list[dict]] = {"image": [], "video": []}
    width = 0
    for i in range(len(batch["media_id"])):
        r = {k: batch[k][i] for k in ("media_id", "sha256", "kind", "meta", "error", "embeddings")}
        if r["error"]:
            continue
        width = np.asarray(r["embeddings"]).shape[1]
        if r["kind"] == "image":
            rows["image"] += image_rows(r, cfg, keys["image"])
        else:
            rows["video"].append(video_row(r, cfg, keys["video"]))
    for kind, found in rows.items():
        if found:
            folder = staging.child(kind)
            folder.fs.create_dir(folder.path(), recursive=True)
            table = pa.Table.from_pylist(found, schema=schemas(width)[kind])
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
