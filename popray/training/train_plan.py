"""What the train stage finds before it trains (`plan_train`): the data's keys, the
baselines the metrics compare with, the walk-forward timelines, the cells to train (and
why others cannot) and what the published run lets it take over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from popray.config import KFOLD, WALK_FORWARD, GridConfig, LabelConfig
from popray.errors import NothingToTrain
from popray.io import store
from popray.training import pooled_keep
from popray.training.baselines import ranking_targets, recent_baseline
from popray.training.cells import plan_cells
from popray.training.dataset import TrainingSet
from popray.training.loading import TrainingKeys, load_keys
from popray.training.pooled import PROFILE_GROUPED
from popray.training.timelines import Timelines, WalkForward, build_timelines
from popray.training.units import Reuse, published, remaining, unit_keys


@dataclass
class Baselines:
    """What the metrics compare with, by (protocol, k, media_id): the recent-PoR
    baseline's class (`recent`) and the ranking targets (`targets`: rank_score, the
    baseline's guess); `ranked_kfold`, the targets by (k, media_id), for the
    cross-profile models' comparison."""

    recent: dict[tuple[str, int, str], int | None]
    targets: dict[tuple[str, int, str], tuple]
    ranked_kfold: dict[tuple[int, str], tuple]

    @classmethod
    def of(cls, out: Path, scheme: str) -> Baselines:
        """The stratified folds' and the cross-profile models' (from the labels as they
        stand); the walk-forward's come from its timelines (`add_walk_forward`)."""
        previous = recent_baseline(out, scheme)
        ranked = ranking_targets(store.read_table(out, "labels"), scheme)
        protocols = (KFOLD, PROFILE_GROUPED)
        return cls(
            {(p, k, m): c for (k, m), c in previous.items() for p in protocols},
            {(p, k, m): v for (k, m), v in ranked.items() for p in protocols},
            ranked,
        )

    def add_walk_forward(self, forward: WalkForward) -> None:
        """The walk-forward's, from the labels as settled after each window."""
        self.recent |= {(WALK_FORWARD, k, m): c for (k, m), c in forward.recent.items()}
        self.targets |= {(WALK_FORWARD, k, m): v for (k, m), v in forward.targets.items()}


@dataclass
class TrainPlan:
    """What the train stage found before training: the data's keys (no embedding read
    yet), the baselines and ranking targets, the walk-forward timelines, the cells to
    train and why others cannot, and what the published run lets it take over."""

    keys: TrainingKeys
    datasets: dict[int, TrainingSet]
    baselines: Baselines
    timelines: Timelines | None
    cells: list
    skipped: list[str]
    part: str
    units: dict
    reuse: Reuse
    todo: list
    decision: pooled_keep.Decision


def plan_train(
    out: Path,
    cfg: GridConfig,
    labels: LabelConfig,
    backbone: str,
    echo: Callable[[str], None],
    clock: Clock,
) -> TrainPlan:
    """The train stage's plan (`TrainPlan`); raises NothingToTrain when no cell can train."""
    keys = load_keys(out, backbone, cfg.k or labels.k, labels.scheme, cfg.context_features)
    # ids, classes and shapes first: which profiles train is known before any embedding
    # is read, and only theirs are (a nightly run reuses the others)
    datasets = keys.datasets(remote=True, profiles=())
    timelines = None
    baselines = Baselines.of(out, labels.scheme)
    clock.lap("load")
    if WALK_FORWARD in cfg.protocols:
        forward = build_timelines(out, datasets, labels, cfg.walk_forward)
        timelines = forward.timelines
        clock.lap("timelines")  # Ray tasks: the driver slices the export and merges
        baselines.add_walk_forward(forward)
    cells, skipped = plan_cells(datasets, cfg, timelines)
    echo_skipped(out, skipped, echo)
    if not cells:
        raise NothingToTrain("nothing to train: " + "; ".join(skipped))
    part = f"{labels.scheme}-{backbone}" + ("-context" if cfg.context_features else "")
    units = unit_keys(cfg, datasets, backbone, timelines)
    reuse = published(out, part, units, cfg.seeds, cfg.protocols)
    decision = pooled_keep.decide(out, part, cfg, backbone, datasets, units)
    if decision.line:
        echo(decision.line)
    clock.lap("plan")
    return TrainPlan(
        keys,
        datasets,
        baselines,
        timelines,
        cells,
        skipped,
        part,
        units,
        reuse,
        remaining(cells, reuse),
        decision,
    )


SKIPPED_FILE = "train_skipped.txt"  # in OUT: every cell the grid skipped, and why


SKIPPED_SHOWN = 20  # reasons printed; at 1,000 profiles of 40 posts there are ~15,000


def echo_skipped(out: Path, skipped: list[str], echo: Callable[[str], None]) -> None:
    """Print the first reasons and count the rest; OUT keeps them all."""
    (out / SKIPPED_FILE).write_text("".join(f"{reason}\n" for reason in skipped))
    for reason in skipped[:SKIPPED_SHOWN]:
        echo(f"skipped {reason}")
    if len(skipped) > SKIPPED_SHOWN:
        rest = len(skipped) - SKIPPED_SHOWN
        echo(f"skipped {rest} more cells: all {len(skipped)} reasons in {out / SKIPPED_FILE}")


class Clock:
    """Seconds per phase of the train stage, each lap ending one."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str, inside: tuple[str, float] | None = None) -> None:
        """End phase `name`; `inside`: (a phase, its seconds) spent within it, counted
        apart from it."""
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._last
        self._last = now
        if inside is not None:
            self.phases[name] -= inside[1]
            self.phases[inside[0]] = inside[1]
