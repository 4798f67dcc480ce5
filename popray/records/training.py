"""The records of the train stage: a trial's result, and the final models (`ModelCard`: a
row of table `models`; `SavedModel`: the model.json beside its weights)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from popray.config import ModelName, Scheme


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
    folder `model_files.load_final` reads; `profile_id` is `model_files.POOLED` for the
    cross-profile models."""

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
class SavedModel:
    """A final model's `model.json`, beside its weights (`model.pt`) and the items it saw
    (`items.parquet`) in its folder under OUT/models/: what it is, what it was trained on
    and with. `train` is the optimiser settings as trained (kept as written: a saved model
    is reused only while they are the same, key for key); `width` its input width;
    `profiles`, for a cross-profile model, the profiles it was trained on."""

    profile_id: str
    context_features: bool
    model: ModelName
    k: int
    scheme: Scheme
    backbone: str
    epochs: int
    seed: int
    train: dict[str, Any]
    snapshot: str
    grid_accuracy_mean: float | None = None
    width: int | None = None
    profiles: list[str] | None = None
    created_at: str | None = None

    def to_json(self) -> str:
        fields = asdict(self)
        if self.profiles is None:  # a profile's own model
            del fields["profiles"]
        return json.dumps(fields, indent=2)

    @classmethod
    def from_json(cls, text: str) -> SavedModel:
        return cls(**json.loads(text))
