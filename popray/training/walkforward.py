"""Walk-forward validation: train on what was known before a cut date, evaluate on the
window after it (beside the paper's stratified folds, which mix past and future posts).

    popray train --out out --protocol walk_forward

For each profile the last `cuts` windows of `horizon_days` (default 6 x 8 weeks; the
last one ends just after the profile's last post) are evaluated in turn. A window's
models train on everything published before its start (an expanding window) and score
the items published inside it.

What a cut's models may know, and how later posts are kept out of it:
- Training labels are recomputed, by the same label SQL, on the export as it stood at
  the cut: posts published before it and follower counts dated before it. A rolling
  window around a post near the cut therefore ends at the cut (its quantiles come from
  earlier posts only); global quantiles, the residual fit and moving averages cover the
  history before the cut; followers at post time are interpolated between earlier
  follower points and extrapolated past the last of them, as they would have been then.
- The window's items are scored against their classes once each is settled: labels
  computed on the export as it stood half a label window (`label.window_days` / 2)
  after the window's end, when every scored post's centred rolling window is complete
  (the paper's definition of its class; observed later, so nothing leaks into training).
- The epoch count is picked on the latest `inner_val_fraction` of the training items
  (by time), never on the window; the model is then retrained on every training item
  for that many epochs (the final models' rule).
Not as of the cut: likes and comments are the export's (an export has no history of
likes, so a post just before the cut counts the likes it gathered later); near-duplicate
decisions are the whole history's (no window is scored on a copy of a training item, the
paper's reason to remove them); the context features' PoR trend uses earlier posts only,
but their followers are estimated from the whole follower history.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import torch

from popray.config import GridConfig, ModelName, WalkForwardConfig
from popray.io.tables import TS
from popray.records import OTHER_KIND, FoldResult
from popray.training.dataset import TrainingSet
from popray.training.fit import fit_all, fit_fold
from popray.training.folds import Fold, fold_data
from popray.training.models import REGISTRY
from popray.training.timelines import NO_CLASS, Timeline


def usable(tl: Timeline, model: ModelName, k: int, window: int, cfg: WalkForwardConfig) -> bool:
    """A window is trained when it has items to score and `min_train_per_class` training
    items of every class (of the model's own media type)."""
    return bool(usable_windows(tl, REGISTRY[model].validate_on, k, cfg)[window])


def usable_windows(tl: Timeline, media_type: str, k: int, cfg: WalkForwardConfig) -> np.ndarray:
    """`usable` for every window at once, for the models validated on `media_type`: a
    (windows,) bool array. `Timeline.rows` as masks, so the grid's plan checks a
    profile's windows in a few array operations (at 10,000 profiles it checks 480,000
    (profile, model, k, window)s)."""
    image = media_type == "image"
    t = (tl.image_t if image else tl.video_t)[None, :]
    cls, truth = (tl.image_class, tl.image_truth) if image else (tl.video_class, tl.video_truth)
    start, stop = tl.bounds[:-1, None], tl.bounds[1:, None]
    before = t < start  # items without a class at the cut (NO_CLASS) match no class below
    counts = np.stack([(before & (cls == c)).sum(axis=1) for c in range(k)], axis=1)
    scored = ((t >= start) & (t < stop) & (truth != NO_CLASS)).any(axis=1)
    return scored & (counts.min(axis=1) >= cfg.min_train_per_class)


def run_windows(
    model: ModelName,
    k: int,
    seed: int,
    own: TrainingSet,
    tl: Timeline,
    cfg: GridConfig,
    device: str,
    profile: str,
) -> tuple[list[FoldResult], list[pa.Table]]:
    """Train and score every usable window of `profile` (its own items, `own`; see the
    module docstring): (one result per window, the windows' predictions)."""
    entries, tables = [], []
    ready = usable_windows(tl, REGISTRY[model].validate_on, k, cfg.walk_forward)
    for window in range(tl.windows):
        if ready[window]:
            entry, table = _window(model, k, seed, own, tl, window, cfg, device, profile)
            entries.append(entry)
            tables.append(table)
    return entries, tables


def _window(
    model: ModelName,
    k: int,
    seed: int,
    own: TrainingSet,
    tl: Timeline,
    window: int,
    cfg: GridConfig,
    device: str,
    profile: str,
) -> tuple[FoldResult, pa.Table]:
    spec = REGISTRY[model]
    media_type = spec.validate_on
    other = OTHER_KIND[media_type]
    ids = np.asarray(own.side(media_type).ids, dtype=object)
    other_ids = np.asarray(own.side(other).ids, dtype=object)
    train, test = tl.rows(media_type, window)
    extra = tuple(other_ids[tl.rows(other, window)[0]]) if spec.train_extra != "none" else ()
    at_cut = own.with_classes(tl.image_class[window], tl.video_class[window])
    settled = own.with_classes(tl.image_truth[window], tl.video_truth[window])
    start = time.perf_counter()
    # the epoch count: validated on the latest training items, never on the window
    n_inner = max(1, round(cfg.walk_forward.inner_val_fraction * len(train)))
    inner = Fold(window, tuple(ids[train[:-n_inner]]), tuple(ids[train[-n_inner:]]), extra)
    picked = fit_fold(model, k, fold_data(at_cut, model, inner), cfg.train, seed, device)
    full = fold_data(at_cut, model, Fold(window, tuple(ids[train]), (), extra))
    epochs = cfg.train.model_copy(update={"epochs": picked.best_epoch})
    net = fit_all(model, k, full.x_train, full.y_train, epochs, seed, full.train_views, device)
    scored = fold_data(settled, model, Fold(window, (), tuple(ids[test])))
    with torch.inference_mode():
        x = torch.as_tensor(scored.x_val, dtype=torch.float32)
        proba = torch.softmax(net(x), dim=1).numpy().astype(np.float32)
    pred = proba.argmax(axis=1)
    cut_at, window_end = int(tl.bounds[window]), int(tl.bounds[window + 1])
    entry = FoldResult(
        profile,
        window,
        picked.best_epoch,
        float((pred == scored.y_val).mean()),
        len(train),
        len(extra),
        len(test),
        time.perf_counter() - start,
        cut_at,
        window_end,
    )
    table = pa.table(
        {
            "media_id": pa.array(list(ids[test]), pa.string()),
            "label": pa.array(scored.y_val, pa.int32()),
            "pred": pa.array(pred, pa.int32()),
            "proba": pa.array(list(proba), pa.list_(pa.float32())),
            "fold": pa.array([window] * len(test), pa.int32()),
            "cut_at": pa.array([cut_at] * len(test), pa.int64()).cast(TS),
        }
    )
    return entry, table
