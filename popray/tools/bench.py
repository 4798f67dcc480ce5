"""Benchmarks of single stages (measured, never asserted in tests): `python -m
jobs.benchmark labels|dedup|train ...` (embed: popray/tools/bench_embed.py).

`labels`: time the labelling SQL on a synthetic multi-profile table of N posts (one
image per post, ~25% videos, a follower point every 7 days), and on an ingested OUT.
`dedup`: the near-duplicate search on synthetic clustered embeddings. `train`: the grid
on Ray Tune against the same trainings in a plain loop.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from popray.config import LabelConfig
from popray.io import store
from popray.io.tables import US_PER_DAY, empty, table_schema
from popray.labels import label_tables

EPOCH_2018_US = 1_514_764_800_000_000


def synthetic_tables(n_posts: int, posts_per_profile: int, seed: int = 0) -> dict[str, pa.Table]:
    """Ingest-shaped tables for n_posts posts spread over profiles (no media files)."""
    rng = np.random.default_rng(seed)
    n_profiles = max(1, n_posts // posts_per_profile)
    profile = np.repeat(np.arange(n_profiles), posts_per_profile)[:n_posts]
    if len(profile) < n_posts:
        profile = np.concatenate([profile, np.full(n_posts - len(profile), n_profiles - 1)])
    span_days = 5 * 365
    t_us = EPOCH_2018_US + (rng.uniform(0, span_days, n_posts) * US_PER_DAY).astype(np.int64)
    pid = np.char.add("prof", profile.astype(str))
    post_id = np.char.add("p", np.arange(n_posts).astype(str))
    ts = pa.array(t_us, pa.timestamp("us", tz="UTC"))
    n = pa.array(np.zeros(n_posts, dtype=np.int64))
    posts = pa.table(
        {
            "profile_id": pid,
            "post_id": post_id,
            "published_at": ts,
            "likes": rng.integers(10, 50_000, n_posts),
            "comments": rng.integers(0, 500, n_posts),
            "post_type": np.where(rng.random(n_posts) < 0.25, "video", "image"),
            "caption": pa.nulls(n_posts, pa.string()),
            "n_hashtags": pa.nulls(n_posts, pa.int32()),
            "source_row": n,
        }
    )
    media = pa.table(
        {
            "media_id": np.char.add("m", np.arange(n_posts).astype(str)),
            "post_id": post_id,
            "profile_id": pid,
            "position": np.zeros(n_posts, dtype=np.int32),
            "media_type": posts.column("post_type"),
            "path": np.full(n_posts, "x"),
            "thumbnail_path": pa.nulls(n_posts, pa.string()),
            "sha256": np.full(n_posts, "0"),
            "size_bytes": n,
            "source_row": n,
        }
    )
    days = np.arange(60, span_days, 7)
    f_prof = np.repeat(np.arange(n_profiles), len(days))
    f_days = np.tile(days, n_profiles)
    followers = pa.table(
        {
            "profile_id": np.char.add("prof", f_prof.astype(str)),
            "at": pa.array(
                EPOCH_2018_US + f_days.astype(np.int64) * US_PER_DAY, pa.timestamp("us", tz="UTC")
            ),
            "followers": (1000 + f_days * rng.uniform(5, 50, len(f_days))).astype(np.int64),
            "source_row": pa.array(np.zeros(len(f_days), dtype=np.int64)),
        }
    )
    return {
        "posts": posts.cast(table_schema("posts")),
        "media": media.cast(table_schema("media")),
        "followers": followers.cast(table_schema("followers")),
        "excluded": empty("excluded"),
    }


def bench_labels(n_posts: int, posts_per_profile: int, repeat: int = 3) -> dict:
    """Best-of-`repeat` wall time of the labelling SQL on a synthetic table."""
    tables = synthetic_tables(n_posts, posts_per_profile)
    return _time(lambda: label_tables(**tables, config=LabelConfig()), repeat) | {
        "posts": n_posts,
        "posts_per_profile": posts_per_profile,
    }


def bench_labels_out(out: Path, repeat: int = 3) -> dict:
    """Best-of-`repeat` wall time of labelling an ingested OUT (e.g. the paper-size sample)."""
    tables = {n: store.read_table(out, n) for n in ("posts", "media", "followers", "excluded")}
    return _time(lambda: label_tables(**tables, config=LabelConfig()), repeat) | {
        "posts": tables["posts"].num_rows,
        "media": tables["media"].num_rows,
    }


def _time(fn, repeat: int) -> dict:
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = fn().num_rows
        times.append(time.perf_counter() - start)
    return {"best_s": round(min(times), 3), "label_rows": rows}


def bench_dedup(n_items: int, width: int = 1280, seed: int = 0) -> dict:
    """Seconds to find near-duplicates among n items of one profile and media type
    (synthetic embeddings in 200 clusters; exact distances, computed in chunks)."""
    from popray.config import DedupConfig
    from popray.media.neighbours import DedupItems, dedup_items

    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 0.6, (200, width)).astype(np.float32)
    vectors = centers[rng.integers(0, 200, n_items)]
    vectors += rng.normal(0, 0.05, vectors.shape).astype(np.float32)  # within 5.5: duplicates
    items = DedupItems(
        [f"m{i}" for i in range(n_items)], vectors, np.arange(n_items), np.ones(n_items, bool)
    )
    start = time.perf_counter()
    dups, _ = dedup_items(items, 5.5, DedupConfig())
    return {
        "bench": "dedup",
        "items": n_items,
        "seconds": round(time.perf_counter() - start, 2),
        "groups": len({d["group_id"] for d in dups}),
    }


def bench_train(out: Path, cfg=None, backbone: str = "efficientnet_lite0") -> list[dict]:
    """The default grid on Ray Tune against the same trainings one after another in a
    plain process (same `run_trial`, torch on all cores); then the `ray_train` engine on a
    few trials, for its per-trial cost. `out` must hold labels, embeddings and dedup."""
    import tempfile

    import ray

    from popray.config import GridConfig
    from popray.training.cells import plan_cells, trial_specs
    from popray.training.loading import load_dataset
    from popray.training.trials import run_trial
    from popray.training.tune import run_grid

    cfg = cfg or GridConfig()
    datasets = {k: load_dataset(out, backbone, k) for k in LabelConfig().k}
    cells, _ = plan_cells(datasets, cfg)
    specs = trial_specs(cfg, cells)
    start = time.perf_counter()
    train_s = [run_trial(spec, datasets[spec.k], cfg)[0].summary()["train_s"] for spec in specs]
    plain = time.perf_counter() - start
    rows = [
        {
            "bench": "train_plain_loop",
            "trials": len(specs),
            "seconds": round(plain, 2),
            "train_s_sum": round(sum(train_s), 2),
        }
    ]
    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    for engine, subset in (("in_process", None), ("ray_train", 6)):
        run_cfg = cfg.model_copy(update={"engine": engine})
        picked = cells if subset is None else cells[:1]
        if subset is not None:
            run_cfg = run_cfg.model_copy(update={"seeds": cfg.seeds[:1]})
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            grid = run_grid(Path(tmp), datasets, run_cfg, backbone, cells=picked)
            wall = time.perf_counter() - start
        n = grid.trials.num_rows
        row = {
            "bench": f"train_grid_{engine}",
            "trials": n,
            "seconds": round(wall, 2),
            "train_s_sum": round(float(grid.trials["train_s"].to_numpy().sum()), 2),
            "ray_start_s": round(ray_start, 2),
        }
        if engine == "in_process":
            row["vs_plain_loop"] = round(wall / plain, 3)
            slots = int(ray.cluster_resources()["CPU"] // cfg.cpus_per_trial)
            # wall time each trial held a slot beyond its own training
            row["overhead_per_trial_s"] = round((wall * slots - row["train_s_sum"]) / n, 3)
        else:
            row["seconds_per_trial"] = round(wall / n, 2)
        rows.append(row)
    ray.shutdown()
    return rows
