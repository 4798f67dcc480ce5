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

# One row per (media item, label scheme, k). `class` is NULL where the scheme gives the
# item no class (the middle of `residual` with keep_extremes, a first post under
# `likes_moving_average`); such rows are kept for the audit trail, never trained on.
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
        pa.field("scheme", pa.string(), nullable=False),
        pa.field("k", pa.int32(), nullable=False),
        pa.field("score", pa.float64()),  # what the scheme ranks by (PoR, residual, ...)
        pa.field("class", pa.int32()),
        pa.field("window_days", pa.float64()),  # por_rolling only
        pa.field("reference_n", pa.int64()),  # items (or posts) the class is relative to
        # what ranking metrics compare predictions with: score, but for por_rolling the PoR
        # over its window's median PoR (the quantity its classes cut)
        pa.field("rank_score", pa.float64()),
    ]
)

DEFAULT_WIDTH = 1280  # EfficientNet-B0/Lite0; other backbones have their own width
N_FRAMES = 15  # frames sampled per video: the video models' sequence length
US_PER_DAY = 86_400_000_000  # the tables' timestamps are in microseconds
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

# Dedup's units of work, one per (profile, media type): the fingerprint of what its rows
# of `duplicates` and `nn_distances` were computed from (a rerun takes over those rows
# when it matches).
DEDUP_UNITS = pa.schema(
    [
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("backbone", pa.string(), nullable=False),
        pa.field("unit", pa.string(), nullable=False),
    ]
)

# The grid (paper 5.2): what was trained, on which data, and how each run scored.
GRID_KEY = [
    pa.field("scheme", pa.string(), nullable=False),  # the label scheme learnt
    pa.field("backbone", pa.string(), nullable=False),
    pa.field("features", pa.string(), nullable=False),  # 'embedding' | 'embedding+context'
    pa.field("model", pa.string(), nullable=False),
    pa.field("k", pa.int32(), nullable=False),
    # folds, models and metrics are per profile; NULL in `metrics`: all profiles pooled
    pa.field("profile_id", pa.string()),
]

# How a row was validated: 'stratified_kfold' (the paper's folds), 'walk_forward'
# (trained before `cut_at`, evaluated on the window that follows; fold = the window's index)
# or 'profile_grouped' (the cross-profile model, popray/training/pooled.py: trained on other
# profiles, scored on every item of the held-out ones; fold = the GroupKFold fold).
PROTOCOL = pa.field("protocol", pa.string(), nullable=False)
CUT_AT = pa.field("cut_at", TS)  # walk_forward only: training saw what was known before it

# One row per grid trial (model, k, seed, fold) and profile.
TRIALS = pa.schema(
    [
        *GRID_KEY,
        PROTOCOL,
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("fold", pa.int32(), nullable=False),
        CUT_AT,
        pa.field("window_end", TS),  # walk_forward: end of the evaluation window
        pa.field("best_epoch", pa.int32(), nullable=False),
        pa.field("val_accuracy", pa.float64(), nullable=False),
        pa.field("n_train", pa.int64(), nullable=False),  # own media type, training folds
        pa.field("n_extra", pa.int64(), nullable=False),  # other media type, training only
        pa.field("n_val", pa.int64(), nullable=False),
        pa.field("epochs", pa.int32(), nullable=False),
        pa.field("train_s", pa.float64(), nullable=False),
        pa.field("finished_at", TS, nullable=False),
        pa.field("engine", pa.string(), nullable=False),
        pa.field("trial", pa.string(), nullable=False),  # its result: <grid>/*.results/<trial>
        pa.field("grid", pa.string(), nullable=False),  # the grid (Tune experiment) it ran in
        # popray.training.units: the fingerprint of the (profile, k)'s items, labels and options; a
        # later run takes the row over while it is unchanged
        pa.field("unit", pa.string(), nullable=False),
    ]
)

# Each validation item's prediction in each (protocol, model, k, seed): every item exactly
# once per seed, in the fold (or walk-forward window) that held it out. `label`: its class
# (walk_forward: as known at the end of its window).
PREDICTIONS = pa.schema(
    [
        *GRID_KEY,
        PROTOCOL,
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("fold", pa.int32(), nullable=False),
        CUT_AT,
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("pred", pa.int32(), nullable=False),
        pa.field("proba", pa.list_(pa.float32()), nullable=False),
    ]
)

_MATRIX = pa.list_(pa.list_(pa.float64()))
# One row per (protocol, model, k, profile): a seed's score pools its folds (or windows);
# mean and std (ddof 0) over seeds.
METRICS = pa.schema(
    [
        *GRID_KEY,
        PROTOCOL,
        pa.field("validated_on", pa.string(), nullable=False),  # 'image' | 'video'
        pa.field("n_items", pa.int64(), nullable=False),
        pa.field("n_seeds", pa.int32(), nullable=False),
        pa.field("accuracy_mean", pa.float64(), nullable=False),
        pa.field("accuracy_std", pa.float64(), nullable=False),
        pa.field("top2_mean", pa.float64()),  # k >= 3 only
        pa.field("top2_std", pa.float64()),
        pa.field("macro_f1_mean", pa.float64(), nullable=False),
        pa.field("macro_f1_std", pa.float64(), nullable=False),
        pa.field("majority_accuracy", pa.float64(), nullable=False),  # always the commonest class
        # the class of the profile's previous item of the same type (majority when none)
        pa.field("recent_accuracy", pa.float64()),
        # one-sided exact binomial test of the mean accuracy against the best baseline
        pa.field("p_value", pa.float64(), nullable=False),
        pa.field("ece_mean", pa.float64(), nullable=False),  # expected calibration error, 10 bins
        pa.field("confusion_mean", _MATRIX, nullable=False),  # rows true, row-normalised
        pa.field("confusion_std", _MATRIX, nullable=False),
        pa.field("paper_accuracy", pa.float64()),  # Viola et al. 2021, for comparison
        # ranking (popray/training/evaluate.py): Spearman's rho of the expected class against
        # labels.rank_score, within each profile; mean and std over seeds, and the one-
        # sided p-value for rho > 0 of the seed-averaged expected class
        pa.field("spearman_mean", pa.float64()),
        pa.field("spearman_std", pa.float64()),
        pa.field("spearman_p_value", pa.float64()),
        # of each profile's top fifth by expected class, the share in the top class
        pa.field("top20_precision_mean", pa.float64()),
        pa.field("top20_precision_std", pa.float64()),
        pa.field("top_class_share", pa.float64()),  # what a random ranking gets
        # the recent-PoR baseline (the previous item's rank_score), on the same items
        pa.field("recent_spearman", pa.float64()),
        pa.field("recent_top20_precision", pa.float64()),
    ]
)

# The final models: each (model, k) trained once on all the data, saved for prediction.
MODELS = pa.schema(
    [
        *GRID_KEY,
        pa.field("epochs", pa.int32(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("n_images", pa.int64(), nullable=False),
        pa.field("n_videos", pa.int64(), nullable=False),
        pa.field("snapshot", pa.string(), nullable=False),  # sha256 of the items it saw
        pa.field("path", pa.string(), nullable=False),  # relative to OUT
        pa.field("created_at", TS, nullable=False),
    ]
)

# The cross-profile model against each profile's own (popray/training/pooled.py): per profile,
# its latest fifth of items is a test set; its own model trained on the `history` items
# just before it, the cross-profile model of the fold that never saw the profile, both
# scored on the same test items.
CROSS_PROFILE = pa.schema(
    [
        *GRID_KEY,
        pa.field("group_fold", pa.int32(), nullable=False),  # the fold holding it out
        pa.field("history", pa.int64(), nullable=False),  # items the own model trained on
        pa.field("all_history", pa.bool_(), nullable=False),  # every item before the test
        pa.field("n_test", pa.int64(), nullable=False),
        pa.field("own_accuracy", pa.float64(), nullable=False),
        pa.field("pooled_accuracy", pa.float64(), nullable=False),
        pa.field("own_spearman", pa.float64()),  # None: a constant ranking
        pa.field("pooled_spearman", pa.float64()),
        pa.field("own_top20_precision", pa.float64()),
        pa.field("pooled_top20_precision", pa.float64()),
    ]
)

# What the cross-profile models were trained on (popray/training/pooled_keep.py), one row per
# (profile, k): the profile's unit and items then, the models' options and training time.
# A run keeps the published models while few items changed since.
POOLED_UNITS = pa.schema(
    [
        pa.field("profile_id", pa.string(), nullable=False),
        pa.field("k", pa.int32(), nullable=False),
        pa.field("unit", pa.string(), nullable=False),
        pa.field("n_items", pa.int64(), nullable=False),
        pa.field("options", pa.string(), nullable=False),
        pa.field("trained_at", TS, nullable=False),
    ]
)

# Grad-CAM heatmaps of the image model (popray explain): a sample of each class from the
# export (media_id, label set) and any file passed in (media_id null).
EXPLANATIONS = pa.schema(
    [
        pa.field("k", pa.int32(), nullable=False),
        pa.field("model_path", pa.string(), nullable=False),
        pa.field("profile_id", pa.string(), nullable=False),  # whose model
        # why it was explained: 'class_sample', 'top' / 'bottom' (the profile's highest /
        # lowest out-of-fold scores), 'file' (--media)
        pa.field("picked", pa.string(), nullable=False),
        pa.field("score", pa.float64()),  # top / bottom: the out-of-fold score, in [0, 1]
        pa.field("media_id", pa.string()),
        pa.field("label", pa.int32()),
        pa.field("file", pa.string(), nullable=False),
        pa.field("pred", pa.int32()),
        pa.field("proba", pa.list_(pa.float32())),
        pa.field("path", pa.string()),  # the heatmap, relative to OUT
        pa.field("error", pa.string()),  # why a file could not be explained
        # what the row depends on (the model, the images picked, the weights): a later run
        # takes the profile's rows over while it is unchanged; none for --media files
        pa.field("unit", pa.string()),
    ]
)

# The latest ranking of candidate media (popray predict): best first; files that could
# not be scored have no rank and say why in `error`.
PREDICTIONS_NEW = pa.schema(
    [
        pa.field("rank", pa.int32()),
        pa.field("file", pa.string(), nullable=False),
        pa.field("media_type", pa.string()),
        pa.field("profile_id", pa.string()),  # whose models scored it ("*": cross-profile)
        pa.field("for_profile", pa.string()),  # the profile asked for (--profile)
        pa.field("model", pa.string()),
        pa.field("k", pa.int32()),
        pa.field("pred", pa.int32()),
        pa.field("proba", pa.list_(pa.float32())),
        pa.field("score", pa.float64()),  # expected class / (k - 1), in [0, 1]
        pa.field("gradcam", pa.string()),  # heatmap (images), relative to OUT
        pa.field("error", pa.string()),
        pa.field("predicted_at", TS, nullable=False),
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
    "dedup_units": DEDUP_UNITS,
    "trials": TRIALS,
    "predictions": PREDICTIONS,
    "metrics": METRICS,
    "models": MODELS,
    "cross_profile": CROSS_PROFILE,
    "pooled_units": POOLED_UNITS,
    "explanations": EXPLANATIONS,
    "predictions_new": PREDICTIONS_NEW,
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
