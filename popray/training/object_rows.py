"""Arrays kept in Ray's object store as chunks of stored embedding rows (`Rows`): the
driver holds only references and offsets; a trial or task gathers the rows it uses.
"""

from __future__ import annotations

import numpy as np


class Rows:
    """A float32 array kept in Ray's object store as chunks of stored rows (one chunk per
    record batch read): the driver holds only references and offsets. Indexing with row
    numbers gathers just those rows, where it runs (a trial, a task); `select` keeps a
    subset without fetching anything.

    `index` says which stored rows make up the array, in its order: (n,), one stored row
    per row, or (n, g), g stored rows stacked per row (an image's views, stored one per
    row); None: every stored row, as stored. -1: a row that was not read
    (`TrainingKeys.datasets` with `profiles`): gathering it raises `NotRead`."""

    def __init__(
        self,
        refs: list,
        sizes: list[int],
        row_shape: tuple[int, ...],
        index: np.ndarray | None = None,
    ) -> None:
        self.refs, self.row_shape = refs, tuple(row_shape)  # the shape of one stored row
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.index = index
        n = int(self.offsets[-1]) if index is None else len(index)
        group = () if index is None else index.shape[1:]
        self.shape = (n, *group, *self.row_shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def _physical(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        return rows if self.index is None else self.index[rows]

    @property
    def complete(self) -> bool:
        """Every row of it was read."""
        return self.index is None or bool((self.index >= 0).all())

    def select(self, rows: np.ndarray) -> Rows:
        """Rows `rows` of this array, still in the object store."""
        sizes = np.diff(self.offsets).tolist()
        return Rows(self.refs, sizes, self.row_shape, self._physical(rows))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows, in the given order, as one local array (each chunk they touch
        is fetched once)."""
        import ray

        physical = self._physical(rows)
        stored = physical.reshape(-1)
        if len(stored) and stored.min() < 0:
            raise NotRead(
                f"{int((stored < 0).sum())} embedding rows asked for were not read: read "
                "their profiles first (TrainingKeys.datasets(profiles=...))"
            )
        out = np.empty((len(stored), *self.row_shape), np.float32)
        chunk = np.searchsorted(self.offsets, stored, side="right") - 1
        order = np.argsort(chunk, kind="stable")
        bounds = np.flatnonzero(np.diff(chunk[order])) + 1
        for at in np.split(order, bounds) if len(order) else []:
            c = chunk[at[0]]
            out[at] = ray.get(self.refs[c])[stored[at] - self.offsets[c]]
        return out.reshape(*physical.shape, *self.row_shape)

    def array(self) -> np.ndarray:
        return self.take(np.arange(len(self)))

    def __getitem__(self, key):
        if isinstance(key, np.ndarray) and key.ndim == 1 and key.dtype.kind in "iu":
            return self.take(key)
        return self.array()[key]


class NotRead(RuntimeError):
    """Embedding rows used that the run did not read (a bug in the caller: the profiles it
    trains must be read first)."""


def take(x: np.ndarray | Rows, rows: np.ndarray, remote: bool = False) -> np.ndarray | Rows:
    if isinstance(x, Rows):
        return x.select(rows) if remote else x.take(rows)
    return x[rows]
