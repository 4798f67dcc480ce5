"""The `metrics` table computed on the cluster: one Ray task per cell.

A cell (scheme, backbone, features, protocol, model, k: `metric_rows.KEY`) is scored apart
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
import pyarrow.compute as pc

from popray.training.evaluate import compute_metrics
from popray.training.metric_rows import KEY, cell_codes

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
    cells, code = cell_codes(predictions)
    order = np.argsort(code, kind="stable")  # each cell's rows, in their order
    bounds = np.searchsorted(code[order], np.arange(len(cells) + 1))
    at = {name: KEY.index(name) for name in ("protocol", "k")}
    pairs = sorted({(c[at["protocol"]], c[at["k"]]) for c in cells})
    split = [_split(recent, RECENT), _split(targets, TARGETS)]
    shared = {pair: tuple(ray.put(None if s is None else s[pair]) for s in split) for pair in pairs}
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


RECENT = ("recent",)  # the baseline's class (None: no earlier item)
TARGETS = ("score", "guess")  # the ranking target and the baseline's guess of it


class _Split(dict):
    """(protocol, k) -> that pair's entries as a table (media_id, *values), filtered
    from `table` on first use (empty for a pair with none)."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__()
        self.table = table

    def __missing__(self, pair: tuple) -> pa.Table:
        protocol, k = pair
        mine = pc.and_(pc.equal(self.table["protocol"], protocol), pc.equal(self.table["k"], k))
        self[pair] = self.table.filter(mine).drop_columns(["protocol", "k"])
        return self[pair]


def _split(mapping: dict | None, names: tuple[str, ...]) -> _Split | None:
    """(protocol, k, media_id) -> a value (or a tuple of `names`) as columns, split by
    (protocol, k) so that each task gets only its own entries: as a dict of 90,000 tuples
    it took the driver 0.3 s to serialise and 0.1 s to split, as a table a copy."""
    if mapping is None:
        return None
    keys, values = list(mapping), list(mapping.values())
    columns = [[v[i] for v in values] for i in range(len(names))] if len(names) > 1 else [values]
    table = pa.table(
        {
            "protocol": pa.array([key[0] for key in keys], pa.string()),
            "k": pa.array([key[1] for key in keys], pa.int64()),
            "media_id": pa.array([key[2] for key in keys], pa.string()),
        }
        | dict(zip(names, columns, strict=True))
    )
    return _Split(table)


def _mapping(table: pa.Table | None, pair: tuple) -> dict | None:
    """A `_split` table back into the (protocol, k, media_id) -> value mapping of `pair`."""
    if table is None:
        return None
    ids = table["media_id"].to_pylist()
    columns = [table[name].to_pylist() for name in table.column_names[1:]]
    values = columns[0] if len(columns) == 1 else zip(*columns, strict=True)
    return {(*pair, m): v for m, v in zip(ids, values, strict=True)}


def _cell_metrics(rows: pa.Table, pair: tuple, recent: pa.Table | None, targets: pa.Table | None):
    """Ray task: one cell's metrics rows."""
    return compute_metrics(rows, _mapping(recent, pair), _mapping(targets, pair))
