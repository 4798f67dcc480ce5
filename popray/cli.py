"""The `popray` command line: one sub-command per stage, plus `run` for the whole chain.

popray sample --out data/demo --size demo --seed 7
popray ingest --input data/demo --out out
popray label --out out
popray sql --out out "SELECT scheme, media_type, k, class, count(*) FROM labels GROUP BY ALL"
popray run --input data/demo --out out        (or --config run.toml)
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from popray.config import StageConfig, configure, run_config
from popray.errors import ConfigError, PoprayError
from popray.io import store

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _local_out(value: Path) -> Path:
    """A stage command works in a local output folder: a URI gets a clear error (typer
    has already made it a Path, which folds `s3://` into `s3:/`)."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", str(value)):
        raise typer.BadParameter(
            f"{value}: this command works in an output folder on this machine; a work folder "
            "on object storage is for `popray run --out s3://...` (and `popray sql --out "
            "s3://...` reads what it published)"
        )
    return value


OutOpt = Annotated[Path, typer.Option("--out", help="output folder", callback=_local_out)]
ConfigOpt = Annotated[
    Path | None, typer.Option(help="run configuration (.toml/.yaml): its options, under the flags")
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="storage every node reaches, on a cluster: new embeddings and the grid's state "
        "(s3://bucket/prefix)"
    ),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"popray: error: {message}", err=True)
    raise typer.Exit(code)


def command(fn: Callable[..., None]) -> Callable[..., None]:
    """A sub-command; the one place where popray's errors become `popray: error: ...`
    and exit status 2 (anything else is a bug, and shows its traceback)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except PoprayError as exc:
            _fail(str(exc))

    return app.command()(run)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@command
def sample(
    out: OutOpt,
    size: Annotated[str, typer.Option(help="tiny | demo | paper")] = "demo",
    posts: Annotated[int | None, typer.Option(help="number of posts (default: by size)")] = None,
    seed: int = 0,
    profiles: Annotated[
        int, typer.Option(help="profiles in the export (>1: sizes and signals vary)")
    ] = 1,
) -> None:
    """Write a realistic sample profile export (images, H.264 videos, metadata)."""
    from popray.tools.sample import generate, generate_many, profile_specs, spec_for

    start = time.perf_counter()
    if profiles > 1:
        specs = profile_specs(profiles, seed, posts or 60)
        truth = generate_many(out, specs)
        n_media = sum(len(t["media_subject"]) for t in truth["profiles"].values())
        typer.echo(
            f"wrote {profiles} profiles, {n_media} media of {sum(s.posts for s in specs)} posts "
            f"to {out} in {time.perf_counter() - start:.1f} s"
        )
        return
    spec = spec_for(size, seed, posts)
    truth = generate(out, spec)
    typer.echo(
        f"wrote {len(truth['media_subject'])} media of {spec.posts} posts (+4 corrupt) to {out} "
        f"in {time.perf_counter() - start:.1f} s"
    )


@command
def ingest(
    out: OutOpt,
    input: Annotated[
        str | None,
        typer.Option("--input", help="profile export: a folder, or s3://, gs://, file://"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate a profile export into Parquet tables and OUT/popray.duckdb."""
    from popray.ingest import run_ingest

    source = run_config(config, input).input_dir
    with store.exclusive(out, "ingest"):
        result = run_ingest(source, out)
    counts = ", ".join(f"{k} {v.num_rows}" for k, v in result.tables.items())
    typer.echo(f"ingested {source.split('?', 1)[0]} -> {out}: {counts}")


@command
def label(
    out: OutOpt,
    k: Annotated[list[int] | None, typer.Option("--k", help="class counts (repeat)")] = None,
    window_days: Annotated[float | None, typer.Option(help="rolling window width")] = None,
    keep_extremes: Annotated[
        float | None, typer.Option(help="residual: keep top/bottom fraction only (k=2)")
    ] = None,
    ratio_threshold: Annotated[
        float | None, typer.Option(help="ratio_threshold: likes/followers cut")
    ] = None,
    moving_average_posts: Annotated[
        int | None, typer.Option(help="likes_moving_average: previous posts")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Compute followers at post time, PoR and the classes of every label scheme
    (table `labels`: por_rolling, por_global, residual, ratio_threshold,
    likes_moving_average)."""
    from popray.labels import run_label

    cfg = configure(
        config,
        {
            "label.k": k,
            "label.window_days": window_days,
            "label.keep_extremes": keep_extremes,
            "label.ratio_threshold": ratio_threshold,
            "label.moving_average_posts": moving_average_posts,
        },
    )
    with store.exclusive(out, "label"):
        labels = run_label(out, cfg.label)
    typer.echo(f"labelled {labels.num_rows} (media, scheme, k) rows -> {out}/tables/labels")


@command
def embed(
    out: OutOpt,
    backbone: Annotated[str | None, typer.Option(help="timm model name")] = None,
    weights: Annotated[str | None, typer.Option(help="checkpoint path, or 'random'")] = None,
    views: Annotated[int | None, typer.Option(help="augmented views per image")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    config: ConfigOpt = None,
    storage: StorageOpt = None,
) -> None:
    """Decode media and embed them with the frozen backbone (Ray Data, GPU when present)."""
    from popray.embed import run_embed

    cfg = configure(
        config,
        {
            "embed.backbone": backbone,
            "embed.weights": weights,
            "embed.views": views,
            "embed.device": device,
            "storage": storage,
        },
    )
    with store.exclusive(out, "embed"):
        report = run_embed(out, cfg.embed, cfg.storage_location())
    typer.echo(report.line())
    for media_id, reason in report.new_reasons.items():
        typer.echo(f"  quarantined {media_id}: {reason}")


@command
def dedup(
    out: OutOpt,
    backbone: Annotated[str | None, typer.Option(help="whose embeddings to compare")] = None,
    threshold: Annotated[float | None, typer.Option(help="Euclidean distance")] = None,
    config: ConfigOpt = None,
) -> None:
    """Find near-duplicate media (tables `duplicates` and `nn_distances`)."""
    from popray.dedup import run_dedup

    cfg = configure(config, {"embed.backbone": backbone, "dedup.threshold": threshold})
    net = cfg.embed.backbone
    with store.exclusive(out, "dedup"):
        dups, nns = run_dedup(out, cfg.dedup, net, typer.echo)
    removed = sum(1 for k in dups["kept"].to_pylist() if not k)
    typer.echo(
        f"{removed} near-duplicates in {len(set(dups['group_id'].to_pylist()))} groups "
        f"(threshold {cfg.dedup.threshold_for(net):g}); {nns.num_rows} items compared"
    )


@command
def train(
    out: OutOpt,
    config: ConfigOpt = None,
    models: Annotated[list[str] | None, typer.Option("--model", help="model (repeat)")] = None,
    k: Annotated[list[int] | None, typer.Option("--k", help="class counts (repeat)")] = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="seeds (repeat)")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs per training")] = None,
    engine: Annotated[str | None, typer.Option(help="in_process | ray_train")] = None,
    backbone: Annotated[str | None, typer.Option(help="whose embeddings to train on")] = None,
    scheme: Annotated[str | None, typer.Option(help="label scheme to learn")] = None,
    context: Annotated[
        bool | None, typer.Option("--context/--no-context", help="context features too")
    ] = None,
    protocols: Annotated[
        list[str] | None,
        typer.Option("--protocol", help="stratified_kfold | walk_forward (repeat; default both)"),
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """Run the validation grid (model x k x seed x fold, and the walk-forward windows) on
    Ray Tune, then final models."""
    from popray.pipeline import quiet_tune
    from popray.train import run_train

    cfg = configure(
        config,
        {
            "grid.models": models,
            "grid.k": k,
            "grid.seeds": seeds,
            "grid.engine": engine,
            "grid.protocols": protocols,
            "grid.context_features": context,
            "grid.train.epochs": epochs,
            "label.scheme": scheme,
            "embed.backbone": backbone,
            "storage": storage,
        },
    )
    quiet_tune()
    with store.exclusive(out, "train"):
        report = run_train(
            out, cfg.grid, cfg.label, cfg.embed.backbone, typer.echo, cfg.storage_location()
        )
    typer.echo(report.line())
    typer.echo(report.text())


def _models_of(config: Path | None, cfg: StageConfig, scheme: str | None) -> str | None:
    """Whose saved models `explain` and `predict` use: --scheme, else the configuration
    file's label scheme; neither given, the one scheme trained (several: an error)."""
    return scheme or (cfg.label.scheme if config is not None else None)


@command
def explain(
    out: OutOpt,
    k: Annotated[
        int | None, typer.Option(help="classes of the image model (default: smallest)")
    ] = None,
    per_class: Annotated[int, typer.Option(help="labelled images per class")] = 3,
    media: Annotated[list[Path] | None, typer.Option("--media", help="image file (repeat)")] = None,
    weights: Annotated[str | None, typer.Option(help="backbone weights used to embed")] = None,
    profile: Annotated[str | None, typer.Option(help="whose models (several profiles)")] = None,
    scheme: Annotated[str | None, typer.Option(help="label scheme of the models")] = None,
    extremes: Annotated[
        int, typer.Option(help="highest- and lowest-scored images per profile (out of fold)")
    ] = 3,
    config: ConfigOpt = None,
) -> None:
    """Grad-CAM heatmaps of the image model: a sample of each class and the highest- and
    lowest-scored images (of each profile, or of --profile), and --media files."""
    from popray.explain import run_explain

    cfg = configure(config, {"embed.weights": weights, "label.scheme": scheme})
    with store.exclusive(out, "explain"):
        table = run_explain(
            out,
            k,
            per_class,
            media,
            cfg.embed.weights,
            profile,
            _models_of(config, cfg, scheme),
            extremes,
            typer.echo,
        )
    for row in table.to_pylist():
        what = row["media_id"] or row["file"]
        if row["error"]:
            typer.echo(f"  {what}: error: {row['error']}")
        else:
            proba = " ".join(f"{p:.2f}" for p in row["proba"])
            label = "" if row["label"] is None else f"class {row['label']}, "
            typer.echo(f"  {what}: {label}predicted {row['pred']} ({proba}) -> {out / row['path']}")


@command
def predict(
    out: OutOpt,
    media: Annotated[list[Path], typer.Option("--media", help="file or folder (repeat)")],
    k: Annotated[int | None, typer.Option(help="classes (default: the largest trained)")] = None,
    weights: Annotated[str | None, typer.Option(help="backbone weights used to embed")] = None,
    profile: Annotated[str | None, typer.Option(help="whose models (several profiles)")] = None,
    scheme: Annotated[str | None, typer.Option(help="label scheme of the models")] = None,
    config: ConfigOpt = None,
) -> None:
    """Rank new candidate images/videos by predicted popularity for one profile (with
    Grad-CAM per image)."""
    from popray.predict import run_predict
    from popray.training.final import POOLED

    cfg = configure(config, {"embed.weights": weights, "label.scheme": scheme})
    with store.exclusive(out, "predict"):
        table = run_predict(
            out, media, k, cfg.embed.weights, profile, _models_of(config, cfg, scheme)
        )
    if profile and any(r["profile_id"] == POOLED for r in table.to_pylist()):
        typer.echo(
            f"profile {profile!r} has no model of its own: ranked by the cross-profile "
            "models, trained on every profile's items (table cross_profile compares them "
            "with a profile's own model by history length)"
        )
    typer.echo(f"{'rank':>4}  {'score':>5}  class  probabilities       file")
    for r in table.to_pylist():
        if r["error"]:
            typer.echo(f"{'-':>4}  {'':>5}  {'':>5}  {'':<18}  {r['file']}: error: {r['error']}")
            continue
        proba = " ".join(f"{p:.2f}" for p in r["proba"])
        heat = f"  (Grad-CAM: {out / r['gradcam']})" if r["gradcam"] else ""
        typer.echo(
            f"{r['rank']:>4}  {r['score']:>5.2f}  {r['pred']:>5}  {proba:<18}  {r['file']}"
            f" [{r['model']}, k={r['k']}]{heat}"
        )


@command
def figures(
    out: OutOpt,
    backbone: Annotated[str | None, typer.Option(help="whose embeddings to map")] = None,
    threshold: Annotated[float | None, typer.Option(help="duplicate threshold to mark")] = None,
    scheme: Annotated[str | None, typer.Option(help="label scheme of the models' figures")] = None,
    config: ConfigOpt = None,
) -> None:
    """Draw the paper's figures from the output tables into OUT/figures/."""
    from popray.figures import run_figures

    cfg = configure(
        config,
        {"embed.backbone": backbone, "dedup.threshold": threshold, "label.scheme": scheme},
    )
    net = cfg.embed.backbone
    with store.exclusive(out, "figures"):
        run_figures(out, net, cfg.dedup.threshold_for(net), typer.echo, cfg.label.scheme)


@command
def report(out: OutOpt) -> None:
    """Write the self-contained HTML report OUT/report/index.html."""
    from popray.report import write_report

    with store.exclusive(out, "report"):
        typer.echo(f"report: {write_report(out)}")


@command
def sql(
    out: Annotated[str, typer.Option("--out", help="output folder, or a --publish-to URI")],
    query: Annotated[str, typer.Argument(help="one SQL statement")],
) -> None:
    """Run a read-only SQL query over the output views and print the result as a table."""
    from popray.io.remote import open_outputs

    con = open_outputs(out)
    try:
        store.show(con, query)
    finally:
        con.close()


@command
def summary(out: OutOpt) -> None:
    """Print the run summary (inputs, quarantine, class balance)."""
    from popray.summary import summary_text

    typer.echo(summary_text(out))


@command
def run(
    config: ConfigOpt = None,
    input: Annotated[
        str | None,
        typer.Option("--input", help="profile export: a folder, or s3://, gs://, file://"),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="output folder, or a work folder on object storage (s3://bucket/prefix)",
        ),
    ] = None,
    publish_to: Annotated[
        str | None,
        typer.Option("--publish-to", help="also publish to object storage (s3://, gs://)"),
    ] = None,
    storage: StorageOpt = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    ] = None,
) -> None:
    """Run the whole job: ingest -> label -> embed -> dedup -> train -> explain ->
    figures -> report."""
    from popray.io.storage import Location
    from popray.pipeline import run_job
    from popray.summary import summary_text

    cfg = run_config(config, input, out, publish_to, storage)
    if address:  # every stage's ray.init() joins it (inside `ray job submit` it is set)
        os.environ["RAY_ADDRESS"] = address
    done = run_job(cfg, typer.echo)
    typer.echo(summary_text(cfg.out_dir))
    if cfg.work_dir:
        where = Location.parse(cfg.work_dir).display()
        typer.echo(f"done in {done.seconds:.1f} s; published at {where}/")
        typer.echo(f'query them: popray sql --out {where} "SELECT * FROM metrics"')
        typer.echo(f"report: {where}/runs/{done.published}/report/index.html")
        return
    typer.echo(f"done in {done.seconds:.1f} s; outputs in {cfg.out_dir}/")
    typer.echo(f'query them: popray sql --out {cfg.out_dir} "SELECT * FROM metrics"')
    typer.echo(f"report: {(cfg.out_dir / 'report' / 'index.html').absolute()}")


@command
def plan(
    profiles: Annotated[int | None, typer.Option(help="profiles in the run", min=1)] = None,
    posts_per_profile: Annotated[int | None, typer.Option(help="posts per profile", min=1)] = None,
    cpus: Annotated[int, typer.Option(help="CPU cores of the cluster", min=1)] = 2,
    gpus: Annotated[int, typer.Option(help="GPUs of the cluster (embedding)", min=0)] = 0,
    costs: Annotated[
        Path | None, typer.Option(help="unit costs (python -m jobs.benchmark costs)")
    ] = None,
    walk_forward: Annotated[
        bool, typer.Option("--walk-forward/--folds-only", help="the grid's protocols")
    ] = True,
    against: Annotated[
        Path | None,
        typer.Option(help="OUT of a finished `popray run`: the plan for its size beside its times"),
    ] = None,
) -> None:
    """Expected wall time per stage, and the bottleneck, of a full run of that size (or,
    with --against OUT, of that run's size, beside what each stage took)."""
    from popray.tools.plan import UnitCosts, plan_text
    from popray.tools.plan import plan as make_plan

    unit = UnitCosts.load(costs) if costs else UnitCosts()
    if against is not None:
        from popray.tools.plan_check import check_run, check_text

        checks = check_run(against, unit, cpus, gpus)
        typer.echo(f"{against}: planned on {cpus} cores, {gpus} GPUs, costs from {unit.source}")
        typer.echo(check_text(checks))
        return
    if profiles is None or posts_per_profile is None:
        raise ConfigError("give --profiles and --posts-per-profile (or --against OUT)")
    typer.echo(
        f"{profiles} profiles x {posts_per_profile} posts, {cpus} cores, {gpus} GPUs; "
        f"unit costs from {unit.source}"
    )
    stages = make_plan(unit, profiles, posts_per_profile, cpus, gpus, walk_forward)
    typer.echo(plan_text(stages))


@command
def schemas(check: Annotated[bool, typer.Option(help="only check, write nothing")] = False) -> None:
    """Regenerate (or check) the JSON/Arrow schema files under schemas/."""
    from popray.io.schemas_export import stale_schemas, write_schemas

    if check:
        stale = stale_schemas()
        if stale:
            _fail(f"out of date under schemas/: {stale}; run `popray schemas`", code=1)
        typer.echo("schemas/ is up to date")
        return
    written = write_schemas()
    typer.echo(f"wrote {len(written)} file(s)" + "".join(f"\n  {p}" for p in written))


def job(stage: str):
    """The `main()` of `python -m jobs.<stage>`: the same command, its own program name."""

    def main() -> None:
        app([stage, *sys.argv[1:]], prog_name=f"python -m jobs.{stage}")

    return main
