"""Near-duplicates within one (profile, media type) (paper 4.1): each item's nearest
neighbour in embedding space, computed a tile of squared distances at a time; pairs
below the threshold (videos: also of the same length and frame rate) group transitively,
and each group keeps one item (a single-media post beats a carousel, then the most
recent, then the smaller media_id). popray.dedup runs one Ray task per unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from popray.config import DedupConfig


@dataclass
class DedupItems:
    """The items of one (profile, media type), aligned with the rows of `vectors`."""

    media_id: list[str]
    vectors: np.ndarray  # (n, width)
    published_us: np.ndarray  # (n,) int64
    single: np.ndarray  # (n,) bool: the post holds this item alone
    duration_s: np.ndarray | None = None  # videos only
    fps: np.ndarray | None = None


ROW_BLOCK, COL_BLOCK = 1024, 32768  # a 128 MiB float32 tile of squared distances


def neighbours(items: DedupItems, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item's nearest other item (index, distance; -1 / nan when alone) and the
    (m, 2) pairs i < j closer than `threshold`, exactly, in one pass over the upper
    triangle of the distance matrix.

    Tiles of squared distances come from one float32 matrix product each
    (|a|^2 + |b|^2 - 2 a.b: BLAS at full speed, half the products thanks to symmetry,
    memory bounded by the tile). Rounding in that expansion is far below the margin
    used to pick candidate pairs, whose distances are then recomputed in float64, as is
    every nearest-neighbour distance reported."""
    x = np.ascontiguousarray(items.vectors, dtype=np.float32)
    n = len(x)
    if n < 2:
        return np.full(n, -1), np.full(n, np.nan), np.zeros((0, 2), np.int64)
    sq = np.einsum("ij,ij->i", x, x)
    minus2x = -2 * x
    best = np.full(n, np.inf, np.float32)
    best_idx = np.full(n, -1, np.int64)
    # candidates within the threshold plus a margin far above float32 rounding of the
    # expansion (~1e-7 of |a|^2 + |b|^2); each is then checked in float64
    limit = np.float32(threshold) ** 2 + 2e-5 * float(sq.max()) + 1e-6
    candidates = []
    for r0 in range(0, n, ROW_BLOCK):
        r1 = min(n, r0 + ROW_BLOCK)
        for c0 in range(r0, n, COL_BLOCK):  # columns from the diagonal on: i <= j
            c1 = min(n, c0 + COL_BLOCK)
            d2 = minus2x[r0:r1] @ x[c0:c1].T
            d2 += sq[r0:r1, None]
            d2 += sq[None, c0:c1]
            if c0 < r1:  # a tile across the diagonal: keep only pairs i < j
                i, j = np.ogrid[r0:r1, c0:c1]
                d2[i >= j] = np.inf
            close = np.nonzero(d2 < limit)
            candidates.append(np.stack([close[0] + r0, close[1] + c0], axis=1))
            rows = d2.argmin(axis=1)
            _improve(best, best_idx, d2[np.arange(r1 - r0), rows], rows + c0, r0)
            cols = d2.argmin(axis=0)
            _improve(best, best_idx, d2[cols, np.arange(c1 - c0)], cols + r0, c0)
    x64 = items.vectors.astype(np.float64)
    pairs = np.concatenate(candidates).astype(np.int64)
    exact = np.linalg.norm(x64[pairs[:, 0]] - x64[pairs[:, 1]], axis=1)
    nn_dist = np.linalg.norm(x64 - x64[best_idx], axis=1)
    return best_idx, nn_dist, pairs[exact < threshold]


def _improve(best, best_idx, dist, idx, start: int) -> None:
    """Keep, for items start.., the nearer of their current and the new neighbour."""
    span = slice(start, start + len(dist))
    better = dist < best[span]
    best[span] = np.where(better, dist, best[span])
    best_idx[span] = np.where(better, idx, best_idx[span])


def same_clip(items: DedupItems, pairs: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """Video pairs must also have the same length and frame rate (within tolerances)."""
    if items.duration_s is None or not len(pairs):
        return pairs
    a, b = pairs[:, 0], pairs[:, 1]
    same = (np.abs(items.duration_s[a] - items.duration_s[b]) <= cfg.duration_tol_s) & (
        np.abs(items.fps[a] - items.fps[b]) <= cfg.fps_tol
    )
    return pairs[same]


def groups(items: DedupItems, pairs: np.ndarray) -> list[tuple[int, list[int]]]:
    """Connected groups of two or more, each as (kept index, member indices)."""
    n = len(items.media_id)
    if not len(pairs):
        return []
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    out = []
    for g in np.unique(label):
        members = np.flatnonzero(label == g).tolist()
        if len(members) < 2:
            continue
        # single beats carousel; then most recent; then smallest media_id
        kept = min(
            members, key=lambda i: (not items.single[i], -items.published_us[i], items.media_id[i])
        )
        out.append((kept, members))
    return out


def dedup_items(items: DedupItems, threshold: float, cfg: DedupConfig) -> tuple[list, list]:
    """Rows of `duplicates` and `nn_distances` for one (profile, media type)."""
    nn_idx, nn_dist, pairs = neighbours(items, threshold)
    nn_rows = [
        {
            "media_id": m,
            "nn_media_id": items.media_id[j] if j >= 0 else None,
            "distance": None if np.isnan(d) else float(d),
        }
        for m, j, d in zip(items.media_id, nn_idx, nn_dist, strict=True)
    ]
    dup_rows = []
    for group_id, (kept, members) in enumerate(groups(items, same_clip(items, pairs, cfg))):
        for i in members:
            dup_rows.append(
                {
                    "group_id": group_id,
                    "media_id": items.media_id[i],
                    "duplicate_of": items.media_id[kept],
                    "distance": float(np.linalg.norm(items.vectors[i] - items.vectors[kept])),
                    "kept": i == kept,
                }
            )
    return dup_rows, nn_rows
