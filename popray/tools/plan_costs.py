"""The capacity plan's unit costs (`UnitCosts`): seconds per unit of work, measured on
real runs, and `costs_from_run`, which reads them off a finished run (its manifest,
OUT/timings.json, and its tables).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from popray.config import GridConfig, WalkForwardConfig
from popray.errors import ConfigError
from popray.records import RunManifest

# What a profile's posts hold, on average (the sample generator's mix, close to the
# paper's profile): images and videos per post, follower points per post.
IMAGES_PER_POST = 0.88
VIDEOS_PER_POST = 0.29
FOLLOWER_ROWS_PER_POST = 0.57
# the export labelled at each walk-forward cut and once settled after each window
WALK_FORWARD_LABELLINGS = 2 * WalkForwardConfig().cuts
LABEL_TASK_POSTS = 20_000  # timelines.POSTS_PER_TASK (not imported: it would load torch)
GPU_FRAMES_PER_S = 10_000  # lite0 forward, bf16, one H100 (tools/README.md: 10,300-15,900)
WIDTH = 1280  # the embedding's floats (lite0, B0)
VIDEO_VECTORS = 17  # a video's row: 15 frames, their max, the thumbnail
DRIVER_LINK_MB_S = 1250.0  # the driver node's network: 10 GbE (assumed, not measured)
PART_BYTES = 0.91  # a part's file per byte of its vectors (zstd: 233.1 MB for 256 MB)


POOLED_MAX_ITEMS = GridConfig.model_fields["pooled_max_items"].default  # no model built at import
POOLED_BIG_TASKS = 24  # cross-profile fits on every item: 2 models x 2 k x (5 folds + final)
# grid.TrainReport.phases: the read of the training data (tasks on the driver's node,
# where OUT's files are), and the driver's own work
READ_PHASE = "load"
DRIVER_PHASES = ("plan", "collect", "metrics")
METRICS_TASKS_PHASE = "metrics_tasks"  # the driver waiting on the cells' scoring tasks
# The metrics are scored a task per cell (popray/training/metrics_parallel.py): on a cluster with
# a core for each, the largest cell sets the wall time; its share of the predictions on
# 1,000 synthetic profiles, one protocol (more protocols: smaller cells)
METRICS_LARGEST_CELL = 0.25


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per unit of work; `*_core_s` on one CPU core of the cluster, the rest
    wall time of the driver. `source` says which runs they were measured on."""

    # ingest, per input row: the driver parses every file; a file of PARALLEL_ROWS rows or
    # more is validated by tasks (posts.csv of 200,000 rows: parse 3.3 + pickling 0.6 us,
    # pydantic validation 56 us a row); per media file: two batched file-info calls in the
    # driver (7.3 us each, local disk) and its sha256 (0.35 ms of a core: 57,000 files of
    # the 137,000-row export, 10 s on 2 cores)
    ingest_parse_row_s: float = 4.0e-6
    ingest_validate_row_core_s: float = 5.6e-5
    ingest_file_driver_s: float = 1.5e-5
    ingest_hash_file_core_s: float = 3.5e-4
    label_post_s: float = 5e-6  # DuckDB, 1,000,000-post benchmark (4.2-6.5 s)
    # core-s per post and labelling of the walk-forward tasks (timelines.build_timelines:
    # 4.8 s for 1,000 synthetic profiles x 40 posts, 12 labellings, 2 tasks on 2 cores,
    # the driver's slicing and merging included; 2026-12-05)
    walk_forward_label_post_core_s: float = 2.0e-5
    image_core_s: float = 0.34  # decode + 1 + views forward passes, CPU
    video_core_s: float = 1.08  # sample 15 frames + 16 forward passes, CPU
    decode_image_core_s: float = 0.0044  # decode alone (the GPU plan's CPU side): 229/s
    decode_video_core_s: float = 0.60  # 15 frames of a phone video, one core
    # the embedding tables' parts built by Ray tasks (embed_assemble.assemble on a cluster),
    # core-s per MB of float32 vectors: `jobs.benchmark assemble --tasks --items 10000
    # --like` a 200-profile run's vectors, 7.09 and 8.94 core-s for 256 MB (2026-12-06;
    # Parquet zstd, two thirds writing)
    assemble_vector_mb_core_s: float = 0.035
    # the driver getting each built part's file and writing it into OUT, s per MB of
    # vectors: the same benchmark's writing alone, 0.155 s for 256 MB; on a cluster its
    # network link bounds it (DRIVER_LINK_MB_S)
    assemble_write_mb_s: float = 6.1e-4
    dedup_pair_s: float = 1.2e-8  # core-s per pair, 100k-item benchmark: 121 s
    # The train and dedup costs below: `jobs.benchmark profiles` at 1,000 profiles x 40
    # posts (2 cores, 2026-12-04), its 1 seed scaled to the default 3 (folds, windows,
    # collect and metrics x 3; final models and cross-profile models x 1).
    dedup_profile_s: float = 0.012  # core-s per profile: a task per (profile, media type)
    # dedup's read of the vectors by tasks (embedding_read._read), core-s per item: on the
    # benchmark's one node, 13.8 s at 1,000 profiles less its dedup tasks' 1,000 x 0.012
    # / 2 s, x 2 cores (2026-12-05, at 250ab55)
    dedup_read_item_core_s: float = 3.9e-4
    # the grid on long histories: `jobs.benchmark profiles` at 10 profiles x 400 posts,
    # 15 epochs (2026-12-06, late), two runs: grid 210.6 and 216.1 s x 3 seeds + final
    # models 8.9 and 8.2 s, x 2 cores / 4,000 items, their mean; split between the
    # protocols as the trials' own training time there (walk-forward 468.2 : folds 286.0
    # core-s). Was 303.1 s and 14.2 s (0.173 and 0.289; 279.1 s in a run between the two)
    # before the GRUs trained on CPU with popray.training.gru's recurrence (0.73x); 475.1 s and
    # 21.1 s (0.303 and 0.420, split as one profile's trials) before their input dropout
    # drew one mask per sequence and Adam ran fused (0.64x); and (111.4 s x 3 + 6.3 s) x 2 /
    # 40,000 at 1,000 profiles x 40 posts (0.0082 and 0.0088): there most video cells
    # cannot fill their folds and most walk-forward windows are short of training items,
    # so the costliest trials (the GRU models, image_to_video's images as 15-frame
    # sequences, every window trained twice on the history before it) mostly do not run;
    # at the same 4,000 items, 100 profiles x 40 posts trained their grid in 37.4 s, 12.7x
    # less
    grid_item_core_s: float = 0.126  # the paper's folds + final models, per item
    walk_forward_item_core_s: float = 0.199  # walk-forward trials, per item
    # the training data read into the object store by tasks (embedding_read._read), core-s per
    # item: on the benchmark's one node 6.95 s per 40,000 items (READ_PHASE; 250ab55),
    # x 2 cores; 13.9 s before both ks shared one read
    train_read_item_core_s: float = 3.5e-4
    # the driver sending OUT's part files to read tasks on other nodes (embedding_read._read on
    # a cluster, once for dedup, once for train): reading each file and putting its
    # bytes in the object store, s per MB of vectors: `jobs.benchmark send` on the
    # 200-profile run (0.126 s for 139 MB) and on 100 parts (0.211 s for 256 MB), the
    # object store's pages mapped (2026-12-06); its network link bounds it too
    send_mb_s: float = 8.6e-4
    # plan ~1.0 s (the 6.1 s measured at 250ab55 less the walk-forward labellings, now
    # tasks: 6.3 s alone) + 3 x (collect 0.52 s + metrics 0.80 s), per 40,000 items, was
    # 1.24e-4; x 0.66 since the metrics are scored in tasks and the trial results read 16
    # at a time (the same benchmark on 2026-12-06, at 647963d against e00fc84: plan 1.05
    # -> 0.97 s, collect 1.07 -> 0.81 s, the driver's metrics 1.45 -> 0.76 s); was 8.18e-5,
    # x 0.49 since the walk-forward windows are checked as arrays, each trial writes its
    # own rows of `trials` and `predictions` as Arrow files, and the baselines go to the
    # metrics tasks as tables (2026-12-06, the driver's phases timed on the same
    # 1,000-profile, 3-seed grid, three runs each, alternating: 3.85 s against 7.83 s)
    train_driver_item_s: float = 4.0e-5  # the driver's own train phases (DRIVER_PHASES)
    # the cells' metrics scored in tasks (METRICS_TASKS_PHASE), core-s per item: 2.54 s of
    # waiting on 2 cores for 1 seed at e00fc84, x 3 seeds, / 1.81 (that day's machine ran
    # the driver's metrics 1.81x slower than the plan's base day); workers' start included
    metrics_item_core_s: float = 2.1e-4
    # the cross-profile models, 277.4 s at 1,000 profiles (2026-12-05), split as measured
    # for k = 2 on the same data (115 of 160 s in the fits on every item, the rest in the
    # profiles' own history models; that split measured beside other work on the cores)
    pooled_item_core_s: float = 0.0100  # per item a pooled fit trains on (under the cap)
    pooled_profile_core_s: float = 0.155  # per profile: its own models on h = 10, 20, ...
    profile_s: float = 1.45  # core-s per profile: Grad-CAM of a sample of each class
    fixed_s: float = 9.4  # Ray start, figures, report
    views: int = 4
    source: str = (
        "make demo (1 profile, 244 posts), 2 cores, 2026-11-23; dedup and train: "
        "jobs.benchmark profiles (1,000 x 40 posts), 2026-12-04 to -06; the grid: 10 x 400 "
        "posts, 15 epochs, 2026-12-06 (late)"
    )
    measured: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> UnitCosts:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a unit-costs file ({exc})") from exc

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))


def _embed_costs(run: RunManifest, images: float, videos: float, views: int, cpus: int) -> dict:
    """The embed stage's unit costs: a frame's decode and forward pass, the assembly of the
    tables' parts per MB of vectors (runs before its split was recorded: the defaults)."""
    frames = images * (1 + views) + videos * 16
    assemble = run.get("embed_assemble")  # runs before it was recorded: all in embed
    vector_mb = (images * (1 + views) + videos * VIDEO_VECTORS) * WIDTH * 4 / 1e6
    frame_core_s = (run.stages["embed"] - (assemble or 0.0)) * cpus / max(frames, 1)
    return {
        "assemble_vector_mb_core_s": run.stages["embed_assemble_core"] / max(vector_mb, 1e-9)
        if "embed_assemble_core" in run.stages
        else UnitCosts.assemble_vector_mb_core_s,
        "assemble_write_mb_s": run.stages["embed_assemble_write"] / max(vector_mb, 1e-9)
        if "embed_assemble_write" in run.stages
        else UnitCosts.assemble_write_mb_s,
        "image_core_s": frame_core_s * (1 + views),
        "video_core_s": frame_core_s * 16,
    }


def _train_costs(
    run: RunManifest, trained: float, forward_share: float, profiles: float, cpus: int
) -> dict:
    """The train stage's unit costs per trained item: the driver's own phases, the
    cross-profile tasks, and the grid + final models (the rest), split between the two
    protocols by their trials' time; runs before the phases were recorded count all as
    grid."""
    read = run.phase(READ_PHASE)
    driver = sum(run.phase(name) for name in DRIVER_PHASES)
    pooled = run.phase("pooled")
    scoring = run.phase(METRICS_TASKS_PHASE)
    grid = run.stages["train"] - read - driver - pooled - run.phase("timelines") - scoring
    trained = max(trained, 1)
    return {
        "grid_item_core_s": grid * (1 - forward_share) * cpus / trained,
        "walk_forward_item_core_s": grid * forward_share * cpus / trained,
        "train_read_item_core_s": read * cpus / trained,
        "train_driver_item_s": driver / trained,
        "metrics_item_core_s": scoring * cpus / trained,
        # a run under the cap: the fits train on every item; the profiles' own models are
        # taken out at their default cost
        "pooled_item_core_s": max(0.0, pooled - profiles * UnitCosts.pooled_profile_core_s / cpus)
        * min(cpus, POOLED_BIG_TASKS)
        / trained,
    }


def costs_from_run(out: Path, cpus: int) -> UnitCosts:
    """Unit costs from a finished `popray run` on OUT (its timings.json and tables), on a
    machine with `cpus` cores."""
    from popray.io import store

    run = RunManifest.read(out)
    con = store.connect(out)
    try:
        [size] = con.sql(store.sql_text("plan.run_size")).to_arrow_table().to_pylist()
    finally:
        con.close()
    size = {name: float(value or 0) for name, value in size.items()}
    posts, media_files, images, videos = (
        size[n] for n in ("posts", "media_files", "images", "videos")
    )
    rows = posts + media_files + size["follower_rows"] + size["quarantined_rows"]
    views, pairs, trained = int(size["views"]), size["pairs"], size["trained"]
    forward_share, profiles = size["forward_share"], size["profiles"]
    frames = images * (1 + views) + videos * 16
    return UnitCosts(
        # a small run validates in the driver: what its ingest took beyond parsing and
        # the media files, per row
        ingest_validate_row_core_s=max(
            0.0,
            run.stages["ingest"]
            - rows * UnitCosts.ingest_parse_row_s
            - media_files * (UnitCosts.ingest_file_driver_s + UnitCosts.ingest_hash_file_core_s),
        )
        / max(rows, 1),
        label_post_s=UnitCosts.label_post_s,  # the run's posts are too few to time it
        walk_forward_label_post_core_s=run.phase("timelines")
        * cpus
        / max(posts * WALK_FORWARD_LABELLINGS, 1)
        if run.phase("timelines")
        else UnitCosts.walk_forward_label_post_core_s,
        **_embed_costs(run, images, videos, views, cpus),
        dedup_profile_s=max(0.0, run.stages["dedup"] * cpus - pairs * UnitCosts.dedup_pair_s)
        / max(profiles, 1),
        **_train_costs(run, trained, forward_share, profiles, cpus),
        profile_s=run.stages.get("explain", 0.0) * cpus / max(profiles, 1),
        fixed_s=sum(run.stages[name] for name in ("ray_start", "figures", "report")),
        views=views,
        source=f"{out} ({int(profiles)} profiles, {int(posts)} posts, {cpus} cores)",
        measured={
            "timings": run.to_json(),
            "images": images,
            "videos": videos,
            "video_share_of_frames": round(videos * 16 / max(frames, 1), 3),
        },
    )
