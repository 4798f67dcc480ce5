"""The cross-profile model's folds and samples (popray.training.pooled): GroupKFold over
profiles, each profile's own history before its test fifth, and the cap on the items a
fit trains on (`capped`: spread evenly over the profiles, each profile's picked by a hash
of the media id, so a new post moves only its own profile's pick).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np

from popray.records import MEDIA_KINDS, OTHER_KIND
from popray.training.dataset import Items, TrainingSet
from popray.training.folds import Fold
from popray.training.models import REGISTRY

HISTORIES = (10, 20, 40, 80, 160, 320, 640)
TEST_SHARE, MIN_TEST = 0.2, 5


def sides(ds: TrainingSet, model: str) -> tuple[Items, Items]:
    """(the items the model validates on, the items of the other media type)."""
    media_type = REGISTRY[model].validate_on
    return ds.side(media_type), ds.side(OTHER_KIND[media_type])


def profile_folds(ds: TrainingSet, model: str, n_splits: int) -> list[Fold]:
    """GroupKFold over profiles on the items `model` validates on: a fold's validation
    items are every item of its held-out profiles, its training items every item of the
    others (mixed models: the other media type of the training profiles too)."""
    own, others = sides(ds, model)
    ids, other, owners, other_owners = own.ids, others.ids, np.asarray(own.profile), others.profile
    folds = []
    from sklearn.model_selection import GroupKFold  # heavy: only where folds are cut

    splitter = GroupKFold(n_splits=n_splits)
    for fold, (train, val) in enumerate(splitter.split(ids, groups=owners)):
        held_out = set(owners[val])
        extra = ()
        if REGISTRY[model].train_extra != "none":
            extra = tuple(m for m, p in zip(other, other_owners, strict=True) if p not in held_out)
        folds.append(Fold(fold, tuple(ids[i] for i in train), tuple(ids[i] for i in val), extra))
    return folds


def capped(ids: Sequence[str], owners: Sequence[str], limit: int | None) -> tuple[str, ...]:
    """At most `limit` of `ids` (all of them when None or fewer), in their order: every
    profile (`owners`) keeps up to the same number q, the largest q that fits, and those
    it keeps are its items with the lowest CRC-32 of the media id (stable from run to
    run). With more profiles than `limit`, the `limit` lowest-hashed items overall."""
    if limit is None or len(ids) <= limit:
        return tuple(ids)
    by_owner: dict[str, list[str]] = defaultdict(list)
    for media_id, owner in zip(ids, owners, strict=True):
        by_owner[owner].append(media_id)
    room, left, quota = limit, len(by_owner), 0
    for size in sorted(len(items) for items in by_owner.values()):
        if size * left > room:
            quota = room // left
            break
        room, left = room - size, left - 1
    if quota == 0:
        keep = set(sorted(ids, key=_rank)[:limit])
    else:
        keep = {m for items in by_owner.values() for m in sorted(items, key=_rank)[:quota]}
    return tuple(m for m in ids if m in keep)


def _rank(media_id: str) -> tuple[int, str]:
    return zlib.crc32(media_id.encode()), media_id


def capped_fold(fold: Fold, owner: dict[str, str], limit: int | None) -> Fold:
    """`fold` with its training items (and the other type's extra items) capped;
    `owner`: media_id -> profile."""
    train = capped(fold.train, [owner[m] for m in fold.train], limit)
    extra = capped(fold.extra_train, [owner[m] for m in fold.extra_train], limit)
    return replace(fold, train=train, extra_train=extra)


def final_sample(ds: TrainingSet, model: str, limit: int | None) -> TrainingSet:
    """The items the final cross-profile model trains on: `ds` itself when no side is
    over `limit`, else the capped items (the other media type's only where the model
    trains on it)."""
    own = REGISTRY[model].validate_on
    extra = REGISTRY[model].train_extra != "none"
    sides = []
    for media_type in MEDIA_KINDS:
        items = ds.side(media_type)
        wanted = media_type == own or extra
        sides.append((items.ids, capped(items.ids, items.profile, limit) if wanted else (), wanted))
    if all(len(keep) == len(ids) for ids, keep, wanted in sides if wanted):
        return ds
    rows = []
    for ids, keep, _ in sides:
        kept = set(keep)
        rows.append([i for i, m in enumerate(ids) if m in kept])
    return ds.subset(rows[0], rows[1], remote=True)


def history_folds(
    ds: TrainingSet, model: str, profile: str, times: dict[str, datetime]
) -> list[tuple[int, Fold]]:
    """(h, fold) for one profile's own model: its latest fifth (at least MIN_TEST items)
    validated on, the h items published just before it trained on; none when fewer than
    HISTORIES[0] items come before the test set."""
    own, others = sides(ds, model)
    ids, other, owners, other_owners = own.ids, others.ids, own.profile, others.profile
    mine = sorted(
        (m for m, p in zip(ids, owners, strict=True) if p == profile), key=lambda m: (times[m], m)
    )
    n_test = max(MIN_TEST, round(TEST_SHARE * len(mine)))
    before, test = mine[:-n_test], tuple(mine[-n_test:])
    if len(before) < HISTORIES[0]:
        return []
    start = times[test[0]]
    extra = ()
    if REGISTRY[model].train_extra != "none":  # the other type's items from before the test
        extra = tuple(
            m for m, p in zip(other, other_owners, strict=True) if p == profile and times[m] < start
        )
    sizes = [h for h in HISTORIES if h < len(before)] + [len(before)]
    return [(h, Fold(0, tuple(before[-h:]), test, extra)) for h in sizes]
