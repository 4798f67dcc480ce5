"""The cross-profile model: for a profile with no history of its own, an image model and
a video model trained on the items of every profile ("what works here?").

    popray train --out out        # with 5 or more profiles: after the grid
    popray predict --out out --profile NEW --media candidates/   # NEW has no model: this one

Classes are relative to each profile's own reference (por_rolling: its rolling window),
so they pool: class k-1 means "among this profile's best", whoever posted it.

- Validation, profile-grouped: GroupKFold over profiles (grid.folds splits). Each fold's
  model trains on the other profiles' items and scores every item of the profiles it
  never saw. Those predictions join `predictions` and `metrics` as protocol
  `profile_grouped`, with the same accuracy, baseline and ranking columns as a profile's
  own models. It trains for grid.train.epochs epochs: no held-out item picks an epoch.
- History length, table `cross_profile`: each profile's latest fifth (at least 5 items)
  is a test set. The profile's own model is trained on the h items just before it (h =
  10, 20, 40, ... and all of them). It is set against the pooled model that never saw the
  profile, on the same test items. The rows show the history at which a profile's own
  model starts to win.
- Final: one model per (model, k) on every profile's items, saved in `models` as profile
  "*" (`model_files.POOLED`).
- Size: each fit trains on at most grid.pooled_max_items items (`capped`: spread evenly
  over the profiles, each profile's picked by a hash of the media id, so a new post moves
  only its own profile's pick). Thousands of profiles would otherwise train every fit on
  millions of items; validation still scores every item of the held-out profiles.

Every training is a Ray task; the data go to the object store once per k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import torch

from popray.config import GridConfig, TrainConfig
from popray.io.tables import TS, conform, empty, table_schema
from popray.records import ModelCard
from popray.training import model_files
from popray.training.dataset import TrainingSet
from popray.training.fit import fit_all
from popray.training.folds import Fold, all_data, fold_data
from popray.training.model_files import POOLED
from popray.training.models import REGISTRY
from popray.training.pooled_folds import (
    capped_fold,
    final_sample,
    history_folds,
    profile_folds,
    sides,
)
from popray.training.ranking import expected_score, spearman, top_precision

PROFILE_GROUPED = "profile_grouped"
MIN_PROFILES = 5


@dataclass
class PooledResult:
    predictions: list[pa.Table]  # per (model, k): protocol profile_grouped, the cell columns
    cross_profile: pa.Table
    models: list[ModelCard]  # rows of `models` (profile "*")
    skipped: list[str]


@ray.remote(num_cpus=1)
def _gathered(ds: TrainingSet) -> TrainingSet:
    """The dataset with its arrays in one piece: a task gathers them from the object
    store's chunks and returns them to it, so the fits below share them (zero-copy) and
    the driver never holds them."""
    return ds.local()


@ray.remote(num_cpus=1)
def _fit_score(ds: TrainingSet, model: str, k: int, folds: list[Fold], cfg: TrainConfig) -> list:
    """Train `model` on each fold's training items for cfg.epochs epochs and score its
    validation items: their (classes, probabilities)."""
    torch.set_num_threads(1)
    ds = ds.local()  # a no-op for `_gathered`'s dataset
    scored = []
    for fold in folds:
        data = fold_data(ds, model, fold)
        net = fit_all(model, k, data.x_train, data.y_train, cfg, 0, data.train_views)
        with torch.inference_mode():
            proba = torch.softmax(net(torch.as_tensor(data.x_val, dtype=torch.float32)), 1)
        scored.append((data.y_val, proba.numpy().astype(np.float32)))
    return scored


@ray.remote(num_cpus=1)
def _fit_final(ds: TrainingSet, model: str, k: int, cfg: TrainConfig) -> tuple:
    """The final cross-profile model on every item: (net, width)."""
    torch.set_num_threads(1)
    x, y, views = all_data(ds.local(), model)
    x, y = np.array(x), np.array(y)  # writable copies of the object store's arrays, for torch
    return fit_all(model, k, x, y, cfg, 0, views), int(x.shape[-1])


def _scores(label: np.ndarray, proba: np.ndarray, targets: list[float], ids: list[str], k: int):
    """(accuracy, Spearman ρ, top-20% precision) of one profile's scored items."""
    expected = expected_score(proba)
    one = np.zeros(len(ids))
    return (
        float((proba.argmax(axis=1) == label).mean()),
        spearman(expected, np.asarray(targets, np.float64), one)[0],
        top_precision(expected, label == k - 1, one, np.asarray(ids)),
    )


def profiles_of(datasets: dict[int, TrainingSet]) -> list[str]:
    """Every profile with labelled items: those the cross-profile models learn from."""
    return sorted({p for ds in datasets.values() for p in ds.profiles()})


def trains_on_every_profile(cfg: GridConfig, datasets: dict[int, TrainingSet]) -> bool:
    """Whether `run_pooled` would train on these datasets, and so read every profile's
    embeddings (the train stage decides what to read before it runs)."""
    return bool(cfg.pooled) and len(profiles_of(datasets)) >= MIN_PROFILES


def run_pooled(
    root: Path,
    datasets: dict[int, TrainingSet],
    cfg: GridConfig,
    backbone: str,
    times: dict[str, datetime],
    targets: dict[tuple[int, str], tuple],
    echo: Callable[[str], None] = lambda line: None,
) -> PooledResult:
    """Validate (profile-grouped), compare by history length and train (into `root`, the
    models folder, when grid.final_models) the cross-profile models `cfg.pooled` for every
    k of `datasets`. `times`: media_id -> published_at; `targets`: (k, media_id) ->
    (rank_score, ...), as `baselines.ranking_targets` gives them."""
    result = PooledResult([], empty("cross_profile"), [], [])
    profiles = profiles_of(datasets)
    if not cfg.pooled:
        return result
    if len(profiles) < MIN_PROFILES:
        result.skipped.append(
            f"cross-profile model: skipped, it needs at least {MIN_PROFILES} profiles with "
            f"labelled items (this run has {len(profiles)})"
        )
        return result
    rows = []
    if cfg.final_models:
        root.mkdir(parents=True, exist_ok=True)
    for k, ds in sorted(datasets.items()):
        ref = _gathered.remote(ds)  # every profile's rows, gathered once, on the cluster
        ids, profiles = ds.images.ids + ds.videos.ids, ds.images.profile + ds.videos.profile
        owner = dict(zip(ids, profiles, strict=True))
        for model in cfg.pooled:
            owners = sides(ds, model)[0].profile
            validated = sorted(set(owners))
            if len(validated) < MIN_PROFILES:
                result.skipped.append(
                    f"cross-profile {model} k={k}: skipped, {len(validated)} profiles have "
                    f"{REGISTRY[model].validate_on}s (needs {MIN_PROFILES})"
                )
                continue
            echo(f"cross-profile {model} k={k}: {len(validated)} profiles, grouped folds")
            where = _Where(root, backbone, times, targets)
            rows += _one_model(ds, ref, owner, validated, model, k, cfg, where, result)
    result.cross_profile = pa.Table.from_pylist(rows, schema=table_schema("cross_profile"))
    return result


@dataclass(frozen=True)
class _Where:
    """What every cross-profile model of a run shares: the models folder, the backbone,
    the items' publication times and the ranking targets."""

    root: Path
    backbone: str
    times: dict[str, datetime]
    targets: dict[tuple[int, str], tuple]


def _one_model(
    ds: TrainingSet,
    ref,
    owner: dict[str, str],
    validated: list[str],
    model: str,
    k: int,
    cfg: GridConfig,
    where: _Where,
    result: PooledResult,
) -> list[dict]:
    """One cross-profile model of one k (`ref`: `ds` gathered on the cluster): its
    profile-grouped predictions and its final model go to `result`; returns its rows of
    `cross_profile` (each validated profile's own model by history length)."""
    root, backbone, times, targets = where.root, where.backbone, where.times, where.targets
    rows: list[dict] = []
    folds = profile_folds(ds, model, min(cfg.folds, len(validated)))
    limit = cfg.pooled_max_items
    fits = [capped_fold(f, owner, limit) for f in folds]
    pooled = [_fit_score.remote(ref, model, k, [f], cfg.train) for f in fits]
    # a profile's own model: its own items only (their rows gathered by its task)
    mine = {p: ds.for_profile(p, remote=True) for p in validated}
    curves = {p: history_folds(mine[p], model, p, times) for p in validated}
    own = {
        p: _fit_score.remote(mine[p], model, k, [f for _, f in c], cfg.train)
        for p, c in curves.items()
        if c
    }
    sample, saved = ds, None
    if cfg.final_models:
        sample = final_sample(ds, model, limit)
        saved = _saved_final(root, sample, backbone, model, k, cfg)
    on = ref if sample is ds else sample  # a sample's task gathers its own rows
    fit = None if saved is None or saved[2] else _fit_final.remote(on, model, k, cfg.train)
    cell = {"scheme": ds.scheme, "backbone": backbone, "features": ds.features}
    table, by_id = _grouped(ds, model, k, folds, ray.get(pooled), cell)
    result.predictions.append(table)
    for p, task in own.items():
        for i, ((h, fold), scored) in enumerate(zip(curves[p], ray.get(task), strict=True)):
            who = cell | {"model": model, "k": k, "profile_id": p}
            row = _curve_row(who, h, fold, scored, by_id, targets, i == len(curves[p]) - 1)
            rows += [row] if row else []
    if saved is not None:
        result.models.append(_save_final(root, sample, backbone, model, k, cfg, saved, fit))
    return rows


def _grouped(ds, model, k, folds, scored, cell) -> tuple[pa.Table, dict]:
    """The profile-grouped validation predictions (a `predictions` part), and media_id ->
    (fold, class, probabilities) for the history comparison."""
    own = sides(ds, model)[0]
    owner = dict(zip(own.ids, own.profile, strict=True))
    columns = {"media_id": [], "label": [], "proba": [], "fold": []}
    by_id = {}
    for fold, [(labels, proba)] in zip(folds, scored, strict=True):
        for m, y, p in zip(fold.val, labels, proba, strict=True):
            by_id[m] = (fold.fold, int(y), p)
            for name, value in zip(columns, (m, int(y), p, fold.fold), strict=True):
                columns[name].append(value)
    n = len(columns["media_id"])
    proba = np.asarray(columns["proba"], np.float32).reshape(n, k)
    table = pa.table(
        {
            "profile_id": [owner[m] for m in columns["media_id"]],
            "media_id": columns["media_id"],
            "label": pa.array(columns["label"], pa.int32()),
            "pred": pa.array(proba.argmax(axis=1), pa.int32()),
            "proba": pa.array(list(proba), pa.list_(pa.float32())),
            "fold": pa.array(columns["fold"], pa.int32()),
            "cut_at": pa.nulls(n, TS),
        }
        | {name: [value] * n for name, value in cell.items()}
        | {"protocol": [PROFILE_GROUPED] * n, "model": [model] * n, "k": [k] * n, "seed": [0] * n}
    )
    return conform(table, "predictions"), by_id


def _curve_row(cell, h, fold, scored, by_id, targets, is_all: bool) -> dict | None:
    """One `cross_profile` row: the profile's own model on h items against the pooled
    model, on the same test items (those with a rank score; None if there are none)."""
    label, own = scored
    k = cell["k"]
    score = [targets.get((k, m), (None,))[0] for m in fold.val]
    keep = [i for i, s in enumerate(score) if s is not None]
    if not keep:
        return None
    ids, label, own = [fold.val[i] for i in keep], label[keep], own[keep]
    score = [score[i] for i in keep]
    pooled = np.stack([by_id[m][2] for m in ids])
    own_acc, own_rho, own_top = _scores(label, own, score, ids, k)
    pool_acc, pool_rho, pool_top = _scores(label, pooled, score, ids, k)
    return cell | {
        "group_fold": by_id[ids[0]][0],
        "history": h,
        "all_history": is_all,
        "n_test": len(ids),
        "own_accuracy": own_acc,
        "pooled_accuracy": pool_acc,
        "own_spearman": own_rho,
        "pooled_spearman": pool_rho,
        "own_top20_precision": own_top,
        "pooled_top20_precision": pool_top,
    }


def _saved_final(root: Path, ds: TrainingSet, backbone: str, model: str, k: int, cfg) -> tuple:
    """(items, snapshot, the saved model's metadata or None) of the final cross-profile
    model: one saved from the same items and settings is reused."""
    items, snapshot = model_files.identity(ds, backbone, model, POOLED)
    meta = model_files.saved(
        root / model_files.folder_name(model, k, snapshot), snapshot, cfg.train
    )
    return items, snapshot, meta


def _save_final(root: Path, ds: TrainingSet, backbone, model, k, cfg, saved, fit) -> ModelCard:
    """Save the final cross-profile model `fit` trained (unless reused); its row."""
    items, snapshot, meta = saved
    if meta is None:
        net, width = ray.get(fit)
        meta = model_files.base_meta(ds, backbone, model, k, POOLED, snapshot, cfg.train)
        meta = replace(meta, width=width, profiles=ds.profiles())
        meta = model_files.save_model(root, net, items, meta)
    return model_files.model_row(meta, items, ds.features)
