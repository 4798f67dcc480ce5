"""Per-profile units of work: what a nightly run recomputes, and what it takes over from
the published run.

A profile's grid results for one k depend only on its own items, their classes and
bytes, its walk-forward windows, and the grid's training options: that is its *unit*,
`unit_keys` fingerprints it. Every row of table `trials` carries its unit, so a run
reads the published `trials` and `predictions` (the staged run starts as a copy of the
published one), keeps the rows of every (profile, k, model, protocol) whose unit is
unchanged and that holds every seed asked for, and hands the Tune grid only the rest.

    one new post on one of 100 profiles -> the grid trains that profile's cells only;
    the other 99 profiles' trials and predictions are the published rows, unchanged.

The cross-profile models (`popray.training.pooled`) span every profile and are not units: a run
keeps the published ones while few items changed since they were trained
(`popray.training.pooled_keep`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from popray.config import GridConfig
from popray.io import store
from popray.io.store import sql_text
from popray.training.cells import Cell
from popray.training.dataset import TrainingSet
from popray.training.timelines import Timeline

# of a unit's fingerprint: bumped when what a trial computes changes (2: the GRUs' input
# dropout draws one mask per sequence); final models' snapshots include it too
FORMAT = 2
UNIT_OPTIONS = {"folds", "train", "context_features", "walk_forward"}  # per-profile results

Key = tuple[str, int]  # (profile_id, k)


def unit_keys(
    cfg: GridConfig,
    datasets: dict[int, TrainingSet],
    backbone: str,
    timelines: dict[int, dict[str, Timeline]] | None = None,
) -> dict[Key, str]:
    """(profile, k) -> the fingerprint of everything that profile's trials depend on:
    the training options, backbone, scheme, its items' ids, bytes (sha256), classes and
    embedding shapes, and its walk-forward windows. Models, seeds and protocols are not
    in it: the rows of each are reused apart."""
    options = cfg.model_dump(include=UNIT_OPTIONS)
    keys = {}
    for k, ds in sorted(datasets.items()):
        shapes = [ds.images.embeddings.shape[1:], ds.videos.embeddings.shape[1:]]
        base = [FORMAT, options, backbone, ds.scheme, ds.context, k, shapes]
        for profile in ds.profiles():
            img, vid = ds.rows_of(profile)
            digest = hashlib.sha256(json.dumps([*base, profile], sort_keys=True).encode())
            for ids, shas, i in (
                (ds.images.ids, ds.images.sha256, img),
                (ds.videos.ids, ds.videos.sha256, vid),
            ):
                digest.update(json.dumps([[ids[j] for j in i], [shas[j] for j in i]]).encode())
            for y, i in ((ds.images.y, img), (ds.videos.y, vid)):
                digest.update(np.ascontiguousarray(y[i] if len(i) else y[:0], np.int64).tobytes())
            tl = (timelines or {}).get(k, {}).get(profile)
            if tl is not None:
                for array in (
                    tl.bounds,
                    tl.image_t,
                    tl.video_t,
                    tl.image_class,
                    tl.video_class,
                    tl.image_truth,
                    tl.video_truth,
                ):
                    digest.update(np.ascontiguousarray(array, np.int64).tobytes())
            keys[(profile, k)] = digest.hexdigest()[:16]
    return keys


@dataclass
class Reuse:
    """What a run takes over from the published one: the rows of `trials` and
    `predictions` of each reused (profile, k, model, protocol), and which those are."""

    trials: pa.Table | None = None
    predictions: pa.Table | None = None
    cells: set[tuple[str, int, str, str]] = field(
        default_factory=set
    )  # profile, k, model, protocol

    def profiles(self) -> set[str]:
        return {c[0] for c in self.cells}


def published(
    out: Path, part: str, keys: dict[Key, str], seeds: list[int], protocols: list[str]
) -> Reuse:
    """The published rows whose unit is unchanged (popray/io/sql/reusable_trials.sql), of
    the (profile, k, model, protocol)s that hold every seed in `seeds`."""
    if not (store.has_table(out, "trials", part) and store.has_table(out, "predictions", part)):
        return Reuse()
    current = pa.table(
        {
            "profile_id": [p for p, _ in keys],
            "k": pa.array([k for _, k in keys], pa.int64()),
            "unit": list(keys.values()),
        }
    )
    params = {"seeds": sorted(seeds), "protocols": sorted(protocols), "n_seeds": len(set(seeds))}
    old_trials = store.read_table(out, "trials", part)
    if "unit" not in old_trials.column_names:
        return Reuse()  # published by a popray without units: nothing to match
    con = duckdb.connect()
    try:
        con.register("current_units", current)
        con.register("old_trials", old_trials)
        con.register("old_predictions", store.read_table(out, "predictions", part))
        trials = con.sql(sql_text("reusable_trials"), params=params).to_arrow_table()
        con.register("reused_trials", trials)
        predictions = con.sql(sql_text("reusable_predictions")).to_arrow_table()
        cells = con.sql(sql_text("reused_cells"))
        reused = {tuple(r) for r in cells.fetchall()}
    finally:
        con.close()
    return Reuse(trials, predictions, reused)


def remaining(cells: list[Cell], reuse: Reuse) -> list[Cell]:
    """The grid's cells less the (profile, model, k, protocol)s taken over from the
    published run (a cell with no profile left is dropped)."""
    todo = []
    for cell in cells:
        left = tuple(
            p for p in cell.profiles if (p, cell.k, cell.model, cell.protocol) not in reuse.cells
        )
        if left:
            todo.append(cell._replace(profiles=left))
    return todo
