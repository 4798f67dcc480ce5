"""The predictions the metrics are scored from, as flat arrays (`MetricRows`): dense
codes in sort order for the cell (`KEY`), profile, seed and media item, and each row's
baseline class and ranking target, each looked up once per distinct key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from popray.training import scores

KEY = ("scheme", "backbone", "features", "protocol", "model", "k")


@dataclass
class MetricRows:
    """The predictions as flat arrays: dense codes, in sort order, for the cell (KEY),
    profile, seed and media item; each row's baseline class and ranking target (NaN:
    none; None: the mapping was not given)."""

    cells: list[tuple]
    profiles: list[str]
    media_ids: list[str]
    cell: np.ndarray
    profile: np.ndarray
    seed: np.ndarray
    media: np.ndarray
    k: np.ndarray
    label: np.ndarray
    proba: pa.ChunkedArray
    recent: np.ndarray | None
    score: np.ndarray | None
    guess: np.ndarray | None

    @classmethod
    def of(cls, t: pa.Table, recent: dict | None, targets: dict | None) -> MetricRows:
        cells, cell = cell_codes(t)
        profiles, profile = _sorted_codes(t["profile_id"])
        media_ids, media = _sorted_codes(t["media_id"])
        seed = scores.dense(t["seed"].to_numpy())[1]
        k = np.array([c[KEY.index("k")] for c in cells])[cell]
        keys = _lookup_keys(cells, cell, media_ids, media)
        score = guess = None
        if targets is not None:
            found = _lookup(targets, keys)
            score = np.array([np.nan if f is None or f[0] is None else f[0] for f in found])
            guess = np.array([np.nan if f is None or f[1] is None else f[1] for f in found])
        base = None if recent is None else _lookup(recent, keys)
        return cls(
            cells,
            profiles,
            media_ids,
            cell,
            profile,
            seed,
            media,
            k,
            t["label"].to_numpy(),
            t["proba"],
            None if base is None else np.array([np.nan if b is None else b for b in base]),
            score,
            guess,
        )


def _sorted_codes(column: pa.ChunkedArray) -> tuple[list, np.ndarray]:
    """(the distinct values, sorted; each row's index among them)."""
    encoded = column.combine_chunks().dictionary_encode()
    names = encoded.dictionary.to_pylist()
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), np.int64)
    rank[order] = np.arange(len(names))
    return [names[i] for i in order], rank[encoded.indices.to_numpy()]


def cell_codes(t: pa.Table) -> tuple[list[tuple], np.ndarray]:
    """(the distinct KEY tuples, sorted; each row's index among them)."""
    combined = np.zeros(t.num_rows, np.int64)
    names = []
    for column in KEY:
        values, codes = _sorted_codes(t[column])
        combined = combined * len(values) + codes
        names.append(values)
    distinct, cell = scores.dense(combined)  # mixed radix: sorted as the tuples are
    cells = []
    for code in distinct.tolist():
        parts = []
        for values in reversed(names):
            code, at = divmod(code, len(values))
            parts.append(values[at])
        cells.append(tuple(reversed(parts)))
    return cells, cell


def _lookup_keys(cells, cell, media_ids, media) -> tuple[np.ndarray, list[tuple]]:
    """(each row's index into the distinct (protocol, k, media_id) keys, those keys)."""
    pairs = [(c[KEY.index("protocol")], c[KEY.index("k")]) for c in cells]
    distinct_pairs = sorted(set(pairs))
    pair_of_cell = np.array([distinct_pairs.index(p) for p in pairs])
    m = len(media_ids)
    distinct, at = scores.dense(pair_of_cell[cell] * m + media)
    return at, [(*distinct_pairs[d // m], media_ids[d % m]) for d in distinct.tolist()]


def _lookup(mapping: dict, keys: tuple[np.ndarray, list[tuple]]) -> list:
    """`mapping` looked up once per distinct key, spread over the rows."""
    at, distinct = keys
    found = [mapping.get(key) for key in distinct]
    return [found[i] for i in at.tolist()]
