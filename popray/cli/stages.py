"""The stage commands: one per stage of the chain, and `run` for the whole of it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from popray.cli.app import (
    BackboneOpt,
    ConfigOpt,
    KsOpt,
    OutOpt,
    ProfileOpt,
    SchemeOpt,
    StorageOpt,
    ThresholdOpt,
    WeightsOpt,
    _models_of,
    command,
)
from popray.configure import configure, run_config
from popray.io import store


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
    k: KsOpt = None,
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
    backbone: BackboneOpt = None,
    weights: WeightsOpt = None,
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
    typer.echo(report.text())


@command
def dedup(
    out: OutOpt,
    backbone: BackboneOpt = None,
    threshold: ThresholdOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Find near-duplicate media (tables `duplicates` and `nn_distances`)."""
    from popray.dedup import run_dedup

    cfg = configure(config, {"embed.backbone": backbone, "dedup.threshold": threshold})
    with store.exclusive(out, "dedup"):
        report = run_dedup(out, cfg.dedup, cfg.embed.backbone, typer.echo)
    typer.echo(report.line())


@command
def train(
    out: OutOpt,
    config: ConfigOpt = None,
    models: Annotated[list[str] | None, typer.Option("--model", help="model (repeat)")] = None,
    k: KsOpt = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="seeds (repeat)")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs per training")] = None,
    engine: Annotated[str | None, typer.Option(help="in_process | ray_train")] = None,
    backbone: BackboneOpt = None,
    scheme: SchemeOpt = None,
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


@command
def explain(
    out: OutOpt,
    k: Annotated[
        int | None, typer.Option(help="classes of the image model (default: smallest)")
    ] = None,
    per_class: Annotated[int, typer.Option(help="labelled images per class")] = 3,
    media: Annotated[list[Path] | None, typer.Option("--media", help="image file (repeat)")] = None,
    weights: WeightsOpt = None,
    profile: ProfileOpt = None,
    scheme: SchemeOpt = None,
    extremes: Annotated[
        int, typer.Option(help="highest- and lowest-scored images per profile (out of fold)")
    ] = 3,
    config: ConfigOpt = None,
) -> None:
    """Grad-CAM heatmaps of the image model: a sample of each class and the highest- and
    lowest-scored images (of each profile, or of --profile), and --media files."""
    from popray.explain import explained_lines, run_explain

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
    for line in explained_lines(table, out):
        typer.echo(line)


@command
def figures(
    out: OutOpt,
    backbone: BackboneOpt = None,
    threshold: ThresholdOpt = None,
    scheme: SchemeOpt = None,
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
