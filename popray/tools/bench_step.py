"""Benchmark: one training step of each paper model, as every trial takes it.

    python -m jobs.benchmark step [--repeats 5] [--steps 100]

A step is `fit._Trainer.epoch` over one batch of 32 random items (one core, the
trials' setting): the forward pass, dropout included, the backward pass and Adam. The
grid's cost on long histories is mostly these steps (the GRU models' above all), so a
change to the models or the optimiser is measured here first: run it under both builds,
alternating, and compare the fastest pass of each.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from popray.config import TrainConfig
from popray.io.tables import N_FRAMES
from popray.training.fit import _Trainer
from popray.training.models import PAPER_MODELS, REGISTRY

BATCH = 32


def bench_step(repeats: int = 5, steps: int = 100, width: int = 1280) -> list[dict]:
    """Milliseconds per training step of each paper model: the fastest of `repeats` passes
    of `steps` steps each, after a warm-up."""
    torch.set_num_threads(1)
    rows = []
    for model in PAPER_MODELS:
        sequence = REGISTRY[model].input == "sequence"
        shape = (BATCH, N_FRAMES, width) if sequence else (BATCH, width)
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        trainer = _Trainer(model, 2, width, TrainConfig(), 0, "cpu")
        y = trainer.labels(rng.integers(0, 2, BATCH))
        for _ in range(10):
            trainer.epoch(x, y, False)
        passes = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                trainer.epoch(x, y, False)
            passes.append((time.perf_counter() - start) / steps * 1e3)
        rows.append(
            {
                "bench": "step",
                "model": model,
                "input": list(shape),
                "step_ms": round(min(passes), 3),
                "passes_ms": [round(p, 3) for p in passes],
            }
        )
    return rows
