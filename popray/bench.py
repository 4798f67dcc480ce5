"""Benchmarks (measured, never asserted in tests): `python -m jobs.benchmark labels ...`.

`labels`: time the labelling SQL on a synthetic multi-profile table of N posts (one
image per post, ~25% videos, a follower point every 7 days), and on an ingested OUT.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from popray import store
from popray.config import LabelConfig
from popray.labels import label_tables
from popray.tables import SCHEMAS

US_PER_DAY = 86_400_000_000
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
        "posts": posts.cast(SCHEMAS["posts"]),
        "media": media.cast(SCHEMAS["media"]),
        "followers": followers.cast(SCHEMAS["followers"]),
        "excluded": SCHEMAS["excluded"].empty_table(),
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
