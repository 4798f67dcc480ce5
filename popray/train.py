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
from popray.config import GridConfig, LabelConfig
from popray.io import store
from popray.io.storage import Location
from popray.records import ModelCard
from popray.training import pooled_keep
from popray.training.cells import Cell
from popray.training.dataset import TrainingSet
from popray.training.final import train_final
from popray.training.loading import TRAINING_NEEDS, TrainingKeys
from popray.training.metrics_parallel import metrics_by_cell
from popray.training.model_files import MODELS_DIR, models_table, prune
from popray.training.pooled import trains_on_every_profile
from popray.training.train_plan import Baselines, Clock, plan_train
from popray.training.tune import GridResult, grid_root, grid_with_reuse


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
    clock = Clock()
    store.require(out, TRAINING_NEEDS)  # before Ray starts
    ensure_ray()  # the embeddings go to the object store as they are read: not the driver's
    plan = plan_train(out, cfg, labels, backbone, echo, clock)
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
        out, datasets, cfg, backbone, plan.baselines.ranked_kfold, echo, plan.decision, part
    )
    clock.lap("pooled")
    waited: list[float] = []
    metrics = _write_results(out, part, grid, pooled, plan.baselines, waited)
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


def _write_results(
    out: Path, part: str, grid: GridResult, pooled, baselines: Baselines, waited: list
) -> pa.Table:
    """Tables trials, predictions, metrics (scored a Ray task per cell; `waited` gets the
    time spent waiting on them) and cross_profile; returns the metrics."""
    predictions = pa.concat_tables([grid.predictions, *pooled.predictions])
    metrics = metrics_by_cell(predictions, baselines.recent, baselines.targets, waited)
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
