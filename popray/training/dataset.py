"""Training data: per k a `TrainingSet`, its images and its videos, each `Items` (ids,
classes, owners, embeddings). popray/training/loading.py builds them from OUT.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from popray.training.object_rows import Rows, take

ONE_PROFILE = "profile"  # the profile of items built without one (synthetic test data)


@dataclass
class Items:
    """One media type's training items of one k, in training order: ids, their bytes'
    sha256, their classes `y`, their profiles, and their embeddings: an image's views
    (n, 1 + views, width; view 0 the image itself) or a video's frames (m, 15, width),
    with a video's `pooled` vector (m, width; the model input "vector", see
    `models.model_input`). Arrays here or in the object store (`Rows`)."""

    ids: list[str]
    sha256: list[str]
    y: np.ndarray
    embeddings: np.ndarray | Rows
    pooled: np.ndarray | Rows | None = None  # videos only
    profile: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def arrays(self) -> list[np.ndarray | Rows]:
        return [self.embeddings] + ([] if self.pooled is None else [self.pooled])

    def subset(self, rows: np.ndarray, remote: bool = False) -> Items:
        """The items at `rows` (in that order); `remote`: arrays in the object store
        stay there (see `Rows.select`)."""
        return Items(
            ids=[self.ids[i] for i in rows],
            sha256=[self.sha256[i] for i in rows],
            y=self.y[rows] if len(self.ids) else self.y,
            embeddings=take(self.embeddings, rows, remote),
            pooled=None if self.pooled is None else take(self.pooled, rows, remote),
            profile=[self.profile[i] for i in rows],
        )

    def read_ids(self) -> list[str]:
        """The ids of the items whose embeddings were read."""
        x = self.embeddings
        if isinstance(x, Rows) and x.index is not None and self.ids:
            read = (x.index >= 0).reshape(len(self.ids), -1).all(axis=1)
            return [m for m, ok in zip(self.ids, read.tolist(), strict=True) if ok]
        return list(self.ids)


@dataclass
class TrainingSet:
    """One k's training items of every profile, images and videos;
    `for_profile` cuts out one profile's."""

    images: Items
    videos: Items
    scheme: str = "por_rolling"  # the label scheme the classes come from
    context: bool = False  # CONTEXT_FEATURES appended to every embedding vector

    def __post_init__(self) -> None:
        if not self.images.profile and not self.videos.profile:  # all one profile
            self.images.profile = [ONE_PROFILE] * len(self.images)
            self.videos.profile = [ONE_PROFILE] * len(self.videos)

    def side(self, media_type: str) -> Items:
        """Its images or its videos."""
        return self.images if media_type == "image" else self.videos

    def with_classes(self, image_y: np.ndarray, video_y: np.ndarray) -> TrainingSet:
        """The same items with other classes (as known at another time)."""
        return replace(
            self, images=replace(self.images, y=image_y), videos=replace(self.videos, y=video_y)
        )

    @property
    def features(self) -> str:
        """What the models see, as the `features` column of the grid's tables says it."""
        return "embedding+context" if self.context else "embedding"

    @cached_property
    def _rows(self) -> dict[str, tuple[list[int], list[int]]]:
        """profile -> (its image rows, its video rows): one pass, then reused (a grid
        cuts out each profile many times)."""
        rows: dict[str, tuple[list[int], list[int]]] = {}
        for side, items in enumerate((self.images, self.videos)):
            for i, profile in enumerate(items.profile):
                rows.setdefault(profile, ([], []))[side].append(i)
        return rows

    def profiles(self) -> list[str]:
        return sorted(self._rows)

    def rows_of(self, profile: str) -> tuple[list[int], list[int]]:
        """The row numbers of one profile's images and videos (no copy of any array)."""
        return self._rows.get(profile, ([], []))

    def for_profile(self, profile: str, remote: bool = False) -> TrainingSet:
        """The items of one profile (folds, models and metrics are per profile);
        `remote`: see `for_profiles`."""
        if self.profiles() == [profile] and (remote or not self.remote):
            return self
        return self.for_profiles([profile], remote)

    @property
    def remote(self) -> bool:
        """Its arrays are in the object store (`load_dataset(remote=True)`)."""
        return any(isinstance(x, Rows) for x in self._arrays())

    def _arrays(self) -> list[np.ndarray | Rows]:
        return self.images.arrays() + self.videos.arrays()

    @property
    def complete(self) -> bool:
        """Every item's embeddings were read (see `TrainingKeys.datasets`)."""
        return all(x.complete for x in self._arrays() if isinstance(x, Rows))

    def read_ids(self) -> list[str]:
        """The ids of the items whose embeddings were read."""
        return self.images.read_ids() + self.videos.read_ids()

    def local(self) -> TrainingSet:
        """The same items with every array in this process (itself if already so)."""
        return self.for_profiles(self.profiles()) if self.remote else self

    def for_profiles(self, profiles: list[str], remote: bool = False) -> TrainingSet:
        """The items of several profiles (the cross-profile model trains on them);
        `remote`: arrays in the object store stay there (see `Rows.select`)."""
        rows = [self._rows.get(p, ([], [])) for p in profiles]
        img, vid = (sorted(i for r in rows for i in r[s]) for s in (0, 1))
        return self.subset(img, vid, remote)

    def subset(self, images: list[int], videos: list[int], remote: bool = False) -> TrainingSet:
        """The items at rows `images` and `videos` (each in increasing order); `remote`:
        see `for_profiles`."""
        img, vid = np.asarray(images, np.int64), np.asarray(videos, np.int64)
        return TrainingSet(
            self.images.subset(img, remote),
            self.videos.subset(vid, remote),
            scheme=self.scheme,
            context=self.context,
        )
