"""The whole job as a library call: the stage chain, and a run with its locks, its
published copy and its timings. `popray run` calls `run_job`; a job, a test or a notebook
can call it (or `run_stages`) the same way.

ingest -> label -> embed -> dedup -> train -> explain -> figures -> report
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from popray.config import RunConfig
from popray.errors import NothingToTrain, PoprayError, StorageError
from popray.io.storage import Location
from popray.records import RunManifest

Echo = Callable[[str], None]


def quiet_tune() -> None:
    """Without --verbose, Tune's INFO lines and its experiment banner (printed by the
    new output engine whatever the verbosity) give way to popray's one line per trial."""
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


class _Timings:
    """Each stage's wall time, as they run: the run's manifest (OUT/timings.json)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.phases: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.times[name] = round(time.perf_counter() - start, 3)

    def manifest(self) -> RunManifest:
        return RunManifest(dict(self.times), dict(self.phases))

    def line(self) -> str:
        shown = {k: v for k, v in self.times.items() if not k.startswith("embed_")}
        parts = [f"{k} {v:.1f} s" for k, v in shown.items()]
        at = list(shown).index("embed")
        parts[at] += f" (assembling the tables {self.times['embed_assemble']:.1f} s)"
        return "stage times: " + ", ".join(parts)


def run_stages(cfg: RunConfig, echo: Echo = print) -> RunManifest:
    """Every stage, in order, in `cfg.out_dir` (Ray started here unless it is already);
    writes the run's manifest (its timings, OUT/timings.json) and returns it."""
    from popray.cluster import ensure_ray
    from popray.dedup import run_dedup
    from popray.embed import run_embed
    from popray.explain import run_explain
    from popray.figures import run_figures
    from popray.ingest import run_ingest
    from popray.labels import run_label
    from popray.report import write_report
    from popray.train import run_train

    timed = _Timings()
    with timed.stage("ray_start"):
        ensure_ray()
    with timed.stage("ingest"):
        run_ingest(cfg.input_dir, cfg.out_dir)
    with timed.stage("label"):
        run_label(cfg.out_dir, cfg.label)
    with timed.stage("embed"):
        report = run_embed(cfg.out_dir, cfg.embed, cfg.storage_location())
    timed.times["embed_assemble"] = round(report.assemble_s, 3)  # inside embed's time
    timed.times["embed_assemble_core"] = round(report.parts.build_core_s, 3)  # builders' CPU
    timed.times["embed_assemble_write"] = round(report.parts.write_s, 3)  # the driver's share
    with timed.stage("dedup"):
        run_dedup(cfg.out_dir, cfg.dedup, cfg.embed.backbone, echo)
    echo(report.line())
    quiet_tune()
    try:
        with timed.stage("train"):
            trained = run_train(
                cfg.out_dir, cfg.grid, cfg.label, cfg.embed.backbone, echo, cfg.storage_location()
            )
        timed.phases = {k: round(v, 3) for k, v in trained.phases.items()}
        echo(trained.line())
        echo(trained.text())
        if cfg.grid.context_features:
            echo("explain: skipped (models with context features need post metadata)")
        elif trained.models is not None and "image" in trained.models["model"].to_pylist():
            echo("explaining the image model (Grad-CAM)")
            with timed.stage("explain"):
                run_explain(
                    cfg.out_dir, weights=cfg.embed.weights, scheme=cfg.label.scheme, echo=echo
                )
    except NothingToTrain as exc:  # the other outputs stand; say why there are no models
        echo(f"train: skipped, {exc}")
    echo("drawing the figures")
    threshold = cfg.dedup.threshold_for(cfg.embed.backbone)
    with timed.stage("figures"):
        run_figures(cfg.out_dir, cfg.embed.backbone, threshold, echo, cfg.label.scheme)
    with timed.stage("report"):
        write_report(cfg.out_dir)
    manifest = timed.manifest()
    manifest.write(cfg.out_dir)
    echo(timed.line())
    return manifest


@dataclass(frozen=True)
class JobResult:
    """Where a finished run is: `published` names the run on storage (None: not published)."""

    cfg: RunConfig
    seconds: float
    published: str | None = None


def run_job(cfg: RunConfig, echo: Echo = print) -> JobResult:
    """The whole run: one writer on OUT (and on the published location), the published
    run pulled first when there is one, the stages in a staged run folder, then the push."""
    from popray.io import lease, remote, store
    from popray.io.publish import staged_run

    start = time.perf_counter()
    target = Location.parse(cfg.publish_to) if cfg.publish_to else None
    # one writer per published location too: the lease on object storage (gs:// and other
    # stores without conditional writes are published to without one, unless they are the
    # work folder, which refuses them)
    remote_writer = (
        lease.exclusive(target, "run")
        if target is not None and (cfg.work_dir or lease.supported(target))
        else nullcontext()
    )
    pushed = None
    try:
        with store.exclusive(cfg.out_dir, "run"), remote_writer as held:
            refresh = cfg.work_dir is not None  # the scratch copy follows the work folder
            if target is not None and (pulled := remote.pull(cfg.publish_to, cfg.out_dir, refresh)):
                echo(f"started from run {pulled} published at {target.display()}")
            with staged_run(cfg.out_dir) as run_dir:
                run_stages(cfg.model_copy(update={"out_dir": run_dir}), echo)
            if target is not None:
                check = held.check if held is not None else None
                pushed = remote.push(cfg.out_dir, cfg.publish_to, check)
                echo(f"published run {pushed.run} to {target.display()}: {pushed.line()}")
    except PoprayError:
        raise
    except OSError as exc:  # object storage unreachable, credentials refused, a full disk
        raise StorageError(
            f"publishing to {target.display()}: {exc}" if target else str(exc)
        ) from exc
    return JobResult(cfg, time.perf_counter() - start, pushed.run if pushed else None)
