"""Whole-run publication: `popray run` writes a new version of OUT beside the published
one and publishes it with one atomic symlink switch, so readers never see a half-written
run and a run killed at any point leaves the previous outputs as they were.

    OUT/current -> runs/<id>              the published run (switched by rename(2))
    OUT/runs/<id>/                        tables/, popray.duckdb, grid/, models/, report/, ...
    OUT/tables -> current/tables          the names users open, through `current`
    OUT/popray.duckdb -> current/popray.duckdb, OUT/report -> current/report, ...

A new run starts as a copy of the published one: Parquet files, model weights and PNGs
are hard links (popray never rewrites a file in place: it writes a new file and renames
it over the old name, so a link keeps the published bytes), the rest is copied. The
previous run is kept (a reader may still be in it); older and unfinished ones are removed.
Single-stage commands (`popray label`, ...) write through the links into the published
run, file by file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ENTRIES = {  # what a run holds at OUT's top level: name -> is a folder
    "tables": True,
    "popray.duckdb": False,
    "ingest.json": False,
    "timings.json": False,
    "train_skipped.txt": False,
    "grid": True,
    "models": True,
    "explain": True,
    "figures": True,
    "report": True,
    "predict": True,
}
PUBLISHED_MARK = ".published"
LINKED_SUFFIXES = {".parquet", ".pt", ".png"}  # written once, replaced by rename: safe to link


def current(out: Path) -> Path | None:
    """The published run folder, if any."""
    link = out / "current"
    return link.resolve() if link.is_symlink() else None


def _new_run_dir(out: Path) -> Path:
    run = out / "runs" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    run.mkdir(parents=True)
    return run


def _clone(src: Path, dst: Path) -> None:
    def copy(source: str, target: str) -> None:
        if Path(source).suffix in LINKED_SUFFIXES:
            os.link(source, target)
        else:
            shutil.copy2(source, target)

    for name in ENTRIES:
        path = src / name
        if path.is_dir():
            shutil.copytree(path, dst / name, copy_function=copy)
        elif path.is_file():
            copy(str(path), str(dst / name))


def publish(out: Path, run: Path) -> None:
    """Point OUT/current at `run` (one rename), then make sure the stable names exist."""
    for name, is_dir in ENTRIES.items():
        if is_dir:
            (run / name).mkdir(exist_ok=True)  # no dangling names for a folder
    (run / PUBLISHED_MARK).touch()
    tmp = out / f".current-{uuid.uuid4().hex}"
    os.symlink(run.relative_to(out), tmp)
    os.replace(tmp, out / "current")
    for name in ENTRIES:
        link = out / name
        if not link.is_symlink():
            link.symlink_to(Path("current") / name)


def _adopt(out: Path) -> None:
    """Outputs written before runs were staged (real files at OUT's top level) become the
    first published run, so the next staged run starts from them."""
    legacy = [out / n for n in ENTRIES if (out / n).exists() and not (out / n).is_symlink()]
    if not legacy:
        return
    run = _new_run_dir(out)
    for path in legacy:
        os.replace(path, run / path.name)
    publish(out, run)


def _prune(out: Path) -> None:
    """Keep the published run and the last one published before it (a reader may still be
    in it); remove the rest: older runs, and unfinished ones that killed runs left."""
    published = current(out)
    others = sorted(r for r in (out / "runs").iterdir() if r.resolve() != published)
    finished = [r for r in others if (r / PUBLISHED_MARK).exists()]
    for run in others:
        if not finished or run != finished[-1]:
            shutil.rmtree(run)


@contextmanager
def staged_run(out: Path) -> Iterator[Path]:
    """A fresh run folder (a copy of the published run) to write into; published when
    the body finishes, left unpublished (and removed by a later run) if it raises.
    The caller holds OUT's writer lock."""
    out.mkdir(parents=True, exist_ok=True)
    _adopt(out)
    run = _new_run_dir(out)
    previous = current(out)
    if previous is not None:
        _clone(previous, run)
    yield run
    publish(out, run)
    _prune(out)
