"""Arrow schemas of every output table popray writes under `OUT/tables/<name>/`.

These are the contracts analysts query (through `OUT/popray.duckdb` or the Parquet files);
`schemas/tables/<name>.json` is generated from them and a test keeps the two in sync.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

POSTS = pa.schema(
    [
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("published_at", TS, nullable=False),
        pa.field("likes", pa.int64(), nullable=False),
        pa.field("comments", pa.int64(), nullable=False),
        pa.field("post_type", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("n_hashtags", pa.int32()),
        pa.field("source_row", pa.int64(), nullable=False),
    ]
)

MEDIA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("thumbnail_path", pa.string()),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
    ]
)

FOLLOWERS = pa.schema(
    [
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("at", TS, nullable=False),
        pa.field("followers", pa.int64(), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
    ]
)

EXCLUDED = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
    ]
)

# Every row popray could not use, with where it came from and why.
QUARANTINE = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("row", pa.int64()),
        pa.field("field", pa.string()),
        pa.field("value", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("profile_id", pa.string()),
        pa.field("post_id", pa.string()),
        pa.field("media_id", pa.string()),
        pa.field("path", pa.string()),
        pa.field("record", pa.string()),
    ]
)

LABELS = pa.schema(
    [
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("post_type", pa.string(), nullable=False),
        pa.field("published_at", TS, nullable=False),
        pa.field("followers_est", pa.float64(), nullable=False),
        pa.field("followers_extrapolated", pa.bool_(), nullable=False),
        pa.field("por", pa.float64(), nullable=False),
        pa.field("k", pa.int32(), nullable=False),
        pa.field("window_days", pa.float64(), nullable=False),
        pa.field("window_n", pa.int64(), nullable=False),
        pa.field("class_global", pa.int32(), nullable=False),
        pa.field("class_rolling", pa.int32(), nullable=False),
    ]
)

DEFAULT_WIDTH = 1280  # EfficientNet-B0/Lite0; other backbones have their own width
N_FRAMES = 15
# What an embedding is keyed by: the item, its bytes, the model and the preprocessing.
EMBEDDING_KEY = [
    pa.field("media_id", pa.string(), nullable=False),
    pa.field("sha256", pa.string(), nullable=False),
    pa.field("backbone", pa.string(), nullable=False),
    pa.field("preprocess", pa.string(), nullable=False),
]


def embeddings_image_schema(width: int = DEFAULT_WIDTH) -> pa.Schema:
    """One row per (image, view): view 0 is the image itself, 1..V augmented views."""
    return pa.schema(
        [
            *EMBEDDING_KEY,
            pa.field("view", pa.int32(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), width), nullable=False),
        ]
    )


def embeddings_video_schema(width: int = DEFAULT_WIDTH) -> pa.Schema:
    """One row per video: 15 sampled frame embeddings, their max, and the thumbnail's."""
    vec = pa.list_(pa.float32(), width)
    return pa.schema(
        [
            *EMBEDDING_KEY,
            pa.field("duration_s", pa.float64(), nullable=False),
            pa.field("fps", pa.float64(), nullable=False),
            pa.field("n_frames_total", pa.int64(), nullable=False),
            pa.field("frame_times_s", pa.list_(pa.float32(), N_FRAMES), nullable=False),
            pa.field("frames", pa.list_(vec, N_FRAMES), nullable=False),
            pa.field("pooled", vec, nullable=False),
            pa.field("thumbnail", vec, nullable=False),
            pa.field("thumbnail_source", pa.string(), nullable=False),
        ]
    )


# Near-duplicate groups (paper 4.1): one row per member of a group of two or more.
DUPLICATES = pa.schema(
    [
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("backbone", pa.string(), nullable=False),
        pa.field("group_id", pa.int64(), nullable=False),
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("duplicate_of", pa.string(), nullable=False),  # the kept member
        pa.field("distance", pa.float64(), nullable=False),  # to the kept member
        pa.field("kept", pa.bool_(), nullable=False),
    ]
)

# Each item's nearest neighbour (same profile and media type): the paper picks the
# duplicate threshold from the histogram of these distances (Fig. 3a).
NN_DISTANCES = pa.schema(
    [
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("backbone", pa.string(), nullable=False),
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("nn_media_id", pa.string()),
        pa.field("distance", pa.float64()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "posts": POSTS,
    "media": MEDIA,
    "followers": FOLLOWERS,
    "excluded": EXCLUDED,
    "quarantine": QUARANTINE,
    "labels": LABELS,
    "embeddings_image": embeddings_image_schema(),
    "embeddings_video": embeddings_video_schema(),
    "duplicates": DUPLICATES,
    "nn_distances": NN_DISTANCES,
}
# Tables whose schema never varies (embeddings follow the backbone's width).
FIXED_SCHEMA = frozenset(SCHEMAS) - {"embeddings_image", "embeddings_video"}


def empty(name: str) -> pa.Table:
    """An empty table with the named output schema."""
    return SCHEMAS[name].empty_table()


def schema_as_json(schema: pa.Schema) -> dict:
    """A language-neutral description of an Arrow schema (name, type, nullable)."""
    return {
        "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
    }
