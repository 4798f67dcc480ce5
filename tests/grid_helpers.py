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
from popray.training.dataset import Dataset

WIDTH = 16


def synthetic(k: int, n_images: int = 45, n_videos: int = 30, seed: int = 0) -> Dataset:
    """Items whose embeddings sit around one centre per class (learnable, not trivial)."""
    rng = np.random.default_rng(seed + k)
    centres = rng.normal(0, 1, (k, WIDTH))
    yi, yv = np.arange(n_images) % k, np.arange(n_videos) % k
    views = centres[yi][:, None] + rng.normal(0, 1, (n_images, 3, WIDTH))
    frames = centres[yv][:, None] + rng.normal(0, 1, (n_videos, 15, WIDTH))
    return Dataset(
        image_ids=[f"img{i:03d}" for i in range(n_images)],
        image_sha256=[f"{i:064x}" for i in range(n_images)],
        image_views=views.astype(np.float32),
        image_y=yi,
        video_ids=[f"vid{i:03d}" for i in range(n_videos)],
        video_sha256=[f"{i + 1000:064x}" for i in range(n_videos)],
        video_frames=frames.astype(np.float32),
        video_pooled=frames.max(axis=1).astype(np.float32),
        video_y=yv,
    )


def several(k: int, profiles: int) -> Dataset:
    """`profiles` synthetic profiles in one dataset (distinct ids, each learnable)."""
    parts = [synthetic(k, seed=10 * i) for i in range(profiles)]
    names = [f"prof{i}" for i in range(profiles)]

    def ids(kind: str) -> list[str]:
        return [f"{n}-{m}" for n, d in zip(names, parts, strict=True) for m in getattr(d, kind)]

    return Dataset(
        image_ids=ids("image_ids"),
        image_sha256=ids("image_sha256"),
        image_views=np.concatenate([d.image_views for d in parts]),
        image_y=np.concatenate([d.image_y for d in parts]),
        video_ids=ids("video_ids"),
        video_sha256=ids("video_sha256"),
        video_frames=np.concatenate([d.video_frames for d in parts]),
        video_pooled=np.concatenate([d.video_pooled for d in parts]),
        video_y=np.concatenate([d.video_y for d in parts]),
        image_profile=[n for n, d in zip(names, parts, strict=True) for _ in d.image_ids],
        video_profile=[n for n, d in zip(names, parts, strict=True) for _ in d.video_ids],
    )


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
