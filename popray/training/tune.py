"""The paper's validation grid on Ray Tune: model x k x seed x fold, per profile, and
the walk-forward windows beside it (`popray.training.walkforward`).

    popray train --out out          # 4 models x k {2, 3} x seeds {0, 1, 2} x 5 folds
                                    # + 4 models x k x seeds x (6 windows, one trial)

Folds, models and metrics are per profile: a profile is never validated on another's
posts. What the grid trains — its cells and the Tune trials they split into, a shard of
profiles per trial — is `popray.training.cells`.

Every trial runs `run_trial` (the same function `jobs.benchmark train` runs in a plain
loop): for each profile of its shard it rebuilds the fold from (model, seed, fold),
trains with `train.fit_fold` and keeps the best epoch's validation predictions. The
data go to the object store once (`tune.with_parameters`).

Engines: `in_process` trains inside the Tune trial (the heads are tiny: a Ray Train
worker group per trial would cost more than the training, see training/README.md); `ray_train`
launches a one-worker TorchTrainer from inside the trial, for GPU workers.

The grid keeps its state on storage every node reaches (`grid_root`: `<storage>/grid`,
`OUT/grid` on one machine): the Tune experiment (`storage_path` + `storage_filesystem`)
at `<grid>/<name>`, where the name fingerprints the grid options and the exact training
data, and each finished trial's result at `<grid>/<name>.results/<trial>/`, written by
the node that trained it (its rows of tables `trials` and `predictions` first,
`metrics.json` last: that object marks a finished trial). The driver reads the rows
back from that storage, never from a node's disk, and only concatenates them. An
interrupted or killed grid resumes on any head that reaches the storage: a new Tune run
of the same experiment over the trials with no result; new data start a new grid.
(Tune's own checkpoints are not the record of a finished trial: its experiment
state is only snapshotted now and then, and after a SIGKILL a restored grid knew none
of the trials that had finished. Nor is `Tuner.restore` used: its search algorithm
comes back with the trials that were live when *it* was snapshotted, and when the
experiment's snapshot already had them finished it waits for them for ever, in
10-minute naps; the two-node test's killed driver hit it.)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import ray
from ray import tune

from popray.cluster import ensure_ray
from popray.config import WALK_FORWARD, GridConfig
from popray.errors import GridError
from popray.io.storage import Location, check_cluster_reach
from popray.io.tables import conform, empty, table_schema
from popray.training.cells import Cell, TrialSpec, trial_specs
from popray.training.dataset import TrainingSet
from popray.training.timelines import Timeline
from popray.training.trials import FORMAT, METRICS_FILE, Stamp, result_tables, tune_trial
from popray.training.units import Reuse, unit_keys

READERS = 16  # trial results read at once while collecting


def fingerprint(cfg: GridConfig, backbone: str, cells: list[Cell], units: dict) -> str:
    """What the grid's results depend on: its options, its cells, and the unit
    (`popray.training.units`: items, labels, windows) of every (profile, k) they train."""
    options = cfg.model_dump(
        include={
            "models",
            "seeds",
            "folds",
            "train",
            "profiles_per_trial",
            "context_features",
            "protocols",
            "walk_forward",
        }
    )
    trained = sorted({(p, c.k) for c in cells for p in c.profiles})
    mine = [[p, k, units[(p, k)]] for p, k in trained]
    text = json.dumps([FORMAT, options, backbone, cells, mine], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Progress(tune.Callback):
    """One line per finished trial: `[17/120] image k=2 seed 0 fold 1: val acc 0.71 ...`;
    `before`: the grid's trials an earlier run finished (the count starts after them)."""

    def __init__(
        self,
        total: int,
        echo: Callable[[str], None],
        specs: dict[str, TrialSpec],
        before: int = 0,
    ) -> None:
        self.total, self.echo, self.specs, self.before = total, echo, specs, before

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        done = self.before + 1 + sum(t.status == "TERMINATED" and t is not trial for t in trials)
        c, r = self.specs[trial.config["trial"]], trial.last_result
        n = len(c.profiles)
        who = f" ({n} profiles, mean)" if n > 1 else ""
        fold = "walk-forward" if c.protocol == WALK_FORWARD else f"fold {c.fold}"
        self.echo(
            f"[{done}/{self.total}] {c.model} k={c.k} seed {c.seed} "
            f"{fold}{who}: val acc {r.get('val_accuracy', float('nan')):.3f} "
            f"(epoch {r.get('best_epoch')}) in {r.get('train_s', float('nan')):.2f} s"
        )


@dataclass
class GridResult:
    trials: pa.Table
    predictions: pa.Table
    experiment: Location | None  # None: nothing left to train, every row taken over
    resumed: bool
    reused: int  # trials finished by an earlier run (interrupted, or the same data)
    collect_s: float = 0.0  # the driver reading the finished trials back


def _max_concurrent(cfg: GridConfig) -> int:
    if cfg.max_concurrent:
        return cfg.max_concurrent
    cpus = ray.cluster_resources().get("CPU", 1)
    by_cpu = cpus // cfg.cpus_per_trial
    if cfg.gpus_per_trial:
        by_cpu = min(by_cpu, ray.cluster_resources().get("GPU", 0) // cfg.gpus_per_trial)
    return max(1, int(by_cpu))


def grid_root(out: Path, storage: Location | None = None) -> Location:
    """Where grids keep their state: `<storage>/grid`, or `OUT/grid` on one machine."""
    return (storage or Location.parse(out)).child("grid")


def run_grid(
    out: Path,
    datasets: dict[int, TrainingSet],
    cfg: GridConfig,
    backbone: str,
    echo: Callable[[str], None] = lambda line: None,
    cells: list[Cell] | None = None,
    timelines: dict[int, dict[str, Timeline]] | None = None,
    storage: Location | None = None,
    units: dict | None = None,
) -> GridResult:
    """Run (or resume) the grid over `datasets` (one per k; `cells`: the (model, k,
    profiles, protocol) to train, default every model, k and profile in stratified folds;
    walk-forward cells need `timelines`) and collect every trial. `storage`: where the
    grid's state lives (a URI every node reaches on a cluster; default OUT); `units`:
    `unit_keys` of the trained profiles, when the caller has them."""
    if cells is None:
        cells = [
            Cell(m, k, tuple(ds.profiles()))
            for m in cfg.models
            for k, ds in sorted(datasets.items())
        ]
    specs = trial_specs(cfg, cells)
    root = grid_root(out, storage)
    units = units or unit_keys(cfg, datasets, backbone, timelines)
    name = f"grid-{fingerprint(cfg, backbone, cells, units)}"
    experiment = root.child(name)
    ensure_ray()
    check_cluster_reach(root, "the grid's storage", "--storage")
    results_dir = root.child(f"{name}.results")  # one folder per finished trial
    by_name = {spec.name: spec for spec in specs}
    stamp = Stamp(name, backbone, cfg.train.epochs, cfg.engine, units)
    trainable = _trainable(
        cfg,
        {"specs": by_name, "datasets": datasets, "timelines": timelines, "cfg": cfg}
        | {"root": root, "results": results_dir, "stamp": stamp},
    )
    finished = _finished(results_dir)
    left = [spec for spec in specs if spec.name not in finished]
    reused = len(specs) - len(left)
    resumed = reused > 0 or tune.Tuner.can_restore(experiment.path(), storage_filesystem=root.fs)
    if resumed:
        echo(f"resuming {experiment.display()}: {reused} of {len(specs)} trials already done")
    results = []
    if left:  # a new Tune run over the trials with no result (see the module's docstring)
        progress = _Progress(len(specs), echo, by_name, reused)
        tuner = _tuner(trainable, left, name, root, cfg, progress)
        results = tuner.fit()
    start = time.perf_counter()
    tables = _collect(results, results_dir, specs)
    return GridResult(*tables, experiment, resumed, reused, time.perf_counter() - start)


def _trainable(cfg: GridConfig, parameters: dict):
    """`tune_trial` with the grid's data in the object store (once) and its resources."""
    # a trial's config is its name: Tune copies the whole grid into each trial's config
    # and saves every config with its state (with the specs inside, 10 s of the driver's
    # time for 480 trials at 1,000 profiles, growing with the profiles)
    trainable = tune.with_parameters(tune_trial, **parameters)  # tune_trial's arguments
    # a ray_train trial only waits on its TorchTrainer, whose worker holds the resources
    in_trial_cpus = 0.01 if cfg.engine == "ray_train" else cfg.cpus_per_trial
    in_trial_gpus = 0 if cfg.engine == "ray_train" else cfg.gpus_per_trial
    return tune.with_resources(trainable, {"cpu": in_trial_cpus, "gpu": in_trial_gpus})


def _tuner(trainable, left: list[TrialSpec], name: str, root: Location, cfg: GridConfig, progress):
    """A Tune run over the trials `left`, its experiment at `root`/`name`."""
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([spec.name for spec in left])},
        tune_config=tune.TuneConfig(max_concurrent_trials=_max_concurrent(cfg), reuse_actors=True),
        run_config=tune.RunConfig(
            name=name,
            storage_path=root.path(),
            storage_filesystem=root.fs,
            verbose=0,
            callbacks=[progress],
        ),
    )


def _finished(results_dir: Location) -> set[str]:
    """The names of the trials with a result (their `metrics.json` is written last)."""
    return {f.split("/", 1)[0] for f in results_dir.files() if f.endswith(f"/{METRICS_FILE}")}


def _collect(results, results_dir: Location, specs: list[TrialSpec]):
    """The `trials` and `predictions` tables of a finished grid, read from the grid's
    storage, where each trial wrote its own rows; GridError otherwise."""
    errors = [f"{r.config}: {r.error}" for r in results if r.error is not None]
    if errors:
        raise GridError(f"{len(errors)} trial(s) failed; first: {errors[0]}")
    finished = _finished(results_dir)
    done = [s for s in specs if s.name in finished]
    if len(done) < len(specs):
        raise GridError(
            f"grid interrupted: {len(done)} of {len(specs)} trials finished; "
            "run the same command again to resume"
        )
    with ThreadPoolExecutor(READERS) as pool:  # object storage: many requests at once
        found = list(pool.map(lambda spec: result_tables(results_dir.child(spec.name)), specs))
    if not found:
        return empty("trials"), empty("predictions")
    return (
        pa.concat_tables([trials for trials, _ in found]),
        pa.concat_tables([predictions for _, predictions in found]),
    )


def grid_with_reuse(
    out: Path,
    datasets: dict[int, TrainingSet],
    cfg: GridConfig,
    backbone: str,
    echo: Callable[[str], None],
    todo: list[Cell],
    timelines,
    storage: Location | None,
    reuse: Reuse,
    units: dict,
) -> GridResult:
    """The grid over the cells left to train (on those profiles' data only), with the
    rows taken over from the published run beside its own."""
    if not reuse.cells:
        return run_grid(out, datasets, cfg, backbone, echo, todo, timelines, storage, units)
    old_trials = reuse.trials.cast(table_schema("trials"))
    old_predictions = conform(reuse.predictions, "predictions")
    taken = len(old_trials.select(["grid", "trial"]).group_by(["grid", "trial"]).aggregate([]))
    if not todo:
        echo(f"grid: every profile unchanged, {taken} trials taken over from the published run")
        return GridResult(old_trials, old_predictions, None, False, taken)
    names = {k: sorted({p for c in todo if c.k == k for p in c.profiles}) for k in datasets}
    mine = {k: ds.for_profiles(names[k], remote=True) for k, ds in datasets.items() if names[k]}
    grid = run_grid(out, mine, cfg, backbone, echo, todo, _only(timelines, names), storage, units)
    return GridResult(
        pa.concat_tables([old_trials, grid.trials]),
        pa.concat_tables([old_predictions, grid.predictions]),
        grid.experiment,
        grid.resumed,
        grid.reused + taken,
        grid.collect_s,
    )


def _only(timelines, names: dict[int, list[str]]):
    """The walk-forward timelines of the profiles in `names` (k -> profiles)."""
    if timelines is None:
        return None
    return {
        k: {p: per[p] for p in names.get(k, [])} for k, per in timelines.items() if names.get(k)
    }
