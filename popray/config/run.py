"""A stage's and a whole run's configuration: each stage's options, storage, folders."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from popray.config.base import _Config
from popray.config.data import DedupConfig, EmbedConfig, LabelConfig
from popray.config.grid import GridConfig
from popray.io.storage import Location


class StageConfig(_Config):
    """Each stage's options, and the storage the cluster shares: what a stage command
    needs (`popray embed`, `popray train`, ...), without the run's folders."""

    storage: str | None = Field(
        default=None,
        description="where the cluster's workers write what the driver then reads (new "
        "embedding rows, the grid's Tune experiment and trial results): a URI every node "
        "reaches (s3://bucket/prefix, ...), needed on a multi-node cluster, e.g. "
        "<publish_to>/work. Default: <work_dir>/work, else out_dir (one machine)",
    )
    label: LabelConfig = Field(default_factory=LabelConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    grid: GridConfig = Field(default_factory=GridConfig)

    @field_validator("storage")
    @classmethod
    def _a_storage_uri(cls, value: str | None, info) -> str | None:
        return _a_uri(value, info.field_name)

    def storage_location(self) -> Location | None:
        """The run's shared storage (None: out_dir, on this machine)."""
        return Location.parse(self.storage) if self.storage else None


def _a_uri(value: str | None, field: str) -> str | None:
    if value is not None and "://" not in value:
        raise ValueError(f"{field} {value!r}: give a URI such as s3://bucket/prefix")
    return value


class RunConfig(StageConfig):
    """One end-to-end run: where the export is, where outputs go, and each stage's options."""

    input_dir: str = Field(
        description="profile export (posts, media, followers, ...): a folder on this machine, "
        "or a URI every node of a cluster reaches (s3://bucket/prefix, gs://..., file:///mnt/...)"
    )
    out_dir: Path = Field(default=Path("out"), description="output folder (tables, DuckDB, ...)")
    publish_to: str | None = Field(
        default=None,
        description="object storage the published run is uploaded to (s3://bucket/prefix, "
        "gs://bucket/prefix, file:///path): CURRENT names the run, written last; out_dir "
        "stays the local work folder, filled from there on a fresh machine",
    )
    work_dir: str | None = Field(
        default=None,
        description="the run's work folder on object storage (s3://bucket/prefix; "
        "`popray run --out s3://...` sets it): the published runs and CURRENT "
        "(publish_to), what the workers write (storage = <work_dir>/work) and the writer "
        "lease (<work_dir>/LOCK). out_dir is then only the driver's scratch copy (default "
        "$POPRAY_SCRATCH or ~/.cache/popray/work/<hash>), refilled from work_dir on a "
        "fresh head",
    )

    @field_validator("input_dir", mode="before")
    @classmethod
    def _a_location(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    @field_validator("publish_to", "work_dir")
    @classmethod
    def _a_run_uri(cls, value: str | None, info) -> str | None:
        return _a_uri(value, info.field_name)

    @model_validator(mode="after")
    def _on_work_dir(self) -> RunConfig:
        """A work folder on storage publishes there, keeps the workers' files below it,
        and leaves the driver a local scratch copy (unless out_dir names one)."""
        if self.work_dir is None:
            return self
        if self.publish_to not in (None, self.work_dir):
            raise ValueError(
                f"publish_to {self.publish_to!r} with work_dir {self.work_dir!r}: a run with a "
                "work folder on storage is published there; leave publish_to out"
            )
        work = Location.parse(self.work_dir)
        derived = {"publish_to": self.work_dir, "storage": self.storage or work.child("work").uri}
        if "out_dir" not in self.model_fields_set:
            derived["out_dir"] = scratch_for(work)
        for name, value in derived.items():  # frozen model: filled once, while validating
            object.__setattr__(self, name, value)
        return self


def scratch_for(work: Location) -> Path:
    """The driver's local copy of a work folder on storage: one folder per work folder
    under $POPRAY_SCRATCH (default ~/.cache/popray/work); losing it costs one download."""
    root = Path(os.environ.get("POPRAY_SCRATCH") or Path.home() / ".cache" / "popray" / "work")
    return root / hashlib.sha256(work.display().encode()).hexdigest()[:16]
