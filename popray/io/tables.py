"""Arrow schemas of every output table popray writes under `OUT/tables/<name>/`.

These are the contracts analysts query (through `OUT/popray.duckdb` or the Parquet files).
Each table's columns, types and meaning are declared once, as data, in
`popray/io/table_schemas/<name>.json` (package data, so a `ray job submit --working-dir`
upload carries them); the embedding tables follow the backbone's width and are built
here. `schemas/tables/<name>.json` is the published copy of all of them, and a test keeps
it in sync.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
DEFAULT_WIDTH = 1280  # EfficientNet-B0/Lite0; other backbones have their own width
N_FRAMES = 15  # frames sampled per video: the video models' sequence length
US_PER_DAY = 86_400_000_000  # the tables' timestamps are in microseconds

SCHEMA_DIR = Path(__file__).with_name("table_schemas")
# Every output table, in the order the stages write them.
NAMES = (
    "posts",
    "media",
    "followers",
    "excluded",
    "quarantine",
    "labels",
    "embeddings_image",
    "embeddings_video",
    "duplicates",
    "nn_distances",
    "dedup_units",
    "trials",
    "predictions",
    "metrics",
    "models",
    "cross_profile",
    "pooled_units",
    "explanations",
    "predictions_new",
)
# Tables whose schema never varies, each declared in SCHEMA_DIR; the embeddings follow
# the backbone's width.
FIXED_SCHEMA = tuple(n for n in NAMES if not n.startswith("embeddings_"))

# The type names the declarations use (Arrow's own spelling, as `str(type)` gives it).
_SCALAR = {
    str(t): t
    for t in (pa.string(), pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.bool_(), TS)
}
# What an embedding is keyed by: the item, its bytes, the model and the preprocessing.
EMBEDDING_KEY = [
    pa.field(name, pa.string(), nullable=False)
    for name in ("media_id", "sha256", "backbone", "preprocess")
]


def _arrow_type(text: str) -> pa.DataType:
    if text.startswith("list<item: ") and text.endswith(">"):
        return pa.list_(_arrow_type(text[len("list<item: ") : -1]))
    try:
        return _SCALAR[text]
    except KeyError:
        raise ValueError(f"unknown column type {text!r} (known: {sorted(_SCALAR)})") from None


def _declared(name: str) -> pa.Schema:
    path = SCHEMA_DIR / f"{name}.json"
    fields = json.loads(path.read_text(encoding="utf-8"))["fields"]
    try:
        return pa.schema(
            [pa.field(f["name"], _arrow_type(f["type"]), nullable=f["nullable"]) for f in fields]
        )
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: bad column declaration: {e}") from None


def embeddings_image_schema(width: int = DEFAULT_WIDTH) -> pa.Schema:
    """One row per (image, view): view 0 is the image itself, 1..V augmented views."""
    vec = pa.list_(pa.float32(), width)
    return pa.schema([*EMBEDDING_KEY, ("view", pa.int32(), False), ("embedding", vec, False)])


def embeddings_video_schema(width: int = DEFAULT_WIDTH) -> pa.Schema:
    """One row per video: 15 sampled frame embeddings, their max, and the thumbnail's."""
    vec = pa.list_(pa.float32(), width)
    columns = {
        "duration_s": pa.float64(),
        "fps": pa.float64(),
        "n_frames_total": pa.int64(),
        "frame_times_s": pa.list_(pa.float32(), N_FRAMES),
        "frames": pa.list_(vec, N_FRAMES),
        "pooled": vec,  # the max over the frames
        "thumbnail": vec,
        "thumbnail_source": pa.string(),  # 'file' | 'first_frame'
    }
    return pa.schema(
        [*EMBEDDING_KEY, *(pa.field(n, t, nullable=False) for n, t in columns.items())]
    )


@functools.cache
def table_schema(name: str) -> pa.Schema:
    """The named output table's Arrow schema (embeddings: the default backbone's width)."""
    if name == "embeddings_image":
        return embeddings_image_schema()
    if name == "embeddings_video":
        return embeddings_video_schema()
    if name not in FIXED_SCHEMA:
        raise ValueError(f"unknown output table {name!r}; known: {sorted(NAMES)}")
    return _declared(name)


def empty(name: str) -> pa.Table:
    """An empty table with the named output schema."""
    return table_schema(name).empty_table()


def schema_as_json(table: pa.Schema) -> dict:
    """A language-neutral description of an Arrow schema (name, type, nullable)."""
    return {
        "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in table]
    }


def conform(table: pa.Table, name: str) -> pa.Table:
    """`table`'s columns of the named output table, in its order and types (extra
    columns dropped)."""
    target = table_schema(name)
    return table.select(target.names).cast(target)
