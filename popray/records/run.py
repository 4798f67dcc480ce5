"""The records a run keeps about its input and itself: quarantined rows (table
`quarantine`), OUT/ingest.json and OUT/timings.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa


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
    from popray.io.tables import table_schema

    return pa.Table.from_pylist([asdict(e) for e in entries], schema=table_schema("quarantine"))


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
