"""Benchmark: the train stage's own work in the driver (`popray plan`'s "train: driver").

    python -m jobs.benchmark driver --profiles 1000 --posts 40 --seeds 3 --repeats 3

On a synthetic OUT (`bench_scale.synthetic_out`) labelled, deduplicated and trained once
(1 epoch: the driver's work does not depend on the epochs), the driver's phases of
`grid.run_train` are run again, as on a first run, `repeats` times:
- plan: the cells (walk-forward windows included), the unit keys, what is published;
- collect: the finished trials' rows read back from the grid's storage;
- metrics: the driver's share of `metrics_by_cell` (splitting the predictions and the
  baselines by cell, sending them) and writing the trials, predictions and metrics
  tables; the seconds spent waiting on the cells' tasks are apart (`metrics_wait_s`).
The OUT is kept in `work` and reused by the next call with the same sizes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from popray.config import DedupConfig, GridConfig, LabelConfig, TrainConfig
from popray.io import store
from popray.tools.bench_scale import BACKBONE, synthetic_out
from popray.training import pooled_keep


def bench_train_driver(profiles: int, posts: int, seeds: int, repeats: int, work: Path) -> dict:
    """Seconds of each driver phase of the train stage per repeat (see the module)."""
    import ray

    from popray.dedup import run_dedup
    from popray.labels import run_label
    from popray.train import run_train

    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    out = work / f"{profiles}x{posts}-s{seeds}"
    labels = LabelConfig()
    cfg = GridConfig(seeds=list(range(seeds)), train=TrainConfig(epochs=1))
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        if not store.has_table(out, "trials", f"{labels.scheme}-{BACKBONE}"):
            synthetic_out(out, profiles, posts)
            run_label(out, labels)
            run_dedup(out, DedupConfig(threshold=1.0), BACKBONE)
            run_train(out, cfg, labels, BACKBONE)
        phases = [_phases(out, cfg, labels) for _ in range(repeats)]
    finally:
        ray.shutdown()
    names = phases[0].keys()
    return {
        "bench": "train_driver",
        "profiles": profiles,
        "posts_per_profile": posts,
        "seeds": seeds,
        **{f"{name}_s": [round(p[name], 3) for p in phases] for name in names},
        "driver_s_fastest": round(
            min(sum(p[n] for n in names if n != "metrics_wait") for p in phases), 3
        ),
    }


def _phases(out: Path, cfg: GridConfig, labels: LabelConfig) -> dict[str, float]:
    """One pass of the driver's phases of `run_train`, on the finished OUT, as a first
    run would do them (nothing published is looked up)."""
    from popray.training.cells import plan_cells, trial_specs
    from popray.training.loading import load_keys
    from popray.training.metrics_parallel import metrics_by_cell
    from popray.training.timelines import build_timelines
    from popray.training.train_plan import Baselines
    from popray.training.tune import _collect, fingerprint, grid_root
    from popray.training.units import published, remaining, unit_keys

    keys = load_keys(out, BACKBONE, cfg.k or labels.k, labels.scheme, cfg.context_features)
    datasets = keys.datasets(remote=True, profiles=())
    baselines = Baselines.of(out, labels.scheme)
    forward = build_timelines(out, datasets, labels, cfg.walk_forward)
    timelines = forward.timelines
    baselines.add_walk_forward(forward)
    seconds = {}
    start = time.perf_counter()
    cells, _ = plan_cells(datasets, cfg, timelines)
    units = unit_keys(cfg, datasets, BACKBONE, timelines)
    todo = remaining(cells, published(out, "none", units, cfg.seeds, cfg.protocols))
    pooled_keep.decide(out, "none", cfg, BACKBONE, datasets, units)
    seconds["plan"] = time.perf_counter() - start
    name = f"grid-{fingerprint(cfg, BACKBONE, todo, units)}"
    start = time.perf_counter()
    trials, _ = _collect([], grid_root(out).child(f"{name}.results"), trial_specs(cfg, todo))
    seconds["collect"] = time.perf_counter() - start
    part = f"{labels.scheme}-{BACKBONE}"
    predictions = store.read_table(out, "predictions", part)  # the pooled models' too
    with tempfile.TemporaryDirectory() as scratch:
        start, waited = time.perf_counter(), []
        metrics = metrics_by_cell(predictions, baselines.recent, baselines.targets, waited)
        for table, rows in (("trials", trials), ("predictions", predictions), ("metrics", metrics)):
            store.write_table(Path(scratch), table, rows, part=part)
        seconds["metrics"] = time.perf_counter() - start - sum(waited)
        seconds["metrics_wait"] = sum(waited)
    return seconds
