"""Embedding stage: Ray Data decodes media in parallel tasks and a pool of model actors
turns the pixels into backbone embeddings (GPU when present), written as Parquet.

    popray embed --out out            (python -m jobs.embed --out out)

Reads `media` (and `excluded`), writes `embeddings_image` (one row per image and view),
`embeddings_video` (one row per video) and the `embed-<backbone>` part of `quarantine`.
Every media item that is not excluded ends up embedded or quarantined, exactly once.
Incremental: an item whose (sha256, backbone, preprocessing) is already embedded (or
already failed) is neither decoded nor embedded again.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from popray.cluster import ensure_ray
from popray.config import EmbedConfig
from popray.io import store
from popray.io.storage import Location, check_cluster_reach
from popray.io.store import input_dir_of
from popray.media.embed_assemble import Assembled, assemble
from popray.media.embed_pipeline import TRANSIENT, image_key, run_pipeline, video_key
from popray.media.embed_write import part_of, parts_of, schemas, staged_width
from popray.records import MediaItem, QuarantineEntry, quarantine_table

log = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    reused: int = 0
    embedded: int = 0
    quarantined: int = 0
    excluded: int = 0
    seconds: float = 0.0
    new_reasons: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()  # where the forward passes ran ("cpu", "cuda")
    parts: Assembled = field(default_factory=Assembled)  # the tables' parts, both tables
    assemble_s: float = 0.0  # assembling the tables' parts (part of `seconds`)

    def line(self) -> str:
        parts = f"; table parts: {self.parts.written} written, {self.parts.kept} unchanged" + (
            f", {self.parts.removed} removed" if self.parts.removed else ""
        )
        if not self.embedded and not self.quarantined:
            return (
                f"nothing new to embed: {self.reused} media reused from earlier runs, "
                f"no decoding, no forward pass{parts}"
            )
        return (
            f"embedded {self.embedded} media, quarantined {self.quarantined}, reused "
            f"{self.reused}, skipped {self.excluded} excluded, in {self.seconds:.1f} s"
            f"{' on ' + ' and '.join(self.devices) if self.devices else ''}{parts}"
        )

    def text(self) -> str:
        """The line, then each item quarantined in this run and why."""
        reasons = (f"  quarantined {media_id}: {why}" for media_id, why in self.new_reasons.items())
        return "\n".join([self.line(), *reasons])


def _previous(out: Path, name: str, part: str, key: str | None = None) -> pa.Table | None:
    """An earlier run's part of a table (only rows made with preprocessing `key`)."""
    if not store.has_table(out, name, part):
        return None
    table = store.read_table(out, name, part)
    return table if key is None else table.filter(pc.equal(table["preprocess"], key))


def _cached_failures(out: Path, cfg: EmbedConfig) -> dict[str, str]:
    """sha256 -> reason, for earlier deterministic failures under the same preprocessing."""
    prev = _previous(out, "quarantine", f"embed-{cfg.backbone}")
    keys = {image_key(cfg), video_key(cfg)}
    failed = {}
    for row in prev.to_pylist() if prev is not None else []:
        record = json.loads(row["record"] or "{}")
        if record.get("preprocess") in keys and not row["reason"].startswith(TRANSIENT):
            failed[record["sha256"]] = row["reason"]
    return failed


def _done(out: Path, name: str, backbone: str, key: str) -> set[str]:
    """sha256 of the items an earlier run embedded with `backbone` and preprocessing `key`
    (reads only the key columns of its parts, not the embeddings)."""
    done: set[str] = set()
    for path in parts_of(out, name, backbone).values():
        table = pq.read_table(path, columns=["sha256", "preprocess"])
        done.update(
            pc.unique(table.filter(pc.equal(table["preprocess"], key))["sha256"]).to_pylist()
        )
    return done


def _width(cfg: EmbedConfig, out: Path, staging: Location | None) -> int:
    """The embedding width: from the rows staged now, else earlier ones, else the backbone."""
    width = staged_width(staging) if staging else None
    if width is not None:
        return width
    for name, column in (("embeddings_image", "embedding"), ("embeddings_video", "pooled")):
        for path in parts_of(out, name, cfg.backbone).values():
            return pq.read_schema(path).field(column).type.list_size
    from popray.media.backbones import create_backbone

    return create_backbone(cfg.backbone, "random").width


STAGING = "staging-embed-"
STALE_AFTER = timedelta(days=1)


def sweep_staging(root: Location, now: datetime | None = None) -> list[str]:
    """Remove what killed runs staged under `root` more than a day ago (their rows were
    never assembled; a rerun embeds those items again). Younger staging folders may
    belong to a run in progress that shares the storage, and stay. Returns the removed."""
    now = now or datetime.now(UTC)
    removed = []
    for name in root.names():
        if not name.startswith(STAGING):
            continue
        try:
            made = datetime.strptime(name[len(STAGING) :][:15], "%Y%m%dT%H%M%S")
        except ValueError:
            continue  # not named by this popray: leave it
        if now - made.replace(tzinfo=UTC) > STALE_AFTER:
            root.child(name).delete()
            removed.append(name)
    return removed


def run_embed(out: Path, cfg: EmbedConfig, storage: Location | None = None) -> EmbedReport:
    """Embed every media item of `out` that is not excluded, reusing earlier results.
    `storage`: where the cluster writes the new embedding rows before they are assembled
    into the tables (a URI every node reaches on a cluster; default OUT)."""
    start = time.perf_counter()
    export = input_dir_of(out)
    media = store.read_table(out, "media").to_pylist()
    excluded = set(store.read_table(out, "excluded")["media_id"].to_pylist())
    keys = {"image": image_key(cfg), "video": video_key(cfg)}
    failed = _cached_failures(out, cfg)
    todo = [m for m in media if m["media_id"] not in excluded]
    need = _to_embed(out, cfg, keys, todo, failed)
    root = storage or Location.parse(out)
    staging = root.child(f"{STAGING}{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
    if need:
        ensure_ray()
        check_cluster_reach(export, "the export", "--input")
        check_cluster_reach(staging, "the run's storage", "--storage")
        sweep_staging(root)
    try:
        results = run_pipeline(list(need.values()), cfg, export, staging, keys) if need else []
        got = {r.sha256 for r in results}
        if got != set(need):  # never lose an item silently
            raise RuntimeError(
                f"embedding returned {len(got)} of {len(need)} items; missing: "
                f"{sorted(set(need) - got)[:5]}"
            )
        new_failed = {r.sha256: r.error for r in results if r.error}
        failed |= new_failed
        assembling = time.perf_counter()
        all_parts = _assemble_tables(out, cfg, keys, todo, failed, need, staging if need else None)
        assemble_s = time.perf_counter() - assembling
    finally:
        if need:
            staging.delete()
    quarantine = [
        _quarantined(m, failed[m["sha256"]], cfg, keys) for m in todo if m["sha256"] in failed
    ]
    store.write_table(out, "quarantine", quarantine_table(quarantine), part=f"embed-{cfg.backbone}")
    store.refresh_views(out)
    new = [m for m in todo if m["sha256"] in need]
    report = EmbedReport(
        reused=len(todo) - len(new),
        embedded=sum(1 for m in new if m["sha256"] not in new_failed),
        quarantined=sum(1 for m in todo if m["sha256"] in new_failed),
        excluded=len(media) - len(todo),
        seconds=time.perf_counter() - start,
        new_reasons={
            m["media_id"]: new_failed[m["sha256"]] for m in todo if m["sha256"] in new_failed
        },
        devices=tuple(sorted({r.device for r in results})),
        parts=all_parts,
        assemble_s=assemble_s,
    )
    log.info(report.line())
    return report


def _to_embed(
    out: Path, cfg: EmbedConfig, keys: dict[str, str], todo: list[dict], failed: dict[str, str]
) -> dict[str, MediaItem]:
    """sha256 -> item, for the items no earlier run embedded (or failed on for good) with
    this backbone and preprocessing; one profile's items side by side, so that the
    cluster stages few files per profile part."""
    done = {
        "image": _done(out, "embeddings_image", cfg.backbone, keys["image"]),
        "video": _done(out, "embeddings_video", cfg.backbone, keys["video"]),
    }
    need: dict[str, MediaItem] = {}
    for m in todo:
        sha = m["sha256"]
        if sha in done[m["media_type"]] or sha in failed or sha in need:
            continue
        need[sha] = MediaItem.of_media(m, part_of(cfg.backbone, m["profile_id"]))
    return dict(sorted(need.items(), key=lambda item: item[1].part))


def _assemble_tables(
    out: Path,
    cfg: EmbedConfig,
    keys: dict[str, str],
    todo: list[dict],
    failed: dict[str, str],
    need: dict[str, MediaItem],
    staged: Location | None,
) -> Assembled:
    """Both embedding tables' parts, from the earlier rows and the rows the cluster
    staged (`staged`: None when nothing new was embedded: no calls to the storage)."""
    all_parts = Assembled()
    all_schemas = schemas(_width(cfg, out, staged))
    for kind, name in (("image", "embeddings_image"), ("video", "embeddings_video")):
        current = [
            (m["media_id"], m["sha256"], m["profile_id"])
            for m in todo
            if m["media_type"] == kind and m["sha256"] not in failed
        ]
        parts = staged.child(kind) if staged else None
        owner = {sha: item.part for sha, item in need.items() if item.kind == kind}
        done_parts = assemble(
            out, name, cfg.backbone, all_schemas[kind], keys[kind], parts, current, owner
        )
        all_parts = all_parts + done_parts
    return all_parts


def _quarantined(m: dict, reason: str, cfg: EmbedConfig, keys: dict[str, str]) -> QuarantineEntry:
    """A media row that could not be embedded, keyed by what its failure depends on (a
    rerun with the same bytes, backbone and preprocessing takes the reason over)."""
    return QuarantineEntry(
        "embed",
        "media",
        m["source_row"],
        reason,
        field="path",
        value=m["path"],
        profile_id=m["profile_id"],
        post_id=m["post_id"],
        media_id=m["media_id"],
        path=m["path"],
        record=json.dumps(
            {"sha256": m["sha256"], "backbone": cfg.backbone, "preprocess": keys[m["media_type"]]}
        ),
    )
