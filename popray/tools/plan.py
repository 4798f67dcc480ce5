"""Capacity plan: what a run of N profiles costs on a cluster of a given size.

    popray plan --profiles 10000 --posts-per-profile 500 --cpus 512 --gpus 16

A stage model with unit costs measured on real runs: `popray run` writes each stage's
wall time to OUT/timings.json (the train stage split into the driver's own phases and
those where it waits on the cluster); `python -m jobs.benchmark costs --out OUT` turns
that run into unit costs: seconds per input row, per post, per image and video decoded
and embedded, per duplicate-search pair, per trained item). Each stage says where it
runs: a cluster stage divides its core-seconds by the cores (or GPUs) it can use, a
driver stage does not, and the plan totals both apart: the driver's share is what
adding nodes cannot shorten.
"""

from __future__ import annotations

from dataclasses import dataclass

from popray.io.rows import PARALLEL_ROWS
from popray.tools.plan_costs import (
    DRIVER_LINK_MB_S,
    FOLLOWER_ROWS_PER_POST,
    GPU_FRAMES_PER_S,
    IMAGES_PER_POST,
    LABEL_TASK_POSTS,
    METRICS_LARGEST_CELL,
    PART_BYTES,
    POOLED_BIG_TASKS,
    POOLED_MAX_ITEMS,
    VIDEO_VECTORS,
    VIDEOS_PER_POST,
    WALK_FORWARD_LABELLINGS,
    WIDTH,
    UnitCosts,
)


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    how: str  # what bounds it
    where: str = "cluster"  # or "driver": the share more nodes cannot shorten


def plan(
    costs: UnitCosts,
    profiles: int,
    posts_per_profile: float,
    cpus: int,
    gpus: int = 0,
    walk_forward: bool = True,
    pooled_max_items: int | None = POOLED_MAX_ITEMS,
    mix: tuple[float, float] = (IMAGES_PER_POST, VIDEOS_PER_POST),
) -> list[Stage]:
    """Expected wall time of each stage of one full run (nothing reused); `walk_forward`:
    the grid's default second protocol too; `pooled_max_items`: grid.pooled_max_items;
    `mix`: images and videos per post."""
    run = _Run(profiles, posts_per_profile, mix, cpus, gpus, costs.views)
    labels, grid = _walk_forward(costs, run) if walk_forward else ([], [])
    return [
        *_ingest(costs, run),
        Stage("labels", run.posts * costs.label_post_s, "DuckDB", "driver"),
        *labels,
        *_embedding(costs, run),
        *_dedup(costs, run),
        *_training(costs, run),
        *grid,
        _cross_profile(costs, run, pooled_max_items),
        Stage("explain", profiles * costs.profile_s / cpus, f"Grad-CAM actors ({cpus} cores)"),
        Stage(
            "fixed", costs.fixed_s, "Ray start, figures (t-SNE: <= 3,000 items), report", "driver"
        ),
    ]


@dataclass(frozen=True)
class _Run:
    """The run planned (its size) and the cluster it runs on."""

    profiles: int
    posts_per_profile: float
    mix: tuple[float, float]  # images and videos per post
    cpus: int
    gpus: int
    views: int

    @property
    def posts(self) -> float:
        return self.profiles * self.posts_per_profile

    @property
    def images(self) -> float:
        return self.posts * self.mix[0]

    @property
    def videos(self) -> float:
        return self.posts * self.mix[1]

    @property
    def items(self) -> float:
        return self.images + self.videos

    @property
    def vector_mb(self) -> float:
        vectors = self.images * (1 + self.views) + self.videos * VIDEO_VECTORS
        return vectors * WIDTH * 4 / 1e6


def _ingest(costs: UnitCosts, run: _Run) -> list[Stage]:
    files = {"posts": run.posts, "media": run.items}
    files["followers"] = run.posts * FOLLOWER_ROWS_PER_POST
    rows = sum(files.values())
    on_tasks = sum(n for n in files.values() if n >= PARALLEL_ROWS)  # validated by tasks
    return [
        Stage(
            "ingest",
            rows * costs.ingest_parse_row_s
            + (rows - on_tasks) * costs.ingest_validate_row_core_s
            + run.items * costs.ingest_file_driver_s,
            f"parsing, file checks{', validation' if on_tasks < rows else ''}",
            "driver",
        ),
        Stage(
            "ingest: tasks",
            (
                on_tasks * costs.ingest_validate_row_core_s
                + run.items * costs.ingest_hash_file_core_s
            )
            / run.cpus,
            f"validation of files >= {PARALLEL_ROWS:,} rows, sha256 of media ({run.cpus} cores)",
        ),
    ]


def _walk_forward(costs: UnitCosts, run: _Run) -> tuple[list[Stage], list[Stage]]:
    """(its labelling, after the labels; its grid, after the stratified grid)."""
    labels = Stage(
        "walk-forward labels",
        max(run.posts / run.cpus, min(run.posts, LABEL_TASK_POSTS))  # no faster than one task
        * costs.walk_forward_label_post_core_s
        * WALK_FORWARD_LABELLINGS,
        f"{WALK_FORWARD_LABELLINGS} labellings, a Ray task per group of profiles "
        f"({run.cpus} cores)",
    )
    grid = Stage(
        "walk-forward grid",
        run.items * costs.walk_forward_item_core_s / run.cpus,
        f"Tune trials ({run.cpus} cores); at most: windows short of training items are skipped",
    )
    return [labels], [grid]


def _embedding(costs: UnitCosts, run: _Run) -> list[Stage]:
    cpus, gpus, images, videos = run.cpus, run.gpus, run.images, run.videos
    if gpus:
        frames = images * (1 + costs.views) + videos * 16
        decode = (images * costs.decode_image_core_s + videos * costs.decode_video_core_s) / cpus
        forward = frames / (GPU_FRAMES_PER_S * gpus)
        embed = Stage(
            "decode + embed",
            max(decode, forward),
            f"{'CPU decode' if decode >= forward else 'GPU forward'} ({cpus} cores, {gpus} GPUs)",
        )
    else:
        core_s = images * costs.image_core_s + videos * costs.video_core_s
        embed = Stage("decode + embed", core_s / cpus, f"CPU decode + forward ({cpus} cores)")
    return [
        embed,
        Stage(
            "embed: assemble",
            run.vector_mb * costs.assemble_vector_mb_core_s / cpus,
            f"a Ray task per written part of the embedding tables ({cpus} cores)",
        ),
        Stage(
            "embed: parts to OUT",
            run.vector_mb * max(costs.assemble_write_mb_s, PART_BYTES / DRIVER_LINK_MB_S),
            "the driver writing each built part into OUT (its disk, or its network link)",
            "driver",
        ),
    ]


def _send(costs: UnitCosts, run: _Run, name: str) -> Stage:
    return Stage(
        name,
        run.vector_mb * max(costs.send_mb_s, PART_BYTES / DRIVER_LINK_MB_S),
        "the driver sending OUT's embedding files to tasks on other nodes (its network link)",
        "driver",
    )


def _dedup(costs: UnitCosts, run: _Run) -> list[Stage]:
    per_profile = run.posts_per_profile
    pairs = ((per_profile * run.mix[0]) ** 2 + (per_profile * run.mix[1]) ** 2) / 2
    return [
        _send(costs, run, "dedup: send"),
        Stage(
            "dedup: read",
            run.items * costs.dedup_read_item_core_s / run.cpus,
            f"the vectors read from the files' bytes by tasks ({run.cpus} cores)",
        ),
        Stage(
            "dedup",
            run.profiles * (costs.dedup_profile_s + pairs * costs.dedup_pair_s) / run.cpus,
            f"a Ray task per (profile, media type) ({run.cpus} cores)",
        ),
    ]


def _training(costs: UnitCosts, run: _Run) -> list[Stage]:
    items, cpus = run.items, run.cpus
    return [
        _send(costs, run, "train: send"),
        Stage(
            "train: read",
            items * costs.train_read_item_core_s / cpus,
            f"the training data into the object store, by tasks ({cpus} cores)",
        ),
        Stage(
            "train: driver",
            items * costs.train_driver_item_s,
            "cells and unit keys, trial results, metrics",
            "driver",
        ),
        Stage(
            "metrics",
            max(
                items * costs.metrics_item_core_s / cpus,
                items * costs.metrics_item_core_s * METRICS_LARGEST_CELL,
            ),
            "a Ray task per cell: the largest cell's predictions",
        ),
        Stage(
            "grid + final models",
            items * costs.grid_item_core_s / cpus,
            f"Tune trials, final-model tasks ({cpus} cores)",
        ),
    ]


def _cross_profile(costs: UnitCosts, run: _Run, pooled_max_items: int | None) -> Stage:
    cap = pooled_max_items or float("inf")
    items = min(run.images, cap) + min(run.videos, cap)
    cores = min(run.cpus, POOLED_BIG_TASKS)
    return Stage(
        "cross-profile models",
        items * costs.pooled_item_core_s / cores
        + run.profiles * costs.pooled_profile_core_s / run.cpus,
        f"fits on {_count(items)} items ({cores} at once), then a task per profile "
        f"({run.cpus} cores)",
    )


def plan_text(stages: list[Stage]) -> str:
    total = sum(s.seconds for s in stages)
    worst = max(stages, key=lambda s: s.seconds)
    lines = [f"{'stage':<22}{'where':<9}{'wall':>10}  bound by"]
    lines += [f"{s.name:<22}{s.where:<9}{_human(s.seconds):>10}  {s.how}" for s in stages]
    for where in ("driver", "cluster"):
        mine = [s for s in stages if s.where == where]
        slowest = max(mine, key=lambda s: s.seconds).name if mine else "-"
        seconds = sum(s.seconds for s in mine)
        lines.append(f"{where + ' total':<31}{_human(seconds):>10}  slowest: {slowest}")
    lines.append(f"{'total':<31}{_human(total):>10}  bottleneck: {worst.name}")
    return "\n".join(lines)


def _count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,.0f}"


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
