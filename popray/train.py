"""The train stage (`popray train`): the grid on Ray Tune (`popray.training.tune`), its
metrics, the cross-profile models and the final models, for the profiles whose data
changed; the others' rows and models are taken over from the last run
(`popray.training.units`).

    popray train --out out          # 4 models x k {2, 3} x seeds {0, 1, 2} x 5 folds
                                    # + 4 models x k x seeds x (6 windows, one trial)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from popray.cluster import ensure_ray
from popray.config import KFOLD, WALK_FORWARD, GridConfig, LabelConfig
from popray.errors import NothingToTrain
from popray.io import store
from popray.io.storage import Location
from popray.records import ModelCard
from popray.training import pooled_keep
from popray.training.baselines import ranking_targets, recent_baseline
from popray.training.cells import Cell, plan_cells
from popray.training.dataset import TRAINING_NEEDS, TrainingKeys, TrainingSet, load_keys
from popray.training.final import MODELS_DIR, models_table, prune, train_final
from popray.training.metrics_parallel import metrics_by_cell
from popray.training.pooled import PROFILE_GROUPED, trains_on_every_profile
from popray.training.timelines import Timelines, build_timelines
from popray.training.tune import GridResult, grid_root, grid_with_reuse
from popray.training.units import Reuse, published, remaining, unit_keys


@dataclass
class TrainReport:
    grid: GridResult
    metrics: pa.Table
    models: pa.Table | None
    skipped: list[str]  # (model, k) cells without enough data, and why
    seconds: float
    cross_profile: pa.Table | None = None  # popray.training.pooled: pooled against own, by history
    profiles_trained: int = 0  # profiles with at least one cell trained by this run
    profiles_reused: int = 0  # profiles whose every cell was taken over (popray.training.units)
    models_reused: int = 0  # final models saved before from the same data and settings
    items_read: int = 0  # items whose embeddings the stage read (the others were reused)
    # seconds per phase: the driver's own work (load, plan, collect, metrics) apart from
    # the phases where it waits on the cluster (timelines, grid, pooled, final): for
    # `popray plan`
    phases: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        n = self.grid.trials.num_rows
        reused = f" ({self.grid.reused} reused from an earlier run)" if self.grid.reused else ""
        saved = ""
        if self.models:
            saved = f"; {self.models.num_rows} final models saved ({self.models_reused} reused)"
        profiles = f"; profiles: {self.profiles_trained} recomputed, {self.profiles_reused} reused"
        read = f"; embeddings read for {self.items_read} items"
        return f"grid: {n} trials{reused} in {self.seconds:.1f} s{saved}{profiles}{read}"

    def text(self) -> str:
        """The metrics, then the cross-profile comparison (when there is one)."""
        from popray.training.metrics_text import metrics_text
        from popray.training.pooled_text import cross_profile_text

        parts = [metrics_text(self.metrics)]
        if self.cross_profile is not None and self.cross_profile.num_rows:
            parts.append(cross_profile_text(self.cross_profile))
        return "\n\n".join(parts)


def run_train(
    out: Path,
    cfg: GridConfig,
    labels: LabelConfig,
    backbone: str,
    echo: Callable[[str], None] = lambda line: None,
    storage: Location | None = None,
) -> TrainReport:
    """The train stage: grid -> tables trials, predictions, metrics -> final models; the
    classes are those of `labels.scheme`; `storage`: where the grid keeps its state."""
    start = time.perf_counter()
    clock = _Clock()
    store.require(out, TRAINING_NEEDS)  # before Ray starts
    ensure_ray()  # the embeddings go to the object store as they are read: not the driver's
    plan = _plan(out, cfg, labels, backbone, echo, clock)
    todo, cells, datasets = plan.todo, plan.cells, plan.datasets
    # trained again, the cross-profile models learn from every profile's items
    everyone = not plan.decision.keep and trains_on_every_profile(cfg, datasets)
    datasets = plan.keys.datasets(remote=True, profiles=None if everyone else _profiles(todo))
    read = _Read(plan.keys, _items_read(datasets))
    clock.lap("load")
    grid = grid_with_reuse(
        out, datasets, cfg, backbone, echo, todo, plan.timelines, storage, plan.reuse, plan.units
    )
    clock.lap("grid", inside=("collect", grid.collect_s))
    part = plan.part
    pooled, pooled_units = _pooled(
        out, datasets, cfg, backbone, plan.ranked_kfold, echo, plan.decision, part
    )
    clock.lap("pooled")
    waited: list[float] = []
    metrics = _write_results(out, part, grid, pooled, plan.recent, plan.targets, waited)
    clock.lap("metrics", inside=("metrics_tasks", sum(waited)))  # the cluster scoring cells
    models, models_reused = None, 0
    if cfg.final_models:
        echo("training the final models on all the data")
        models, models_reused = train_final(
            out, datasets, cfg, grid.trials, metrics, backbone, cells, read.more
        )
        models = _write_models(out, part, models, pooled.models)
    if pooled_units is not None:  # last: it says the rows above are those of trained models
        store.write_table(out, "pooled_units", pooled_units, part=part)
    clock.lap("final")
    store.refresh_views(out)
    _drop_other_grids(grid_root(out, storage), grid)
    trained, profiles = _profiles(todo), _profiles(cells)
    return TrainReport(
        grid,
        metrics,
        models,
        plan.skipped,
        time.perf_counter() - start,
        pooled.cross_profile,
        profiles_trained=len(trained),
        profiles_reused=len(profiles - trained),
        models_reused=models_reused,
        items_read=read.items,
        phases=clock.phases,
    )


@dataclass
class _Plan:
    """What the train stage found before training: the data's keys (no embedding read
    yet), the baselines and ranking targets, the walk-forward timelines, the cells to
    train and why others cannot, and what the published run lets it take over."""

    keys: TrainingKeys
    datasets: dict[int, TrainingSet]
    recent: dict
    targets: dict
    ranked_kfold: dict
    timelines: Timelines | None
    cells: list
    skipped: list[str]
    part: str
    units: dict
    reuse: Reuse
    todo: list
    decision: pooled_keep.Decision


def _plan(
    out: Path,
    cfg: GridConfig,
    labels: LabelConfig,
    backbone: str,
    echo: Callable[[str], None],
    clock: _Clock,
) -> _Plan:
    """The train stage's plan (`_Plan`); raises NothingToTrain when no cell can train."""
    keys = load_keys(out, backbone, cfg.k or labels.k, labels.scheme, cfg.context_features)
    # ids, classes and shapes first: which profiles train is known before any embedding
    # is read, and only theirs are (a nightly run reuses the others)
    datasets = keys.datasets(remote=True, profiles=())
    timelines = None
    recent, targets, ranked_kfold = _baselines(out, labels.scheme)
    clock.lap("load")
    if WALK_FORWARD in cfg.protocols:
        forward = build_timelines(out, datasets, labels, cfg.walk_forward)
        timelines = forward.timelines
        clock.lap("timelines")  # Ray tasks: the driver slices the export and merges
        recent |= {(WALK_FORWARD, k, m): c for (k, m), c in forward.recent.items()}
        targets |= {(WALK_FORWARD, k, m): v for (k, m), v in forward.targets.items()}
    cells, skipped = plan_cells(datasets, cfg, timelines)
    _echo_skipped(out, skipped, echo)
    if not cells:
        raise NothingToTrain("nothing to train: " + "; ".join(skipped))
    part = f"{labels.scheme}-{backbone}" + ("-context" if cfg.context_features else "")
    units = unit_keys(cfg, datasets, backbone, timelines)
    reuse = published(out, part, units, cfg.seeds, cfg.protocols)
    decision = pooled_keep.decide(out, part, cfg, backbone, datasets, units)
    if decision.line:
        echo(decision.line)
    clock.lap("plan")
    return _Plan(
        keys,
        datasets,
        recent,
        targets,
        ranked_kfold,
        timelines,
        cells,
        skipped,
        part,
        units,
        reuse,
        remaining(cells, reuse),
        decision,
    )


def _baselines(out: Path, scheme: str) -> tuple[dict, dict, dict]:
    """What the stratified and cross-profile metrics compare with: (each profile's most
    recent class by (protocol, k, media type), the ranking targets by the same key, the
    ranking targets by (k, media type)); the walk-forward's are added by the timelines."""
    previous = recent_baseline(out, scheme)
    recent = {(p, k, m): c for (k, m), c in previous.items() for p in (KFOLD, PROFILE_GROUPED)}
    ranked_kfold = ranking_targets(store.read_table(out, "labels"), scheme)
    targets = {(p, k, m): v for (k, m), v in ranked_kfold.items() for p in (KFOLD, PROFILE_GROUPED)}
    return recent, targets, ranked_kfold


def _write_results(
    out: Path, part: str, grid: GridResult, pooled, recent: dict, targets: dict, waited: list
) -> pa.Table:
    """Tables trials, predictions, metrics (scored a Ray task per cell; `waited` gets the
    time spent waiting on them) and cross_profile; returns the metrics."""
    predictions = pa.concat_tables([grid.predictions, *pooled.predictions])
    metrics = metrics_by_cell(predictions, recent, targets, waited)
    store.write_table(out, "trials", grid.trials, part=part)
    store.write_table(out, "predictions", predictions, part=part)
    store.write_table(out, "metrics", metrics, part=part)
    store.write_table(out, "cross_profile", pooled.cross_profile, part=part)
    return metrics


def _write_models(out: Path, part: str, models: pa.Table, pooled: list[ModelCard]) -> pa.Table:
    """Table models: the final models and the cross-profile ones; the folders of models
    no row names any more are removed."""
    models = pa.concat_tables([models, models_table(pooled)])
    store.write_table(out, "models", models, part=part)
    prune(out, store.read_table(out, "models"))
    return models


def _drop_other_grids(root: Location, grid: GridResult) -> None:
    """Once the stage has finished, older grids (and their results) are not needed."""
    name = grid.experiment.display().rsplit("/", 1)[1] if grid.experiment else None
    for stale in root.names():
        if stale not in {name, f"{name}.results"}:
            root.child(stale).delete()


SKIPPED_FILE = "train_skipped.txt"  # in OUT: every cell the grid skipped, and why
SKIPPED_SHOWN = 20  # reasons printed; at 1,000 profiles of 40 posts there are ~15,000


def _echo_skipped(out: Path, skipped: list[str], echo: Callable[[str], None]) -> None:
    """Print the first reasons and count the rest; OUT keeps them all."""
    (out / SKIPPED_FILE).write_text("".join(f"{reason}\n" for reason in skipped))
    for reason in skipped[:SKIPPED_SHOWN]:
        echo(f"skipped {reason}")
    if len(skipped) > SKIPPED_SHOWN:
        rest = len(skipped) - SKIPPED_SHOWN
        echo(f"skipped {rest} more cells: all {len(skipped)} reasons in {out / SKIPPED_FILE}")


class _Clock:
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


def _profiles(cells: list[Cell]) -> set[str]:
    return {p for c in cells for p in c.profiles}


def _items_read(datasets: dict[int, TrainingSet]) -> int:
    """How many items' embeddings are read in `datasets` (each item once over the ks)."""
    return len({m for ds in datasets.values() for m in ds.read_ids()})


@dataclass
class _Read:
    """The train stage's reads of the embeddings: the first one's count, and `more`, for
    the final models of profiles that were not read (their saved model is gone)."""

    keys: TrainingKeys
    items: int

    def more(self, profiles: set[str]) -> dict[int, TrainingSet]:
        datasets = self.keys.datasets(remote=True, profiles=profiles)
        self.items += _items_read(datasets)
        return datasets


def _pooled(
    out: Path,
    datasets,
    cfg: GridConfig,
    backbone: str,
    ranked: dict,
    echo,
    decision: pooled_keep.Decision,
    part: str,
):
    """The cross-profile models (popray.training.pooled) over the grid's datasets: the published
    ones kept while few items changed since they were trained (popray.training.pooled_keep
    decided, before the read)."""
    from popray.training.pooled import run_pooled

    if decision.keep:  # its `pooled_units` stay as they are: what the models were trained on
        return pooled_keep.kept(out, part, datasets), None
    labels = store.read_table(out, "labels").select(["media_id", "published_at"])
    ids, published = labels["media_id"].to_pylist(), labels["published_at"].to_pylist()
    times = dict(zip(ids, published, strict=True))
    result = run_pooled(out / MODELS_DIR, datasets, cfg, backbone, times, ranked, echo)
    for reason in result.skipped:
        echo(reason)
    trained = result.models or any(t.num_rows for t in result.predictions)
    return result, decision.record if trained else decision.record.slice(0, 0)  # none to keep
