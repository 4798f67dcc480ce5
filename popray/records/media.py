"""The records of the media stages: an item to embed, what embedding it gave, and the
Grad-CAM work (`ExplainJob` out, `Heatmap` back)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

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
