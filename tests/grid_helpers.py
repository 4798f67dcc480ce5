"""Synthetic training data for grid tests, and a grid run that interrupts itself.

`python tests/grid_helpers.py OUT N SIGNAL` runs a small grid on synthetic data and
sends itself SIGNAL (INT: a user's Ctrl-C; KILL: a crashed driver) once N trials are done.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

from popray.config import GridConfig, TrainConfig
from popray.training.dataset import Items, TrainingSet

WIDTH = 16


def synthetic(k: int, n_images: int = 45, n_videos: int = 30, seed: int = 0) -> TrainingSet:
    """Items whose embeddings sit around one centre per class (learnable, not trivial)."""
    rng = np.random.default_rng(seed + k)
    centres = rng.normal(0, 1, (k, WIDTH))
    yi, yv = np.arange(n_images) % k, np.arange(n_videos) % k
    views = centres[yi][:, None] + rng.normal(0, 1, (n_images, 3, WIDTH))
    frames = centres[yv][:, None] + rng.normal(0, 1, (n_videos, 15, WIDTH))
    return TrainingSet(
        Items(
            ids=[f"img{i:03d}" for i in range(n_images)],
            sha256=[f"{i:064x}" for i in range(n_images)],
            y=yi,
            embeddings=views.astype(np.float32),
        ),
        Items(
            ids=[f"vid{i:03d}" for i in range(n_videos)],
            sha256=[f"{i + 1000:064x}" for i in range(n_videos)],
            y=yv,
            embeddings=frames.astype(np.float32),
            pooled=frames.max(axis=1).astype(np.float32),
        ),
    )


def several(k: int, profiles: int) -> TrainingSet:
    """`profiles` synthetic profiles in one dataset (distinct ids, each learnable)."""
    parts = [synthetic(k, seed=10 * i) for i in range(profiles)]
    names = [f"prof{i}" for i in range(profiles)]

    def side(media_type: str) -> Items:
        of = [(n, d.side(media_type)) for n, d in zip(names, parts, strict=True)]
        pooled = [items.pooled for _, items in of if items.pooled is not None]
        return Items(
            ids=[f"{n}-{m}" for n, items in of for m in items.ids],
            sha256=[f"{n}-{m}" for n, items in of for m in items.sha256],
            y=np.concatenate([items.y for _, items in of]),
            embeddings=np.concatenate([items.embeddings for _, items in of]),
            pooled=np.concatenate(pooled) if pooled else None,
            profile=[n for n, items in of for _ in items.ids],
        )

    return TrainingSet(side("image"), side("video"))


GRID = GridConfig(
    models=["image", "video_to_image"],
    seeds=[0, 1, 2],
    folds=3,
    train=TrainConfig(epochs=40),
    final_models=False,
)
DATASETS = {2: synthetic(2), 3: synthetic(3)}
# the grid that interrupts itself: one seed (12 trials) is enough to stop after 4
RESUMABLE = GRID.model_copy(update={"seeds": [0]})


class InterruptAfter:
    """A progress echo that signals its own process after `n` finished trials, once:
    the marker file disarms it, so a resumed grid (which restores the pickled
    callback) runs to the end."""

    def __init__(self, n: int, sig: int, marker: Path) -> None:
        self.n, self.sig, self.marker, self.seen = n, sig, marker, 0

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.seen += 1
        if self.seen >= self.n and not self.marker.exists():
            self.marker.write_text(line)
            os.kill(os.getpid(), self.sig)


if __name__ == "__main__":
    import ray

    from popray.training.tune import run_grid

    out, n, sig = Path(sys.argv[1]), int(sys.argv[2]), getattr(signal, f"SIG{sys.argv[3]}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    run_grid(out, DATASETS, RESUMABLE, "test", echo=InterruptAfter(n, sig, out / "interrupted"))
