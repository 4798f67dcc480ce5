"""The `metrics` table computed on the cluster: one Ray task per cell.

A cell (scheme, backbone, features, protocol, model, k: `evaluate.KEY`) is scored apart
from every other: its rows form its profiles' own groups and its pooled group, and no
group mixes cells. So `compute_metrics` over one cell's predictions gives exactly that
cell's rows of the whole table, and the cells can be scored at once, each in its own
task; the driver only splits the predictions and concatenates the rows, in cell order
(the whole table's order). The wall time is that of the largest cell (about a fifth of
the rows for the default grid), not of all rows one after another.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from popray.evaluate import KEY, _cell_codes, compute_metrics

MIN_ROWS = 100_000  # fewer predictions: scored here (a task's start costs more)


def metrics_by_cell(
    predictions: pa.Table,
    recent: dict | None = None,
    targets: dict | None = None,
    waited: list[float] | None = None,
) -> pa.Table:
    """`compute_metrics(predictions, recent, targets)`, the cells scored in Ray tasks
    (here when Ray is not started or the predictions are few). `waited` gets the seconds
    the driver waited on the tasks (the rest of the call is its own work)."""
    import ray

    if predictions.num_rows < MIN_ROWS or not ray.is_initialized():
        return compute_metrics(predictions, recent, targets)
    cells, code = _cell_codes(predictions)
    order = np.argsort(code, kind="stable")  # each cell's rows, in their order
    bounds = np.searchsorted(code[order], np.arange(len(cells) + 1))
    at = {name: KEY.index(name) for name in ("protocol", "k")}
    pairs = sorted({(c[at["protocol"]], c[at["k"]]) for c in cells})
    split = [_by_pair(recent), _by_pair(targets)]
    shared = {
        pair: tuple(ray.put(None if s is None else s.get(pair, {})) for s in split)
        for pair in pairs
    }
    task = ray.remote(_cell_metrics).options(num_cpus=1)
    refs = []
    for i, cell in enumerate(cells):
        rows = predictions.take(pa.array(order[bounds[i] : bounds[i + 1]]))
        pair = (cell[at["protocol"]], cell[at["k"]])
        refs.append(task.remote(rows, pair, *shared[pair]))
    start = time.perf_counter()
    tables = ray.get(refs)
    if waited is not None:
        waited.append(time.perf_counter() - start)
    return pa.concat_tables(tables)


def _by_pair(mapping: dict | None) -> dict[tuple, dict] | None:
    """(protocol, k) -> its entries keyed by media_id: each task gets only its own."""
    if mapping is None:
        return None
    split: dict[tuple, dict] = {}
    for (protocol, k, media_id), value in mapping.items():
        split.setdefault((protocol, k), {})[media_id] = value
    return split


def _cell_metrics(rows: pa.Table, pair: tuple, recent: dict | None, targets: dict | None):
    """Ray task: one cell's metrics rows."""

    def widen(mapping: dict | None) -> dict | None:
        return None if mapping is None else {(*pair, m): v for m, v in mapping.items()}

    return compute_metrics(rows, widen(recent), widen(targets))
