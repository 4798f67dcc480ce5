"""Validation folds (paper 5.2): StratifiedKFold(5, shuffled) repeated over seeds.

The image model is validated on images; the three video models on the same video folds.
The mixed models' extra data (images as static videos, or images beside pooled videos)
only ever enters training folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from popray.models import REGISTRY


@dataclass(frozen=True)
class Fold:
    fold: int
    train: tuple[str, ...]  # media ids validated on (the model's own media type)
    val: tuple[str, ...]
    extra_train: tuple[str, ...] = ()  # media of the other type, training only


def make_folds(
    model: str,
    seed: int,
    images: tuple[list[str], np.ndarray],
    videos: tuple[list[str], np.ndarray],
    n_splits: int = 5,
) -> list[Fold]:
    """Folds for `model` and `seed`; `images` / `videos` are (media ids, classes)."""
    spec = REGISTRY[model]
    ids, classes = images if spec.validate_on == "image" else videos
    counts = np.bincount(np.asarray(classes))
    if len(ids) < n_splits or counts[counts > 0].min() < n_splits:
        raise ValueError(
            f"{model}: {len(ids)} {spec.validate_on}s with class counts {counts.tolist()} "
            f"cannot be split into {n_splits} stratified folds"
        )
    extra = tuple(images[0]) if spec.train_extra != "none" else ()
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    ids = np.asarray(ids)
    return [
        Fold(fold, tuple(ids[train]), tuple(ids[val]), extra)
        for fold, (train, val) in enumerate(splitter.split(ids, classes))
    ]
