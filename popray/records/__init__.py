"""Typed records that cross stage boundaries (validated once, at the edge, then typed).

A record that travels through Ray Data goes as a plain row (`row()`), because Ray Data
carries dicts of columns; it is rebuilt as a record where it comes back (`from_row`).
By stage: `media` (an item to embed, what embedding gave, the Grad-CAM work), `training`
(a trial's result, the final models) and `run` (quarantine, OUT/ingest.json,
OUT/timings.json).
"""

from popray.records.media import (
    MEDIA_KINDS,
    OTHER_KIND,
    Embedded,
    ExplainJob,
    ExplainPick,
    Heatmap,
    MediaItem,
    MediaKind,
)
from popray.records.run import (
    INGEST_FILE,
    TIMINGS_FILE,
    IngestRecord,
    QuarantineEntry,
    RunManifest,
    quarantine_table,
)
from popray.records.training import FoldResult, ModelCard, SavedModel, TrialResult

__all__ = [
    "INGEST_FILE",
    "MEDIA_KINDS",
    "OTHER_KIND",
    "TIMINGS_FILE",
    "Embedded",
    "ExplainJob",
    "ExplainPick",
    "FoldResult",
    "Heatmap",
    "IngestRecord",
    "MediaItem",
    "MediaKind",
    "ModelCard",
    "QuarantineEntry",
    "RunManifest",
    "SavedModel",
    "TrialResult",
    "quarantine_table",
]
