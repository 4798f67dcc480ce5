"""Whether a run keeps the published cross-profile models or trains them again.

The cross-profile models (`popray.training.pooled`) learn from every profile's items, so no
profile's unit (`popray.training.units`) owns them. Trained again on every run, one new post on
one profile of 100 retrained them all: 40 of the 130 s of a nightly run. A run keeps
them instead while little has changed since they were trained:

    train again when  changed items / items > grid.pooled_refresh_share  (default 0.05)
                 or   they are older than     grid.pooled_refresh_days   (default 7)
                 or   their options differ (models, cap, folds, training, backbone, ...)

An item counts as changed when its (profile, k) unit differs from the one the models
were trained on, or its profile is new or gone. Table `pooled_units` records, per
(profile, k), the unit and the number of items the models were trained on, their
options and when they were trained. Kept: the published run's `profile_grouped`
predictions (of the items still there), its `cross_profile` rows and its models of
profile `*`; the metrics are computed again from those predictions. So between two
trainings the cross-profile rows describe the models as trained, and a profile's newest
items have no profile-grouped prediction yet.

    grid.pooled_refresh_share = 0      # train them again whenever anything changed
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from popray.config import GridConfig
from popray.io import store
from popray.io.tables import conform, empty, table_schema
from popray.records import ModelCard
from popray.training.dataset import TrainingSet
from popray.training.model_files import POOLED
from popray.training.pooled import PROFILE_GROUPED, PooledResult, profiles_of

OPTIONS = {"pooled", "pooled_max_items", "final_models", "folds", "train", "context_features"}
Key = tuple[str, int]  # (profile_id, k)


@dataclass
class Decision:
    keep: bool
    line: str  # what the train stage prints
    record: pa.Table  # the next `pooled_units` part


def decide(
    out: Path,
    part: str,
    cfg: GridConfig,
    backbone: str,
    datasets: dict[int, TrainingSet],
    units: dict[Key, str],
    now: datetime | None = None,
) -> Decision:
    """Keep the published cross-profile models of `part`, or train them again (see the
    module's docstring); `units`: this run's (profile, k) units."""
    now = now or datetime.now(UTC)
    counts = _counts(datasets)
    options = _options(cfg, backbone, part)
    fresh = _record(units, counts, options, now)
    if not cfg.pooled:
        return Decision(False, "", fresh)
    old = _published(out, part)
    if old is None or not old.num_rows:
        return Decision(False, "cross-profile models: trained (none published yet)", fresh)
    if set(old["options"].to_pylist()) != {options}:
        return Decision(False, "cross-profile models: trained again (options changed)", fresh)
    before = {
        (p, k): (u, n)
        for p, k, u, n in zip(
            *(old[c].to_pylist() for c in ("profile_id", "k", "unit", "n_items")), strict=True
        )
    }
    changed = sum(n for key, n in counts.items() if before.get(key, (None,))[0] != units[key])
    changed += sum(n for key, (_, n) in before.items() if key not in counts)
    share = changed / max(1, sum(counts.values()))
    trained_at = min(old["trained_at"].to_pylist())
    age = now - trained_at
    since = f"trained {trained_at:%Y-%m-%d %H:%M} UTC; {share:.1%} of the items changed since"
    limits = (
        f"train again above {cfg.pooled_refresh_share:.0%} or after "
        f"{cfg.pooled_refresh_days:g} days"
    )
    if share > cfg.pooled_refresh_share or age > timedelta(days=cfg.pooled_refresh_days):
        return Decision(False, f"cross-profile models: trained again ({since}; {limits})", fresh)
    if not _models_there(out, part, cfg):
        return Decision(False, "cross-profile models: trained again (a saved one is gone)", fresh)
    return Decision(True, f"cross-profile models: kept ({since}; {limits})", old)


def kept(out: Path, part: str, datasets: dict[int, TrainingSet]) -> PooledResult:
    """The published cross-profile rows of `part`: its profile-grouped predictions of the
    items still trained on, its `cross_profile` rows of the profiles still there, and
    its models of profile `*`."""
    items = pa.array(sorted({m for ds in datasets.values() for m in ds.images.ids + ds.videos.ids}))
    profiles = pa.array(profiles_of(datasets))
    predictions = store.read_table(out, "predictions", part)
    mine = pc.and_(
        pc.equal(predictions["protocol"], PROFILE_GROUPED),
        pc.is_in(predictions["media_id"], items),
    )
    predictions = conform(predictions.filter(mine), "predictions")
    rows = empty("cross_profile")
    if store.has_table(out, "cross_profile", part):
        rows = store.read_table(out, "cross_profile", part)
        rows = rows.filter(pc.is_in(rows["profile_id"], profiles))
    kept = [ModelCard.from_row(r) for r in _pooled_models(out, part).to_pylist()]
    return PooledResult([predictions], rows, kept, [])


def _counts(datasets: dict[int, TrainingSet]) -> dict[Key, int]:
    """(profile, k) -> its items (images and videos) in the training data."""
    counts: dict[Key, int] = {}
    for k, ds in datasets.items():
        for profile, n in Counter(ds.images.profile + ds.videos.profile).items():
            counts[(profile, k)] = n
    return counts


def _options(cfg: GridConfig, backbone: str, part: str) -> str:
    """A fingerprint of what the cross-profile models' training depends on, beside the
    items: a change trains them again whatever the share of changed items."""
    text = json.dumps([cfg.model_dump(include=OPTIONS), backbone, part], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _record(units: dict[Key, str], counts: dict[Key, int], options: str, now) -> pa.Table:
    keys = sorted(units)
    return pa.table(
        {
            "profile_id": [p for p, _ in keys],
            "k": [k for _, k in keys],
            "unit": [units[key] for key in keys],
            "n_items": [counts.get(key, 0) for key in keys],
            "options": [options] * len(keys),
            "trained_at": [now] * len(keys),
        }
    ).cast(table_schema("pooled_units"))


def _published(out: Path, part: str) -> pa.Table | None:
    if not store.has_table(out, "pooled_units", part):
        return None
    return store.read_table(out, "pooled_units", part)


def _pooled_models(out: Path, part: str) -> pa.Table:
    if not store.has_table(out, "models", part):
        return empty("models")
    models = store.read_table(out, "models", part)
    return models.filter(pc.equal(models["profile_id"], POOLED))


def _models_there(out: Path, part: str, cfg: GridConfig) -> bool:
    """Whether the published run's cross-profile models are all there (when they are
    saved at all): a kept row must name a folder that exists."""
    if not cfg.final_models:
        return True
    paths = _pooled_models(out, part)["path"].to_pylist()
    return bool(paths) and all((out / path).is_dir() for path in paths)
