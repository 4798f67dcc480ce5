"""Typed records that cross stage boundaries (validated once, at the edge, then typed).

A record that travels through Ray Data goes as a plain row (`row()`), because Ray Data
carries dicts of columns; it is rebuilt as a record where it comes back (`from_row`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from popray.config import ModelName, Scheme

MediaKind = Literal["image", "video"]
MEDIA_KINDS: tuple[MediaKind, ...] = ("image", "video")


@dataclass(frozen=True)
class MediaItem:
    """One media file to decode and embed. `path` and `thumb` are relative to the export
    the pipeline reads (or absolute, with `storage.LOCAL_FILES`); `thumb` is "" when the
    post has no thumbnail file; `part` names the embedding table part its rows go to."""

    media_id: str
    sha256: str
    kind: MediaKind
    path: str
    thumb: str = ""
    part: str = ""

    def __post_init__(self) -> None:
        if self.kind not in MEDIA_KINDS:
            raise ValueError(f"media {self.media_id!r}: kind {self.kind!r} is not image or video")

    @classmethod
    def of_file(cls, media_id: str, path: Path, kind: MediaKind = "image") -> MediaItem:
        """A file on this machine (read with `storage.LOCAL_FILES`), hashed now."""
        from popray.io.storage import sha256_file

        return cls(media_id, sha256_file(path), kind, str(path))

    @classmethod
    def of_media(cls, row: dict[str, Any], part: str = "") -> MediaItem:
        """A row of the `media` table (as ingest validated it)."""
        return cls(
            row["media_id"],
            row["sha256"],
            row["media_type"],
            row["path"],
            row["thumbnail_path"] or "",
            part,
        )

    def row(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Embedded:
    """What the embedding pipeline returns for one item. `error` is "" when it was
    embedded, else why not (for quarantine); `device` is where its forward pass ran
    ("cpu", "cuda"). `meta` (JSON text: a video's sampling) and `embeddings`
    (frames × width) come back only when the driver asked for the vectors; when the
    cluster wrote the rows itself, both are None."""

    media_id: str
    sha256: str
    kind: MediaKind
    error: str
    device: str
    meta: str | None = None
    embeddings: Any = None  # numpy array (frames, width)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Embedded:
        return cls(
            str(row["media_id"]),
            str(row["sha256"]),
            str(row["kind"]),  # type: ignore[arg-type]  # written from a MediaItem
            str(row["error"] or ""),
            str(row["device"]),
            None if row.get("meta") is None else str(row["meta"]),
            row.get("embeddings"),
        )


@dataclass(frozen=True)
class FoldResult:
    """One profile's part of a trial: a fold of the stratified k-fold, or a window of the
    walk-forward (then `fold` is the window, bounded by `cut_at` and `window_end`, µs
    since the epoch). One row of table `trials`."""

    profile_id: str
    fold: int
    best_epoch: int
    val_accuracy: float
    n_train: int
    n_extra: int
    n_val: int
    train_s: float
    cut_at: int | None = None
    window_end: int | None = None

    def row(self) -> dict[str, Any]:
        """Its columns of table `trials` (the window bounds as timestamps)."""
        row: dict[str, Any] = asdict(self)
        for name in ("cut_at", "window_end"):
            row[name] = _timestamp(row[name])
        return row


@dataclass(frozen=True)
class TrialResult:
    """What one trial (a model, k, seed and fold, over its profiles) found: one
    `FoldResult` per profile and fold or window. Kept as the trial's metrics.json, the
    file whose presence marks a finished trial."""

    profiles: tuple[FoldResult, ...]
    finished_at: float  # time.time() when it finished

    def summary(self) -> dict[str, float | int]:
        """The flat numbers a trial reports to Tune (and the progress line prints)."""
        return {
            "val_accuracy": float(np.mean([p.val_accuracy for p in self.profiles])),
            "best_epoch": int(np.median([p.best_epoch for p in self.profiles])),
            "train_s": float(sum(p.train_s for p in self.profiles)),
            "n_profiles": len(self.profiles),
            "finished_at": self.finished_at,
        }

    def to_json(self) -> bytes:
        entries = [
            {k: v for k, v in asdict(p).items() if v is not None or k not in _WINDOW}
            for p in self.profiles
        ]
        return json.dumps(self.summary() | {"profiles": entries}).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> TrialResult:
        raw = json.loads(data)
        return cls(tuple(FoldResult(**p) for p in raw["profiles"]), raw["finished_at"])


_WINDOW = ("cut_at", "window_end")


def _timestamp(us: int | None) -> datetime | None:
    """µs since the epoch (as a trial's metrics.json keeps a window's bounds) as a time."""
    return None if us is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


@dataclass(frozen=True)
class ModelCard:
    """A saved final model: its row of table `models`. `path` (relative to OUT) is the
    folder `final.load_final` reads; `profile_id` is `final.POOLED` for the cross-profile
    models."""

    scheme: Scheme
    backbone: str
    features: str  # "embedding" | "embedding+context"
    model: ModelName
    k: int
    profile_id: str
    epochs: int
    seed: int
    n_images: int
    n_videos: int
    snapshot: str
    path: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ModelCard:
        return cls(**row)


@dataclass(frozen=True)
class QuarantineEntry:
    """An input row, or a media file, that could not be used: one row of table
    `quarantine`. `source` is the file (`posts.csv`, ...) or table, `row` its row number,
    `field`/`value` what was wrong with it and `reason` why; `record` is the row itself
    (JSON, cut at 2,000 characters) or, from embedding, what the failure was keyed by."""

    stage: Literal["ingest", "embed"]
    source: str
    row: int | None
    reason: str
    field: str | None = None
    value: str | None = None
    profile_id: str | None = None
    post_id: str | None = None
    media_id: str | None = None
    path: str | None = None
    record: str | None = None


def quarantine_table(entries: list[QuarantineEntry]) -> pa.Table:
    """Entries as table `quarantine` (its schema)."""
    from popray.io.tables import SCHEMAS

    return pa.Table.from_pylist([asdict(e) for e in entries], schema=SCHEMAS["quarantine"])
