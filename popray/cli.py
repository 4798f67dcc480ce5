"""The `popray` command line: one sub-command per stage, plus `run` for the whole chain.

popray sample --out data/demo --size demo --seed 7
popray ingest --input data/demo --out out
popray label --out out
popray sql --out out "SELECT scheme, media_type, k, class, count(*) FROM labels GROUP BY ALL"
popray run --input data/demo --out out        (or --config run.toml)
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import duckdb
import typer
from pydantic import ValidationError

from popray import store
from popray.config import (
    DedupConfig,
    EmbedConfig,
    GridConfig,
    LabelConfig,
    RunConfig,
    load_config,
)
from popray.ingest import InputError
from popray.storage import Location, is_uri

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
StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="storage every node reaches, on a cluster: new embeddings and the grid's state "
        "(s3://bucket/prefix)"
    ),
]


def _storage(option: str | None, run_cfg: RunConfig | None) -> Location | None:
    """The run's shared storage: --storage, else the config's."""
    if option:
        return Location.parse(option)
    return run_cfg.storage_location() if run_cfg else None


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"popray: error: {message}", err=True)
    raise typer.Exit(code)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
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
    from popray.sample import generate, generate_many, profile_specs, spec_for

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
    try:
        spec = spec_for(size, seed, posts)
    except ValueError as exc:
        _fail(str(exc))
    truth = generate(out, spec)
    typer.echo(
        f"wrote {len(truth['media_subject'])} media of {spec.posts} posts (+4 corrupt) to {out} "
        f"in {time.perf_counter() - start:.1f} s"
    )


@app.command()
def ingest(
    input: Annotated[
        str, typer.Option("--input", help="profile export: a folder, or s3://, gs://, file://")
    ],
    out: OutOpt,
) -> None:
    """Validate a profile export into Parquet tables and OUT/popray.duckdb."""
    from popray.ingest import run_ingest

    try:
        with store.exclusive(out, "ingest"):
            result = run_ingest(input, out)
    except (InputError, store.LockedError) as exc:
        _fail(str(exc))
    counts = ", ".join(f"{k} {v.num_rows}" for k, v in result.tables.items())
    typer.echo(f"ingested {input.split('?', 1)[0]} -> {out}: {counts}")


def _label_config(k: list[int] | None, **given) -> LabelConfig:
    options = {name: value for name, value in given.items() if value is not None}
    if k:
        options["k"] = k
    try:
        return LabelConfig(**options)
    except ValidationError as exc:
        _fail(f"invalid label options: {exc}")
        raise  # unreachable; keeps type checkers happy


@app.command()
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
) -> None:
    """Compute followers at post time, PoR and the classes of every label scheme
    (table `labels`: por_rolling, por_global, residual, ratio_threshold,
    likes_moving_average)."""
    from popray.labels import run_label

    cfg = _label_config(
        k,
        window_days=window_days,
        keep_extremes=keep_extremes,
        ratio_threshold=ratio_threshold,
        moving_average_posts=moving_average_posts,
    )
    try:
        with store.exclusive(out, "label"):
            labels = run_label(out, cfg)
    except (FileNotFoundError, store.LockedError) as exc:
        _fail(str(exc))
    typer.echo(f"labelled {labels.num_rows} (media, scheme, k) rows -> {out}/tables/labels")


@app.command()
def embed(
    out: OutOpt,
    backbone: Annotated[str | None, typer.Option(help="timm model name")] = None,
    weights: Annotated[str | None, typer.Option(help="checkpoint path, or 'random'")] = None,
    views: Annotated[int | None, typer.Option(help="augmented views per image")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    config: Annotated[Path | None, typer.Option(help="run configuration (.toml/.yaml)")] = None,
    storage: StorageOpt = None,
) -> None:
    """Decode media and embed them with the frozen backbone (Ray Data, GPU when present)."""
    from popray.backbones import WeightsError
    from popray.embed import run_embed

    options = {"backbone": backbone, "weights": weights, "views": views, "device": device}
    try:
        run_cfg = load_config(config) if config else None
        base = run_cfg.embed if run_cfg else EmbedConfig()
        cfg = EmbedConfig.model_validate(
            base.model_dump() | {k: v for k, v in options.items() if v is not None}
        )
        shared = _storage(storage, run_cfg)
        with store.exclusive(out, "embed"):
            report = run_embed(out, cfg, shared)
    except (FileNotFoundError, ValueError, WeightsError, store.LockedError) as exc:
        _fail(str(exc))
    typer.echo(report.line())
    for media_id, reason in report.new_reasons.items():
        typer.echo(f"  quarantined {media_id}: {reason}")


@app.command()
def dedup(
    out: OutOpt,
    backbone: Annotated[str, typer.Option(help="whose embeddings to compare")] = (
        "efficientnet_lite0"
    ),
    threshold: Annotated[float | None, typer.Option(help="Euclidean distance")] = None,
) -> None:
    """Find near-duplicate media (tables `duplicates` and `nn_distances`)."""
    from popray.dedup import run_dedup

    try:
        cfg = DedupConfig(threshold=threshold)
        with store.exclusive(out, "dedup"):
            dups, nns = run_dedup(out, cfg, backbone, typer.echo)
    except (FileNotFoundError, ValueError, duckdb.Error, store.LockedError) as exc:
        _fail(str(exc))
    removed = sum(1 for k in dups["kept"].to_pylist() if not k)
    typer.echo(
        f"{removed} near-duplicates in {len(set(dups['group_id'].to_pylist()))} groups "
        f"(threshold {cfg.threshold_for(backbone):g}); {nns.num_rows} items compared"
    )


def _quiet_tune() -> None:
    """Without --verbose, Tune's INFO lines and its experiment banner (printed by the
    new output engine whatever the verbosity) give way to popray's one line per trial."""
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@app.command()
def train(
    out: OutOpt,
    config: Annotated[Path | None, typer.Option(help="run configuration (.toml/.yaml)")] = None,
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
    from popray.grid import GridError, run_train

    try:
        run_cfg = load_config(config) if config else None
        base = run_cfg.grid if run_cfg else GridConfig()
        options = {
            "models": models,
            "k": k,
            "seeds": seeds,
            "engine": engine,
            "protocols": protocols,
        }
        merged = base.model_dump() | {key: v for key, v in options.items() if v}
        if context is not None:
            merged["context_features"] = context
        if epochs is not None:
            merged["train"] = merged["train"] | {"epochs": epochs}
        cfg = GridConfig.model_validate(merged)
        label_cfg = run_cfg.label if run_cfg else LabelConfig()
        if scheme:
            label_cfg = LabelConfig.model_validate(label_cfg.model_dump() | {"scheme": scheme})
        net = backbone or (run_cfg.embed if run_cfg else EmbedConfig()).backbone
        shared = _storage(storage, run_cfg)
        _quiet_tune()
        with store.exclusive(out, "train"):
            report = run_train(out, cfg, label_cfg, net, typer.echo, shared)
    except (FileNotFoundError, ValueError, GridError, store.LockedError) as exc:
        _fail(str(exc))
    typer.echo(report.line())
    typer.echo(report.text())


@app.command()
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
) -> None:
    """Grad-CAM heatmaps of the image model: a sample of each class and the highest- and
    lowest-scored images (of each profile, or of --profile), and --media files."""
    from popray.backbones import WeightsError
    from popray.explain import run_explain

    try:
        with store.exclusive(out, "explain"):
            table = run_explain(
                out, k, per_class, media, weights, profile, scheme, extremes, typer.echo
            )
    except (FileNotFoundError, ValueError, WeightsError, store.LockedError) as exc:
        _fail(str(exc))
    for row in table.to_pylist():
        what = row["media_id"] or row["file"]
        if row["error"]:
            typer.echo(f"  {what}: error: {row['error']}")
        else:
            proba = " ".join(f"{p:.2f}" for p in row["proba"])
            label = "" if row["label"] is None else f"class {row['label']}, "
            typer.echo(f"  {what}: {label}predicted {row['pred']} ({proba}) -> {out / row['path']}")


@app.command()
def predict(
    out: OutOpt,
    media: Annotated[list[Path], typer.Option("--media", help="file or folder (repeat)")],
    k: Annotated[int | None, typer.Option(help="classes (default: the largest trained)")] = None,
    weights: Annotated[str | None, typer.Option(help="backbone weights used to embed")] = None,
    profile: Annotated[str | None, typer.Option(help="whose models (several profiles)")] = None,
    scheme: Annotated[str | None, typer.Option(help="label scheme of the models")] = None,
) -> None:
    """Rank new candidate images/videos by predicted popularity for one profile (with
    Grad-CAM per image)."""
    from popray.backbones import WeightsError
    from popray.predict import run_predict

    try:
        with store.exclusive(out, "predict"):
            table = run_predict(out, media, k, weights, profile, scheme)
    except (FileNotFoundError, ValueError, WeightsError, store.LockedError) as exc:
        _fail(str(exc))
    from popray.final import POOLED

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


@app.command()
def figures(
    out: OutOpt,
    backbone: Annotated[str, typer.Option(help="whose embeddings to map")] = "efficientnet_lite0",
    threshold: Annotated[float | None, typer.Option(help="duplicate threshold to mark")] = None,
    scheme: Annotated[str, typer.Option(help="label scheme of the models' figures")] = (
        "por_rolling"
    ),
) -> None:
    """Draw the paper's figures from the output tables into OUT/figures/."""
    from popray.figures import run_figures

    try:
        threshold_ = DedupConfig(threshold=threshold).threshold_for(backbone)
        with store.exclusive(out, "figures"):
            run_figures(out, backbone, threshold_, typer.echo, scheme)
    except (FileNotFoundError, ValueError, duckdb.Error, store.LockedError) as exc:
        _fail(str(exc))


@app.command()
def report(out: OutOpt) -> None:
    """Write the self-contained HTML report OUT/report/index.html."""
    from popray.report import write_report

    try:
        with store.exclusive(out, "report"):
            typer.echo(f"report: {write_report(out)}")
    except (FileNotFoundError, duckdb.Error, store.LockedError) as exc:
        _fail(str(exc))


@app.command()
def sql(
    out: Annotated[str, typer.Option("--out", help="output folder, or a --publish-to URI")],
    query: Annotated[str, typer.Argument(help="one SQL statement")],
) -> None:
    """Run a read-only SQL query over the output views and print the result as a table."""
    from popray import remote, storage, store

    try:
        con = remote.connect(out) if storage.is_uri(out) else store.connect(Path(out))
    except (FileNotFoundError, ValueError, OSError) as exc:
        _fail(str(exc))
    try:
        rel = con.sql(query)
        if rel is not None:
            rel.show(max_rows=1_000, max_width=200)
    except duckdb.Error as exc:
        _fail(str(exc))
    finally:
        con.close()


@app.command()
def summary(out: OutOpt) -> None:
    """Print the run summary (inputs, quarantine, class balance)."""
    from popray.summary import summary_text

    try:
        typer.echo(summary_text(out))
    except (FileNotFoundError, duckdb.Error) as exc:
        _fail(f"{exc}\n(outputs written by an older popray? run `popray run` again)")


def _run_stages(cfg: RunConfig) -> None:
    """ingest -> label -> embed -> dedup -> train -> explain -> figures -> report."""
    import ray

    from popray.dedup import run_dedup
    from popray.embed import run_embed
    from popray.explain import run_explain
    from popray.figures import run_figures
    from popray.grid import NothingToTrain, run_train
    from popray.ingest import run_ingest
    from popray.labels import run_label
    from popray.plan import TIMINGS_FILE
    from popray.report import write_report

    timings: dict[str, float | dict[str, float]] = {}

    @contextmanager
    def timed(stage: str):
        start = time.perf_counter()
        yield
        timings[stage] = round(time.perf_counter() - start, 3)

    with timed("ray_start"):
        if not ray.is_initialized():
            ray.init()
    with timed("ingest"):
        run_ingest(cfg.input_dir, cfg.out_dir)
    with timed("label"):
        run_label(cfg.out_dir, cfg.label)
    with timed("embed"):
        report = run_embed(cfg.out_dir, cfg.embed, cfg.storage_location())
    timings["embed_assemble"] = round(report.assemble_s, 3)  # inside embed's time
    timings["embed_assemble_core"] = round(report.parts.build_core_s, 3)  # the builders' CPU
    timings["embed_assemble_write"] = round(report.parts.write_s, 3)  # the driver's share
    with timed("dedup"):
        run_dedup(cfg.out_dir, cfg.dedup, cfg.embed.backbone, typer.echo)
    typer.echo(report.line())
    _quiet_tune()
    try:
        with timed("train"):
            trained = run_train(
                cfg.out_dir,
                cfg.grid,
                cfg.label,
                cfg.embed.backbone,
                typer.echo,
                cfg.storage_location(),
            )
        timings["train_phases"] = {k: round(v, 3) for k, v in trained.phases.items()}
        typer.echo(trained.line())
        typer.echo(trained.text())
        if cfg.grid.context_features:
            typer.echo("explain: skipped (models with context features need post metadata)")
        elif trained.models is not None and "image" in trained.models["model"].to_pylist():
            typer.echo("explaining the image model (Grad-CAM)")
            with timed("explain"):
                run_explain(
                    cfg.out_dir,
                    weights=cfg.embed.weights,
                    scheme=cfg.label.scheme,
                    echo=typer.echo,
                )
    except NothingToTrain as exc:  # the other outputs stand; say why there are no models
        typer.echo(f"train: skipped, {exc}")
    typer.echo("drawing the figures")
    threshold = cfg.dedup.threshold_for(cfg.embed.backbone)
    with timed("figures"):
        run_figures(cfg.out_dir, cfg.embed.backbone, threshold, typer.echo, cfg.label.scheme)
    with timed("report"):
        write_report(cfg.out_dir)
    (cfg.out_dir / TIMINGS_FILE).write_text(json.dumps(timings, indent=1))
    shown = {
        k: v for k, v in timings.items() if isinstance(v, float) and not k.startswith("embed_")
    }
    parts = [f"{k} {v:.1f} s" for k, v in shown.items()]
    at = list(shown).index("embed")
    parts[at] += f" (assembling the tables {timings['embed_assemble']:.1f} s)"
    typer.echo("stage times: " + ", ".join(parts))


@app.command()
def run(
    config: Annotated[Path | None, typer.Option(help="run configuration (.toml/.yaml)")] = None,
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
    from popray import lease, remote
    from popray.backbones import WeightsError
    from popray.grid import GridError
    from popray.publish import staged_run
    from popray.summary import summary_text

    try:
        cfg = load_config(config) if config else None
        given = {"input_dir": input, "publish_to": publish_to, "storage": storage}
        if out and is_uri(out):
            given["work_dir"] = out
        elif out:
            given["out_dir"] = Path(out)
        overrides = {k: v for k, v in given.items() if v}
        if cfg is None:
            if input is None:
                _fail("give --config FILE or --input DIR")
            cfg = RunConfig(**overrides)
        elif overrides:
            dumped = cfg.model_dump()
            if "work_dir" in overrides:  # what the config's own folders derived goes
                dumped.pop("out_dir")
                if cfg.work_dir and dumped["publish_to"] == cfg.work_dir:
                    dumped.pop("publish_to")
                if (
                    cfg.work_dir
                    and dumped["storage"] == Location.parse(cfg.work_dir).child("work").uri
                ):
                    dumped.pop("storage")
            cfg = RunConfig.model_validate(dumped | overrides)
        target = Location.parse(cfg.publish_to) if cfg.publish_to else None
    except (OSError, ValueError) as exc:  # ValidationError is a ValueError
        _fail(str(exc))
    if address:  # every stage's ray.init() joins it (inside `ray job submit` it is set)
        os.environ["RAY_ADDRESS"] = address
    start = time.perf_counter()
    # one writer per published location too: the lease on object storage (gs:// and other
    # stores without conditional writes are published to without one, unless they are the
    # work folder, which refuses them)
    remote_writer = (
        lease.exclusive(target, "run")
        if target is not None and (cfg.work_dir or lease.supported(target))
        else nullcontext()
    )
    try:
        with store.exclusive(cfg.out_dir, "run"), remote_writer as held:
            refresh = cfg.work_dir is not None  # the scratch copy follows the work folder
            if cfg.publish_to and (pulled := remote.pull(cfg.publish_to, cfg.out_dir, refresh)):
                typer.echo(f"started from run {pulled} published at {target.display()}")
            with staged_run(cfg.out_dir) as run_dir:
                _run_stages(cfg.model_copy(update={"out_dir": run_dir}))
            if cfg.publish_to:
                check = held.check if held is not None else None
                pushed = remote.push(cfg.out_dir, cfg.publish_to, check)
                typer.echo(f"published run {pushed.run} to {target.display()}: {pushed.line()}")
    except (InputError, WeightsError, ValueError, GridError, store.LockedError) as exc:
        _fail(str(exc))
    except OSError as exc:  # object storage unreachable, credentials refused, ...
        _fail(f"publishing to {target.display()}: {exc}" if target else str(exc))
    typer.echo(summary_text(cfg.out_dir))
    if cfg.work_dir:
        where = target.display()
        typer.echo(f"done in {time.perf_counter() - start:.1f} s; published at {where}/")
        typer.echo(f'query them: popray sql --out {where} "SELECT * FROM metrics"')
        typer.echo(f"report: {where}/runs/{pushed.run}/report/index.html")
        return
    typer.echo(f"done in {time.perf_counter() - start:.1f} s; outputs in {cfg.out_dir}/")
    typer.echo(f'query them: popray sql --out {cfg.out_dir} "SELECT * FROM metrics"')
    typer.echo(f"report: {(cfg.out_dir / 'report' / 'index.html').absolute()}")


@app.command()
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
    from popray.plan import UnitCosts, plan_text
    from popray.plan import plan as make_plan

    try:
        unit = UnitCosts.load(costs) if costs else UnitCosts()
    except (OSError, ValueError, TypeError) as exc:
        _fail(f"{costs}: not a unit-costs file ({exc})")
    if against is not None:
        from popray.plan_check import check_run, check_text

        try:
            checks = check_run(against, unit, cpus, gpus)
        except (OSError, ValueError) as exc:
            _fail(str(exc))
        typer.echo(f"{against}: planned on {cpus} cores, {gpus} GPUs, costs from {unit.source}")
        typer.echo(check_text(checks))
        return
    if profiles is None or posts_per_profile is None:
        _fail("give --profiles and --posts-per-profile (or --against OUT)")
    typer.echo(
        f"{profiles} profiles x {posts_per_profile} posts, {cpus} cores, {gpus} GPUs; "
        f"unit costs from {unit.source}"
    )
    stages = make_plan(unit, profiles, posts_per_profile, cpus, gpus, walk_forward)
    typer.echo(plan_text(stages))


@app.command()
def schemas(check: Annotated[bool, typer.Option(help="only check, write nothing")] = False) -> None:
    """Regenerate (or check) the JSON/Arrow schema files under schemas/."""
    from popray.schemas_export import stale_schemas, write_schemas

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
