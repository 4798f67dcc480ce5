"""Benchmark: does the per-profile cost stay flat as profiles are added?

    python -m jobs.benchmark profiles --profiles 1 10 50 [--posts 60]

For each profile count, an OUT is built from synthetic ingest tables (bench.synthetic_tables:
one media item per post, ~25% videos, weekly follower points) and synthetic embeddings
(Gaussian, with the post's log-likes planted along one direction, so the heads have
something to learn); then the real stages run on it: `run_label`, `run_dedup` and
`run_train` (the grid on Ray Tune, then the final models). Decoding and embedding are
left out: they are a map over media items (Ray Data), whose cost per item does not
depend on how many profiles the items belong to (see `jobs.benchmark embed`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from popray import store
from popray.bench import synthetic_tables
from popray.config import DedupConfig, GridConfig, LabelConfig, TrainConfig
from popray.tables import N_FRAMES, embeddings_image_schema, embeddings_video_schema

BACKBONE = "synthetic"
WIDTH = 1280


def synthetic_out(out: Path, profiles: int, posts: int, views: int = 2, seed: int = 0) -> None:
    """Write ingest tables and embeddings of `profiles` synthetic profiles under `out`."""
    tables = synthetic_tables(profiles * posts, posts, seed)
    for name, table in tables.items():
        store.write_table(out, name, table)
    rng = np.random.default_rng(seed)
    direction = rng.normal(0, 1, WIDTH).astype(np.float32)
    media, posts_ = tables["media"], tables["posts"]
    likes = np.log1p(posts_["likes"].to_numpy().astype(np.float64))
    signal = ((likes - likes.mean()) / likes.std()).astype(np.float32)
    kinds = media["media_type"].to_pylist()
    shas = [f"{i:064x}" for i in range(media.num_rows)]
    image_rows = [i for i, kind in enumerate(kinds) if kind == "image"]
    video_rows = [i for i, kind in enumerate(kinds) if kind == "video"]

    def vectors(rows: list[int], extra: tuple[int, ...] = ()) -> np.ndarray:
        noise = rng.normal(0, 1, (len(rows), *extra, WIDTH)).astype(np.float32)
        shift = signal[rows].reshape(-1, *(1,) * len(extra), 1) * direction
        return noise + shift

    ids = media["media_id"].to_pylist()
    img = vectors(image_rows, (1 + views,))
    store.write_table(
        out,
        "embeddings_image",
        pa.table(
            {
                "media_id": [ids[i] for i in image_rows for _ in range(1 + views)],
                "sha256": [shas[i] for i in image_rows for _ in range(1 + views)],
                "backbone": [BACKBONE] * len(image_rows) * (1 + views),
                "preprocess": ["synthetic"] * len(image_rows) * (1 + views),
                "view": np.tile(np.arange(1 + views, dtype=np.int32), len(image_rows)),
                "embedding": _fixed(img.reshape(-1, WIDTH)),
            }
        ).cast(embeddings_image_schema(WIDTH)),
        part=BACKBONE,
    )
    frames = vectors(video_rows, (N_FRAMES,))
    n = len(video_rows)
    store.write_table(
        out,
        "embeddings_video",
        pa.table(
            {
                "media_id": [ids[i] for i in video_rows],
                "sha256": [shas[i] for i in video_rows],
                "backbone": [BACKBONE] * n,
                "preprocess": ["synthetic"] * n,
                "duration_s": np.full(n, 15.0),
                "fps": np.full(n, 30.0),
                "n_frames_total": np.full(n, 450),
                "frame_times_s": _fixed(np.tile(np.arange(N_FRAMES, dtype=np.float32), (n, 1))),
                "frames": _fixed(frames),
                "pooled": _fixed(frames.max(axis=1)),
                "thumbnail": _fixed(frames[:, 0]),
                "thumbnail_source": ["first_frame"] * n,
            }
        ).cast(embeddings_video_schema(WIDTH)),
        part=BACKBONE,
    )
    store.refresh_views(out)


def _fixed(values: np.ndarray) -> pa.Array:
    """A (rows, *dims) float32 array as nested fixed-size lists (no Python lists)."""
    array: pa.Array = pa.array(values.reshape(-1).astype(np.float32))
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def bench_profiles(counts: list[int], posts: int, grid: GridConfig | None = None) -> list[dict]:
    """Wall time of label, dedup and train for each profile count, and per profile."""
    import logging
    import os

    import ray

    logging.getLogger("ray.tune").setLevel(logging.WARNING)  # as `popray train` does
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    grid = grid or GridConfig(seeds=[0], train=TrainConfig(epochs=15))
    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    rows = []
    for profiles in counts:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(_one(Path(tmp), profiles, posts, grid) | {"ray_start_s": ray_start})
    ray.shutdown()
    base = rows[0]["per_profile_s"]
    for row in rows:
        row["per_profile_vs_first"] = round(row["per_profile_s"] / base, 3)
    return rows


def _one(out: Path, profiles: int, posts: int, grid: GridConfig) -> dict:
    from popray.dedup import run_dedup
    from popray.grid import run_train
    from popray.labels import run_label

    synthetic_out(out, profiles, posts)
    labels = LabelConfig()
    times = {}
    start = time.perf_counter()
    run_label(out, labels)
    times["label_s"] = time.perf_counter() - start
    start = time.perf_counter()
    run_dedup(out, DedupConfig(threshold=1.0), BACKBONE)
    times["dedup_s"] = time.perf_counter() - start
    start = time.perf_counter()
    report = run_train(out, grid, labels, BACKBONE)
    times["train_s"] = time.perf_counter() - start
    total = sum(times.values())
    return {
        "bench": "profiles",
        "profiles": profiles,
        "posts_per_profile": posts,
        "tune_trials": len(set(report.grid.trials["trial"].to_pylist())),
        "profile_trials": report.grid.trials.num_rows,
        "final_models": 0 if report.models is None else report.models.num_rows,
        **{name: round(value, 2) for name, value in times.items()},
        "total_s": round(total, 2),
        "per_profile_s": round(total / profiles, 3),
        "train_s_per_profile_trial": round(times["train_s"] / report.grid.trials.num_rows, 3),
    }
