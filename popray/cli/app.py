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
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from popray.config import SCHEME_HELP, StageConfig
from popray.errors import PoprayError

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


# options several commands share, each the flag of one key of the run configuration
BackboneOpt = Annotated[str | None, typer.Option(help="timm backbone (embed.backbone)")]
WeightsOpt = Annotated[
    str | None,
    typer.Option(help="backbone weights: a checkpoint path, or 'random' (embed.weights)"),
]
SchemeOpt = Annotated[str | None, typer.Option(help=f"{SCHEME_HELP} (label.scheme)")]
ThresholdOpt = Annotated[
    float | None, typer.Option(help="near-duplicate Euclidean distance (dedup.threshold)")
]
ProfileOpt = Annotated[str | None, typer.Option(help="whose models (with several profiles)")]
KsOpt = Annotated[list[int] | None, typer.Option("--k", help="class counts (repeat)")]
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


def _models_of(config: Path | None, cfg: StageConfig, scheme: str | None) -> str | None:
    """Whose saved models `explain` and `predict` use: --scheme, else the configuration
    file's label scheme; neither given, the one scheme trained (several: an error)."""
    return scheme or (cfg.label.scheme if config is not None else None)


def job(stage: str):
    """The `main()` of `python -m jobs.<stage>`: the same command, its own program name."""

    def main() -> None:
        app([stage, *sys.argv[1:]], prog_name=f"python -m jobs.{stage}")

    return main
