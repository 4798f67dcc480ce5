"""Ingest: validate a profile export and write `posts`, `media`, `followers`, `excluded`
and `quarantine` as Parquet under OUT, plus the DuckDB views over them.

Every input row ends up in exactly one place: its valid table (with `source_row`) or
`quarantine` (with file, row, field and reason). A missing or unreadable file, or a wrong
header, stops the run with an `InputError` naming the file.

    popray ingest --input data/demo --out out
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from popray.errors import InputError, StorageError
from popray.io import storage, store
from popray.io.contract import (
    INPUTS,
    REQUIRED_INPUTS,
)
from popray.io.cross_checks import cross_checks, in_order
from popray.io.rows import TABLE_OF, Quarantine, find_input, validate_file
from popray.io.storage import Location, sha256_bytes
from popray.io.tables import empty, table_schema
from popray.records import IngestRecord

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    tables: dict[str, pa.Table]
    input_rows: dict[str, int]


def ingest(source: Location | Path | str, hash_workers: int = 8) -> IngestResult:
    """Validate a profile export (a local folder or a storage URI) into the five ingest
    tables (nothing is written). Rows are validated in chunks (on Ray tasks for long
    files, `validate_file`); the checks across rows and files (duplicates, posts without
    follower history, media against posts and files, exclusions) run in DuckDB."""
    try:
        export = source if isinstance(source, Location) else Location.parse(source)
        export.check_folder()
    except StorageError as exc:
        raise InputError(str(exc)) from exc
    quarantine = Quarantine()
    valid: dict[str, pa.Table] = {}
    sources: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name in INPUTS:
        file = find_input(export, name)
        if file is None:
            if name in REQUIRED_INPUTS:
                raise InputError(f"{export.display()}: missing {name}.csv (or .jsonl / .parquet)")
            valid[name], counts[name] = empty(TABLE_OF[name]), 0
            continue
        sources[name] = file
        valid[name], counts[name] = validate_file(export, file, name, quarantine)
    kept = cross_checks(export, valid, sources, counts, quarantine)
    tables = {
        "posts": in_order(valid["posts"], kept.posts),
        "media": _media_table(export, valid["media"], kept.media, hash_workers),
        "followers": in_order(valid["followers"], kept.followers),
        "excluded": in_order(valid["exclude"], kept.excluded),
        "quarantine": quarantine.table(),
    }
    return IngestResult(tables=tables, input_rows={sources.get(k, k): v for k, v in counts.items()})


def _media_table(
    export: Location, valid: pa.Table, media_rows: list[tuple[int, str]], hash_workers: int
) -> pa.Table:
    """The media kept, with their post's profile, their bytes' sha256 (hashed here, or
    by Ray tasks where the files are on object storage) and their size."""
    media = in_order(valid, [n for n, _ in media_rows])
    rels = media["path"].to_pylist()
    if isinstance(export.fs, pafs.LocalFileSystem):
        hashes = _hash_local(export, rels, hash_workers)
    else:
        hashes = _hash_on_cluster(export, rels)
    sizes = [info.size for info in export.infos(rels)]
    schema = table_schema("media")
    for column, values in (
        ("profile_id", [profile for _, profile in media_rows]),
        ("sha256", hashes),
        ("size_bytes", sizes),
    ):
        i = schema.get_field_index(column)
        media = media.set_column(i, schema.field(i), pa.array(values, schema.field(i).type))
    return media


def _hash_local(export: Location, rels: list[str], workers: int) -> list[str]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda r: storage.sha256_file(Path(export.path(r))), rels))


def _hash_chunk(export: Location, rels: list[str]) -> list[str]:
    """Ray task: sha256 of each object, read on the node the task runs on."""
    return [sha256_bytes(export.read_bytes(r)) for r in rels]


def _hash_on_cluster(export: Location, rels: list[str], chunk: int = 32) -> list[str]:
    """sha256 of objects on storage, computed by Ray tasks where the bytes are read
    (the driver downloads none of them)."""
    import ray

    from popray.cluster import ensure_ray

    ensure_ray()
    task = ray.remote(num_cpus=0.5, max_retries=3)(_hash_chunk)
    refs = [task.remote(export, rels[i : i + chunk]) for i in range(0, len(rels), chunk)]
    return [h for part in ray.get(refs) for h in part]


def run_ingest(input_dir: Location | Path | str, out: Path) -> IngestResult:
    """Ingest `input_dir` (a folder or a storage URI) and publish its tables and DuckDB
    views under `out`."""
    try:
        export = input_dir if isinstance(input_dir, Location) else Location.parse(input_dir)
    except StorageError as exc:
        raise InputError(str(exc)) from exc
    result = ingest(export)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in result.tables.items():
        store.write_table(out, name, table, part="ingest" if name == "quarantine" else "data")
    IngestRecord(export.uri, result.input_rows).write(out)  # how later stages find the media
    store.refresh_views(out)
    log.info("ingested %s: %s", export.display(), {k: v.num_rows for k, v in result.tables.items()})
    return result
