"""Where embeddings go: rows written by the cluster into a staging folder.

The embedding pipeline (`popray.media.embed_pipeline`) ends in `write_block`, a Ray Data
task that turns each embedded block into rows of `embeddings_image` / `embeddings_video`
and writes them as Parquet files under a staging folder of the run's storage (object
storage on a cluster: the task's own node writes there), one folder per table part. Only
each item's (media_id, sha256, kind, error) comes back to the driver. A table has one
part per (backbone, profile) (`part_of`); `embed_assemble` builds the parts.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from popray.config import EmbedConfig
from popray.io import store
from popray.io.storage import Location
from popray.io.tables import embeddings_image_schema, embeddings_video_schema
from popray.media import decode
from popray.training.models import model_input

STATUS = ("media_id", "sha256", "kind", "error", "device")  # what comes back per item


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
