"""Validation folds (paper 5.2): StratifiedKFold(5, shuffled) repeated over seeds.

The image model is validated on images; the three video models on the same video folds.
The mixed models' extra data (images as static videos, or images beside pooled videos)
only ever enters training folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popray.config import ModelName
from popray.training.dataset import TrainingSet
from popray.training.fit import FoldData
from popray.training.models import REGISTRY, InputKind, model_input


@dataclass(frozen=True)
class Fold:
    fold: int
    train: tuple[str, ...]  # media ids validated on (the model's own media type)
    val: tuple[str, ...]
    extra_train: tuple[str, ...] = ()  # media of the other type, training only


def make_folds(
    model: ModelName,
    seed: int,
    images: tuple[list[str], np.ndarray],
    videos: tuple[list[str], np.ndarray],
    n_splits: int = 5,
    k: int | None = None,
) -> list[Fold]:
    """Folds for `model` and `seed`; `images` / `videos` are (media ids, classes). With
    `k`, every one of the k classes must fill the folds (a class with no item at all,
    e.g. a threshold no post reaches, is not a k-class problem)."""
    spec = REGISTRY[model]
    ids, classes = images if spec.validate_on == "image" else videos
    check_classes(spec.validate_on, classes, n_splits, k)
    extra = tuple(images[0]) if spec.train_extra != "none" else ()
    from sklearn.model_selection import StratifiedKFold  # heavy: only where folds are cut

    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    ids = np.asarray(ids)
    return [
        Fold(fold, tuple(ids[train]), tuple(ids[val]), extra)
        for fold, (train, val) in enumerate(splitter.split(ids, classes))
    ]


def check_classes(
    media_type: str, classes: np.ndarray, n_splits: int = 5, k: int | None = None
) -> None:
    """Raise ValueError unless items of `classes` can fill `n_splits` stratified folds:
    every class (every one of the k, given `k`) needs `n_splits` items. The grid's plan
    asks this of each profile without cutting any fold."""
    counts = np.bincount(np.asarray(classes, dtype=np.int64), minlength=k or 0)
    present = counts if k else counts[counts > 0]
    if len(classes) < n_splits or not len(present) or present.min() < n_splits:
        raise ValueError(
            f"{media_type} class counts {counts.tolist()} cannot fill "
            f"{n_splits} stratified folds (every class needs {n_splits})"
        )


def split(
    ds: TrainingSet, model: ModelName, seed: int, n_splits: int, k: int | None = None
) -> list[Fold]:
    """`make_folds` over a loaded dataset."""
    images, videos = (ds.images.ids, ds.images.y), (ds.videos.ids, ds.videos.y)
    return make_folds(model, seed, images, videos, n_splits, k)


def _arrays(
    ds: TrainingSet, media_type: str, kind: InputKind
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, x, y) of one media type as a model eats it (`models.model_input`). A video's
    `vector` is its stored `pooled` column, which is `model_input`'s, computed when the
    row was written: the dataset need not hold every frame for it."""
    items = ds.side(media_type)
    if media_type == "image":
        return items.ids, model_input(kind, "image", items.embeddings), items.y
    return items.ids, items.embeddings if kind == "sequence" else items.pooled, items.y


def fold_data(ds: TrainingSet, model: ModelName, fold: Fold) -> FoldData:
    """The arrays of one fold: the model's own media split by `fold`, plus the other
    media type's items (mixed models) in training only."""
    spec = REGISTRY[model]
    own_kind, extra_kind = spec.trains_on
    ids, x, y = _arrays(ds, spec.validate_on, own_kind)
    index = {media_id: i for i, media_id in enumerate(ids)}
    train = np.array([index[m] for m in fold.train], dtype=np.int64)
    val = np.array([index[m] for m in fold.val], dtype=np.int64)
    x_val = x[val] if own_kind != "views" else x[val, 0]
    x_train, y_train = x[train], y[train]
    if fold.extra_train:
        other = "video" if spec.validate_on == "image" else "image"
        extra_ids, x_extra, y_extra = _arrays(ds, other, extra_kind)
        extra_index = {media_id: i for i, media_id in enumerate(extra_ids)}
        extra = np.array([extra_index[m] for m in fold.extra_train], dtype=np.int64)
        x_train = np.concatenate([x_train, x_extra[extra]])
        y_train = np.concatenate([y_train, y_extra[extra]])
    return FoldData(x_train, y_train, x_val, y[val], train_views=own_kind == "views")


def all_data(ds: TrainingSet, model: ModelName) -> tuple[np.ndarray, np.ndarray, bool]:
    """Every item a final model trains on: (x, y, x has a views axis)."""
    spec = REGISTRY[model]
    own_kind, extra_kind = spec.trains_on
    _, x, y = _arrays(ds, spec.validate_on, own_kind)
    if spec.train_extra != "none":
        other = "video" if spec.validate_on == "image" else "image"
        _, x_extra, y_extra = _arrays(ds, other, extra_kind)
        x, y = np.concatenate([x, x_extra]), np.concatenate([y, y_extra])
    return x, y, own_kind == "views"


def scoring_data(ds: TrainingSet, model: ModelName) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The items `model` is validated on, as it scores them: (ids, x, y), an image by its
    own embedding (view 0), a video as the model sees it."""
    spec = REGISTRY[model]
    ids, x, y = _arrays(ds, spec.validate_on, spec.scores_as)
    return ids, x, y
