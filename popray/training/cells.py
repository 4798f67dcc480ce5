"""What the validation grid trains: its cells (model, k, profiles, protocol), checked
against the data before Tune starts, and the Tune trials they split into.

A cell holds the profiles whose items can fill it: every class of k in each of the
stratified folds, or, for walk-forward, at least one usable window. One Tune trial
trains one (model, k, seed, fold) of a cell for a shard of its profiles (one profile per
trial for small exports; as many as keep the grid at MAX_TRIALS when there are many); a
walk-forward trial trains every window of its profiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from popray.config import KFOLD, WALK_FORWARD, GridConfig, ModelName, Protocol
from popray.records import MEDIA_KINDS
from popray.training.dataset import ONE_PROFILE, TrainingSet
from popray.training.folds import check_classes
from popray.training.models import REGISTRY
from popray.training.timelines import Timeline
from popray.training.walkforward import usable_windows

MAX_TRIALS = 480  # Tune trials per grid at most (4x the paper's grid for one profile)


class Cell(NamedTuple):
    """A cell of the grid: a (model, k), the profiles whose data can fill it, and how it
    is validated."""

    model: ModelName
    k: int
    profiles: tuple[str, ...]
    protocol: Protocol = KFOLD


@dataclass(frozen=True)
class TrialSpec:
    model: ModelName
    k: int
    seed: int
    fold: int  # walk_forward: 0 (one trial trains every window)
    profiles: tuple[str, ...] = (ONE_PROFILE,)
    shard: int = 0
    protocol: Protocol = KFOLD

    def __post_init__(self) -> None:  # a list after a round trip through Tune's config
        object.__setattr__(self, "profiles", tuple(self.profiles))

    @property
    def name(self) -> str:
        fold = "wf" if self.protocol == WALK_FORWARD else f"f{self.fold}"
        return f"{self.model}-k{self.k}-s{self.seed}-{fold}-g{self.shard}"


def _folds(cfg: GridConfig, cell: Cell) -> range:
    return range(cfg.folds) if cell.protocol == KFOLD else range(1)


def shard_size(cfg: GridConfig, cells: list[Cell]) -> int:
    """Profiles per trial: as set, or the fewest that keep the grid at MAX_TRIALS."""
    if cfg.profiles_per_trial:
        return cfg.profiles_per_trial
    profile_trials = sum(len(c.profiles) * len(_folds(cfg, c)) for c in cells) * len(cfg.seeds)
    return max(1, math.ceil(profile_trials / MAX_TRIALS))


def trial_specs(cfg: GridConfig, cells: list[Cell]) -> list[TrialSpec]:
    """The grid over its cells in a fixed order: model, k, seed, fold, profile shard."""
    size = shard_size(cfg, cells)
    return [
        TrialSpec(c.model, c.k, seed, fold, c.profiles[i : i + size], i // size, c.protocol)
        for c in cells
        for seed in cfg.seeds
        for fold in _folds(cfg, c)
        for i in range(0, len(c.profiles), size)
    ]


def plan_cells(
    datasets: dict[int, TrainingSet],
    cfg: GridConfig,
    timelines: dict[int, dict[str, Timeline]] | None = None,
) -> tuple[list[Cell], list[str]]:
    """The (model, k) cells with the profiles whose data can be split into stratified
    folds (and, given `timelines`, those with a usable walk-forward window), and why each
    other (profile,) model and k cannot (too few items of some class), checked before
    Tune starts."""
    cells, skipped = [], []
    for k, ds in sorted(datasets.items()):
        if not len(ds.images) and not len(ds.videos):
            skipped.append(
                f"k={k}: no item has a class of scheme {ds.scheme} with k={k} "
                "(ratio_threshold, likes_moving_average and residual with keep_extremes "
                "define k=2 only)"
            )
    for model in cfg.models:
        for k, ds in sorted(datasets.items()):
            profiles = ds.profiles()
            ready = []
            media = REGISTRY[model].validate_on
            for profile in profiles:
                who = f"profile {profile} " if len(profiles) > 1 else ""
                rows = ds.rows_of(profile)[MEDIA_KINDS.index(media)]
                classes = ds.side(media).y[rows]
                try:  # the class counts decide; the folds are cut in the trials
                    check_classes(media, classes, cfg.folds, k)
                    ready.append(profile)
                except ValueError as exc:
                    skipped.append(f"{who}{model} k={k}: {exc} (scheme {ds.scheme})")
            if ready and KFOLD in cfg.protocols:
                cells.append(Cell(model, k, tuple(ready)))
    if timelines is not None:
        ready: dict[tuple[str, int], dict[str, np.ndarray]] = {}  # the models share them
        for model in cfg.models:
            for k, ds in sorted(datasets.items()):
                media = REGISTRY[model].validate_on
                if (media, k) not in ready:
                    ready[(media, k)] = {
                        p: usable_windows(timelines[k][p], media, k, cfg.walk_forward)
                        for p in ds.profiles()
                    }
                profiles = _walk_forward_ready(model, k, ready[(media, k)], cfg, skipped)
                if profiles:
                    cells.append(Cell(model, k, tuple(profiles), WALK_FORWARD))
    return cells, skipped


def _walk_forward_ready(
    model: ModelName, k: int, windows: dict[str, np.ndarray], cfg: GridConfig, skipped
) -> list[str]:
    """The profiles with at least one usable walk-forward window for (model, k)
    (`windows`: profile -> which of its windows are usable); a line in `skipped` for each
    profile with windows left out."""
    ready = []
    for profile, usable in windows.items():
        n, kept = len(usable), int(usable.sum())
        if kept < n:
            who = f"profile {profile} " if len(windows) > 1 else ""
            skipped.append(
                f"{who}{model} k={k} walk_forward: {n - kept} of {n} windows left out "
                "(nothing published in the window, or fewer than "
                f"{cfg.walk_forward.min_train_per_class} training items of some class before it)"
            )
        if kept:
            ready.append(profile)
    return ready
