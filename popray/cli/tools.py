"""The other commands: sample data, ranking new media, queries, the capacity plan, the schemas."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from popray.cli.app import (
    ConfigOpt,
    OutOpt,
    ProfileOpt,
    SchemeOpt,
    WeightsOpt,
    _fail,
    _models_of,
    command,
)
from popray.configure import configure
from popray.errors import ConfigError
from popray.io import store


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
def predict(
    out: OutOpt,
    media: Annotated[list[Path], typer.Option("--media", help="file or folder (repeat)")],
    k: Annotated[int | None, typer.Option(help="classes (default: the largest trained)")] = None,
    weights: WeightsOpt = None,
    profile: ProfileOpt = None,
    scheme: SchemeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Rank new candidate images/videos by predicted popularity for one profile (with
    Grad-CAM per image)."""
    from popray.predict import run_predict
    from popray.training.model_files import POOLED

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
    from popray.tools.plan import plan as make_plan
    from popray.tools.plan import plan_text
    from popray.tools.plan_costs import UnitCosts

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
