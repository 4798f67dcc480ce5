"""Final models: after the grid, each (profile, model, k) trained once on all its data and
saved for prediction (popray/training/saved.py: the folders, model.json and table
`models`), with everything needed to trust and reuse it.

No data are left to pick an epoch, so a final model trains for the median best epoch of
its grid trials (the stratified folds', or the walk-forward windows' when only those
ran). A model saved before from the same items, labels and settings is reused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch
from torch import nn

from popray.config import GridConfig, ModelName, Protocol, TrainConfig
from popray.records import ModelCard, SavedModel
from popray.training.cells import Cell
from popray.training.dataset import TrainingSet
from popray.training.fit import fit_all
from popray.training.folds import all_data
from popray.training.model_files import (
    MODELS_DIR,
    base_meta,
    folder_name,
    identity,
    model_row,
    models_table,
    save_model,
    saved,
)


def _epochs(trials: pa.Table, model: ModelName, k: int, profile: str, protocol: Protocol) -> int:
    """The median best epoch of this profile's grid trials of (model, k) in `protocol`."""
    mine = trials.filter(
        pc.and_(
            pc.and_(pc.equal(trials["model"], model), pc.equal(trials["k"], k)),
            pc.and_(
                pc.equal(trials["profile_id"], profile), pc.equal(trials["protocol"], protocol)
            ),
        )
    )
    return max(1, round(float(np.median(mine["best_epoch"].to_numpy()))))


@ray.remote
def _fit_final(
    ds: TrainingSet, model: ModelName, k: int, train_cfg, threads: int
) -> tuple[nn.Module, int]:
    """A Ray task: one final model trained on all of `ds` (one profile's items); the
    trained network (on the CPU) and its input width come back to the driver."""
    torch.set_num_threads(threads)
    x, y, views = all_data(ds.local(), model)
    return fit_all(model, k, x, y, train_cfg, seed=0, train_views=views), int(x.shape[-1])


@dataclass
class _Job:
    """A final model to train: its profile's items, what `model.json` will record (less
    its width), and the settings it trains with."""

    ds: TrainingSet
    items: pa.Table
    meta: SavedModel
    train_cfg: TrainConfig


def train_final(
    out: Path,
    datasets: dict[int, TrainingSet],
    cfg: GridConfig,
    trials: pa.Table,
    metrics: pa.Table,
    backbone: str,
    cells: list[Cell] | None = None,
    read: Callable[[set[str]], dict[int, TrainingSet]] | None = None,
) -> tuple[pa.Table, int]:
    """Train, save and list (table `models`) one final model per (profile, model, k) of
    `cells` (cells.Cell; default: all) of one protocol (the stratified folds when they
    ran), as Ray tasks (`grid.cpus_per_trial` and `gpus_per_trial` each); a model already
    saved from the same items, labels and settings is reused. `read`: the datasets with
    the given profiles' embeddings read, for the models to train whose profiles
    `datasets` did not read (`TrainingSet.complete`). Returns the table and how many models
    were reused."""
    root = out / MODELS_DIR
    root.mkdir(parents=True, exist_ok=True)
    protocols = set(trials["protocol"].to_pylist())
    protocol = "stratified_kfold" if "stratified_kfold" in protocols else min(protocols)
    accuracy = {
        (r["model"], r["k"], r["profile_id"]): r["accuracy_mean"]
        for r in metrics.to_pylist()
        if r["protocol"] == protocol
    }
    if cells is None:
        cells = [
            Cell(m, k, tuple(d.profiles()), protocol)
            for m in cfg.models
            for k, d in datasets.items()
        ]
    rows, jobs = [], []
    for model, k, profiles, _ in (c for c in cells if c.protocol == protocol):
        for profile in profiles:
            ds = datasets[k].for_profile(profile, remote=True)  # the task gathers it
            items, snapshot = identity(ds, backbone, model, profile)
            epochs = _epochs(trials, model, k, profile, protocol)
            train_cfg = cfg.train.model_copy(update={"epochs": epochs})
            meta = saved(root / folder_name(model, k, snapshot), snapshot, train_cfg)
            if meta is not None:  # saved before from the same data and settings
                rows.append(model_row(meta, items, ds.features))
                continue
            meta = base_meta(ds, backbone, model, k, profile, snapshot, train_cfg)
            meta = replace(meta, grid_accuracy_mean=accuracy.get((model, k, profile)))
            jobs.append(_Job(ds, items, meta, train_cfg))
    reused = len(rows)
    unread = {job.meta.profile_id for job in jobs if not job.ds.complete}
    if unread and read is not None:
        more = read(unread)
        for job in jobs:
            if job.meta.profile_id in unread:
                job.ds = more[job.meta.k].for_profile(job.meta.profile_id, remote=True)
    rows += _train_jobs(root, jobs, cfg)
    return models_table(rows), reused


def _train_jobs(root: Path, jobs: list[_Job], cfg: GridConfig) -> list[ModelCard]:
    """Train `jobs` as Ray tasks, at most twice as many in flight as the cluster has slots
    (the driver holds only those profiles' data), and save each model as it comes back."""
    threads = max(1, int(cfg.cpus_per_trial))
    fit = _fit_final.options(num_cpus=cfg.cpus_per_trial, num_gpus=cfg.gpus_per_trial)
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cfg.cpus_per_trial)) if jobs else 1
    pending: dict[ray.ObjectRef, _Job] = {}
    rows = []

    def save_next() -> None:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ref)
        net, width = ray.get(ref)
        meta = save_model(root, net, job.items, replace(job.meta, width=width))
        rows.append(model_row(meta, job.items, job.ds.features))

    for job in jobs:
        pending[fit.remote(job.ds, job.meta.model, job.meta.k, job.train_cfg, threads)] = job
        if len(pending) >= 2 * slots:
            save_next()
    while pending:
        save_next()
    return rows
