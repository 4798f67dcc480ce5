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
OTHER_KIND: dict[str, MediaKind] = {"image": "video", "video": "image"}


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


ExplainPick = Literal["class_sample", "top", "bottom", "file"]


@dataclass(frozen=True)
class ExplainJob:
    """One image for a Grad-CAM actor: picked as a class sample or as one of the profile's
    highest/lowest-scored images (`file` a path inside the export, `score` its out-of-fold
    score), or a --media file of the driver's (`picked` "file": its `data` read there, or
    the `error` that prevented it)."""

    media_id: str | None
    label: int | None
    file: str
    picked: ExplainPick
    score: float | None = None
    data: bytes | None = None
    error: str | None = None

    def key(self) -> dict[str, Any]:
        """Its columns of table `explanations` (what identifies the image, not its bytes)."""
        return {n: getattr(self, n) for n in ("media_id", "label", "file", "picked", "score")}


@dataclass(frozen=True)
class Heatmap:
    """What a Grad-CAM actor returns for one `ExplainJob`: the class probabilities and the
    heatmap over the image (PNG bytes), or the error that prevented them."""

    proba: Any = None  # numpy array (k,)
    png: bytes | None = None
    error: str | None = None


def _read_json(path: Path, missing: str, sep: str = " ") -> dict[str, Any]:
    """A JSON record a stage wrote under OUT; MissingError ("<path><sep><missing>") when the
    stage has not run."""
    from popray.errors import MissingError

    if not path.exists():
        raise MissingError(f"{path}{sep}{missing}")
    return json.loads(path.read_text())


INGEST_FILE = "ingest.json"
TIMINGS_FILE = "timings.json"


@dataclass(frozen=True)
class IngestRecord:
    """OUT/ingest.json: the export OUT was ingested from (a folder or a storage URI) and
    its rows per input file. Every later stage finds the media files through it."""

    input_dir: str
    input_rows: dict[str, int]

    def write(self, out: Path) -> None:
        (out / INGEST_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, out: Path) -> IngestRecord:
        raw = _read_json(
            out / INGEST_FILE, f"does not exist: run `popray ingest --out {out}` first"
        )
        return cls(raw["input_dir"], raw.get("input_rows", {}))


@dataclass(frozen=True)
class RunManifest:
    """OUT/timings.json: what a finished `popray run` records about itself, each stage's
    wall time in seconds (`stages`, in run order; `embed_assemble*` are parts of embed's
    time) and the train stage's phases (`train_phases`), as `popray plan --against`
    reads them. Runs before a stage or phase was recorded simply lack it."""

    stages: dict[str, float]
    train_phases: dict[str, float]

    def get(self, name: str, default: float | None = None) -> float | None:
        return self.stages.get(name, default)

    def phase(self, name: str, default: float = 0.0) -> float:
        return self.train_phases.get(name, default)

    def to_json(self) -> dict[str, Any]:
        """The file's form: the stages flat, the phases under "train_phases"."""
        out: dict[str, Any] = dict(self.stages)
        if self.train_phases:
            out["train_phases"] = dict(self.train_phases)
        return out

    def write(self, out: Path) -> None:
        (out / TIMINGS_FILE).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def read(cls, out: Path) -> RunManifest:
        raw = _read_json(out / TIMINGS_FILE, "missing; `popray run` writes it", sep=": ")
        phases = raw.pop("train_phases", {})
        return cls({k: float(v) for k, v in raw.items()}, {k: float(v) for k, v in phases.items()})
