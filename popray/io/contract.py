"""The input contract: one pydantic model per row of each input file.

A profile export is a folder with `posts`, `media`, `followers` and, optionally,
`exclude` (each `.csv`, `.jsonl` or `.parquet`) plus the media files. These models are
the single source of truth for it: ingest validates every row with them, and
`schemas/inputs/*.schema.json` is generated from them (`popray schemas`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

# Identifiers end up in SQL parameters, file names and reports: keep them plain.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
HASHTAG = re.compile(r"#\w+")


class PostType(StrEnum):
    image = "image"
    video = "video"
    carousel = "carousel"


class MediaType(StrEnum):
    image = "image"
    video = "video"


def _to_utc(value: datetime) -> datetime:
    """Naive timestamps mean UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _date_to_datetime(value: object) -> object:
    """A bare date (`2021-03-04`) is midnight UTC of that day."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(), tzinfo=UTC)
    return value


def _relative_media_path(value: str) -> str:
    """A media path is relative to the input folder and never leaves it."""
    if "\\" in value or re.match(r"^[A-Za-z]:", value):
        raise ValueError("must be a POSIX path relative to the input folder")
    if value.startswith("/"):
        raise ValueError("must be relative to the input folder, not absolute")
    # what str(PurePosixPath(value)) gives, without building one per row (ingest's
    # hottest line): empty and "." segments dropped
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("must not contain '..' (it would leave the input folder)")
    if not parts:
        raise ValueError("must name a file")
    return "/".join(parts)


UtcDatetime = Annotated[datetime, BeforeValidator(_date_to_datetime), AfterValidator(_to_utc)]
MediaPath = Annotated[
    str, Field(min_length=1, max_length=1024), AfterValidator(_relative_media_path)
]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class PostRow(_Row):
    """One post of a profile (`posts.csv`)."""

    profile_id: Identifier
    post_id: Identifier
    published_at: UtcDatetime = Field(description="ISO 8601; a naive timestamp means UTC")
    likes: NonNegativeInt
    comments: NonNegativeInt
    post_type: PostType
    caption: str | None = Field(default=None, max_length=10_000)
    n_hashtags: NonNegativeInt | None = Field(
        default=None, description="derived from the caption when absent"
    )

    @model_validator(mode="after")
    def _derive_hashtags(self) -> PostRow:
        if self.n_hashtags is None and self.caption is not None:
            object.__setattr__(self, "n_hashtags", len(HASHTAG.findall(self.caption)))
        return self


class MediaRow(_Row):
    """One image or video of a post (`media.csv`); a carousel has several."""

    media_id: Identifier
    post_id: Identifier
    position: NonNegativeInt = Field(description="order inside the post, 0 first")
    media_type: MediaType
    path: MediaPath = Field(description="relative to the input folder")
    thumbnail_path: MediaPath | None = Field(
        default=None, description="optional cover image of a video, relative to the input folder"
    )


class FollowerRow(_Row):
    """One known point of a profile's follower count (`followers.csv`); sparse, with gaps."""

    profile_id: Identifier
    at: UtcDatetime = Field(description="date or ISO 8601 timestamp; naive means UTC")
    followers: PositiveInt


class ExcludeRow(_Row):
    """A media item a person removed by hand, e.g. a logo inside a carousel (`exclude.csv`)."""

    media_id: Identifier
    reason: str = Field(min_length=1, max_length=1_000)


# Input name -> row model; the order is the order ingest reads them in.
INPUTS: dict[str, type[_Row]] = {
    "posts": PostRow,
    "media": MediaRow,
    "followers": FollowerRow,
    "exclude": ExcludeRow,
}
REQUIRED_INPUTS = ("posts", "media", "followers")
