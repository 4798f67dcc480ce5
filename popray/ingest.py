"""Ingest: validate a profile export and write `posts`, `media`, `followers`, `excluded`
and `quarantine` as Parquet under OUT, plus the DuckDB views over them.

Every input row ends up in exactly one place: its valid table (with `source_row`) or
`quarantine` (with file, row, field and reason). A missing or unreadable file, or a wrong
header, stops the run with an `InputError` naming the file.

    popray ingest --input data/demo --out out
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from popray.errors import InputError, StorageError
from popray.io import storage, store
from popray.io.contract import (
    INPUTS,
    REQUIRED_INPUTS,
)
from popray.io.storage import Location, sha256_bytes
from popray.io.tables import SCHEMAS
from popray.records import QuarantineEntry, quarantine_table

log = logging.getLogger(__name__)
FORMATS = (".csv", ".jsonl", ".parquet")


@dataclass
class Quarantine:
    """Rows that could not be used, in the `quarantine` table's shape."""

    rows: list[QuarantineEntry] = field(default_factory=list)

    def add(self, source: str, row: int | None, reason: str, **extra: Any) -> None:
        self.rows.append(QuarantineEntry("ingest", source, row, reason, **extra))

    def table(self) -> pa.Table:
        return quarantine_table(self.rows)


@dataclass
class IngestResult:
    tables: dict[str, pa.Table]
    input_rows: dict[str, int]


def find_input(export: Location, name: str) -> str | None:
    """The one file (its name) holding input `name` (`.csv`, `.jsonl` or `.parquet`), if any."""
    names = [f"{name}{ext}" for ext in FORMATS]
    infos = export.infos(names)
    found = [n for n, i in zip(names, infos, strict=True) if i.type != pafs.FileType.NotFound]
    if len(found) > 1:
        raise InputError(f"{export.display()}: both {found[0]} and {found[1]} exist; keep one")
    return found[0] if found else None


def _check_header(path: str, columns: list[str], model: type[BaseModel]) -> None:
    fields = model.model_fields
    required = [n for n, f in fields.items() if f.is_required()]
    missing = [c for c in required if c not in columns]
    unknown = [c for c in columns if c not in fields]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if missing or unknown or dupes:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if unknown:
            parts.append(f"unknown column(s) {unknown}")
        if dupes:
            parts.append(f"repeated column(s) {dupes}")
        raise InputError(
            f"{path}: wrong header: {'; '.join(parts)}. Expected columns: {list(fields)}"
        )


def read_rows(
    export: Location, name: str, model: type[BaseModel]
) -> Iterator[tuple[int, dict | str]]:
    """Yield (1-based data row number, raw record) from a CSV, JSON Lines or Parquet file.

    A record that cannot even be parsed is yielded as a string saying why.
    """
    shown = export.display(name)
    try:
        data = export.read_bytes(name)  # metadata files: small next to the media
        if name.endswith(".csv"):
            yield from _read_csv(shown, data, model)
        elif name.endswith(".jsonl"):
            yield from _read_jsonl(data)
        else:
            yield from _read_parquet(shown, data, model)
    except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException) as exc:
        raise InputError(f"{shown}: cannot be read: {exc}") from exc


def _read_csv(shown: str, data: bytes, model: type[BaseModel]) -> Iterator[tuple[int, dict | str]]:
    with io.TextIOWrapper(io.BytesIO(data), newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{shown}: empty file (no header)")
        header = [h.strip() for h in header]
        _check_header(shown, header, model)
        for n, values in enumerate(reader, start=1):
            if not values:  # a blank line is not a row
                continue
            if len(values) != len(header):
                yield n, f"has {len(values)} fields, the header has {len(header)}"
                continue
            # CSV has no null: an empty cell is a missing value.
            yield (
                n,
                {k: (v if v.strip() != "" else None) for k, v in zip(header, values, strict=True)},
            )


def _read_jsonl(data: bytes) -> Iterator[tuple[int, dict | str]]:
    n = 0
    for line in data.decode("utf-8").splitlines():
        if not line.strip():
            continue
        n += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, f"not valid JSON: {exc.msg}"
            continue
        yield n, record if isinstance(record, dict) else "not a JSON object"


def _read_parquet(
    shown: str, data: bytes, model: type[BaseModel]
) -> Iterator[tuple[int, dict | str]]:
    table = pq.read_table(pa.BufferReader(data))
    _check_header(shown, table.column_names, model)
    yield from enumerate(table.to_pylist(), start=1)


def _describe_errors(exc: ValidationError) -> tuple[str | None, str | None, str]:
    """(first field, its value, a reason listing every error) for a quarantine entry."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field_name = str(first["loc"][0]) if first["loc"] else None
    value = first.get("input")
    value_s = None if isinstance(value, dict) else (None if value is None else str(value)[:200])
    reason = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg'].removeprefix('Value error, ')}"
        for e in errors
    )
    return field_name, value_s, reason


PARALLEL_ROWS = 50_000  # a file with at least this many rows is validated on Ray tasks
CHUNK_ROWS = 20_000  # rows per validation task
TABLE_OF = {"posts": "posts", "media": "media", "followers": "followers", "exclude": "excluded"}


def validate_rows(
    rows: list[tuple[int, dict | str]], source: str, model: type[BaseModel], quarantine: Quarantine
) -> list[tuple[int, Any]]:
    """The valid (row number, model) pairs of `rows`; the others go to quarantine with
    every error, the first one's field and value."""
    valid: list[tuple[int, Any]] = []
    for n, record in rows:
        if isinstance(record, str):
            quarantine.add(source, n, record)
            continue
        try:
            valid.append((n, model.model_validate(record)))
        except ValidationError as exc:
            field_name, value, reason = _describe_errors(exc)
            ids = {k: record.get(k) for k in ("profile_id", "post_id", "media_id")}
            ids = {k: str(v) for k, v in ids.items() if v is not None}
            quarantine.add(
                source,
                n,
                reason,
                field=field_name,
                value=value,
                record=json.dumps(record, default=str)[:2000],
                **ids,
            )
    return valid


def _validate_chunk(
    rows: list[tuple[int, dict | str]], source: str, name: str, model: type[BaseModel]
) -> tuple[pa.Table, list[QuarantineEntry]]:
    """Validate one chunk of input `name`: its valid rows as a table (with
    `source_row`), and its quarantine entries. Runs in the driver or as a Ray task."""
    quarantine = Quarantine()
    valid = validate_rows(rows, source, model, quarantine)
    dumped = [m.model_dump() | {"source_row": n} for n, m in valid]
    return _to_table(TABLE_OF[name], dumped), quarantine.rows


def validate_file(
    export: Location,
    source: str,
    name: str,
    quarantine: Quarantine,
    parallel_rows: int = PARALLEL_ROWS,
) -> tuple[pa.Table, int]:
    """Validate every row of one input file (`source` inside `export`, input `name`):
    its valid rows as a table of `TABLE_OF[name]`'s schema (columns other stages add
    left empty), and the number of rows read; bad rows go to `quarantine`, in row order.

    The file is parsed here, a chunk at a time; from `parallel_rows` rows on, each
    chunk of `CHUNK_ROWS` is validated by a Ray task (at most two per cluster CPU in
    flight), so the driver holds only the chunks in flight and the Arrow results."""
    model = INPUTS[name]
    rows = read_rows(export, source, model)
    first = list(itertools.islice(rows, parallel_rows))
    if len(first) < parallel_rows:
        table, entries = _validate_chunk(first, source, name, model)
        quarantine.rows += entries
        return table, len(first)
    import ray

    from popray.cluster import ensure_ray

    ensure_ray()
    task = ray.remote(num_cpus=1, max_retries=3)(_validate_chunk)
    limit = max(1, int(2 * ray.cluster_resources().get("CPU", 1)))
    results: list[ray.ObjectRef] = []
    count = 0
    for chunk in _chunks(itertools.chain(first, rows), CHUNK_ROWS):
        count += len(chunk)
        results.append(task.remote(chunk, source, name, model))
        if len(results) >= limit:
            ray.wait(results, num_returns=len(results) - limit + 1, fetch_local=False)
    tables = []
    for table, entries in ray.get(results):
        tables.append(table)
        quarantine.rows += entries
    return pa.concat_tables(tables), count


def _chunks(items, size: int):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _file_problems(export: Location, rels: list[str]) -> dict[str, str]:
    """rel -> why it cannot be used, for the media paths that cannot: missing, not a
    regular file, or (where the filesystem has links) leaving the export through one.
    One batched file-info call: on object storage no object is read."""
    problems = {}
    if isinstance(export.fs, pafs.LocalFileSystem):
        root = Path(export.path()).resolve()
        for rel in rels:
            target = (root / rel).resolve()
            if not target.is_relative_to(root):
                problems[rel] = "leaves the input folder (through a symbolic link)"
    for rel, info in zip(rels, export.infos(rels), strict=True):
        if rel in problems:
            continue
        if info.type == pafs.FileType.NotFound:
            problems[rel] = "file not found"
        elif info.type != pafs.FileType.File:
            problems[rel] = "not a regular file"
    return problems


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


# The cross-checks, in DuckDB over the validated tables: which rows fail and why (a few,
# whose reasons are then written in Python), and which rows are kept, in output order.
FIRST_WINS = """
SELECT source_row, first_value(source_row) OVER w AS first, {ids}
FROM {table}
WINDOW w AS (PARTITION BY {key} ORDER BY source_row)
QUALIFY row_number() OVER w > 1
ORDER BY source_row"""
KEEP_FIRST = """
CREATE OR REPLACE TEMP TABLE {out} AS SELECT * FROM {table}
QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY source_row) = 1"""
MEDIA_CHECKS = """
CREATE OR REPLACE TEMP TABLE media_checked AS
WITH joined AS (
    SELECT m.source_row, m.media_id, m.post_id, m.position, m.path, m.thumbnail_path,
           m.media_type, p.profile_id AS post_profile, p.post_type,
           p.post_id IS NULL AS orphan, pp.why AS path_why, tp.why AS thumb_why
    FROM media_kept m
    LEFT JOIN posts_kept p ON p.post_id = m.post_id
    LEFT JOIN problems pp ON pp.rel = m.path
    LEFT JOIN problems tp ON tp.rel = m.thumbnail_path
), first_checks AS (
    SELECT *, CASE
        WHEN orphan THEN 'orphan'
        WHEN path_why IS NOT NULL THEN 'path'
        WHEN thumb_why IS NOT NULL THEN 'thumbnail'
        WHEN post_type <> 'carousel' AND media_type <> post_type THEN 'type'
    END AS problem
    FROM joined
)
SELECT *,
    CASE WHEN problem IS NULL AND post_type <> 'carousel'
         THEN first_value(source_row) OVER single END AS single_row,
    CASE WHEN problem IS NULL AND post_type <> 'carousel'
         THEN row_number() OVER single END AS single_n
FROM first_checks
WINDOW single AS (
    PARTITION BY post_id, problem IS NULL AND post_type <> 'carousel' ORDER BY position)"""


def _duplicates(
    con, table: str, key: str, ids: tuple[str, ...], source: str, what: str, q: Quarantine
) -> None:
    """Quarantine every later row of a `key` that `table` holds twice (first row wins)."""
    sql = FIRST_WINS.format(table=table, key=key, ids=", ".join(ids))
    for row in con.sql(sql).fetchall():
        n, first, *values = row
        q.add(
            source,
            n,
            f"duplicate {what} (first seen at row {first})",
            **dict(zip(ids, values, strict=True)),
        )


def _keep_first(con, table: str, key: str, out: str) -> None:
    con.sql(KEEP_FIRST.format(table=table, key=key, out=out))


def _source_rows(con, sql: str) -> list[int]:
    return [r[0] for r in con.sql(sql).fetchall()]


def _in_order(table: pa.Table, rows: list[int]) -> pa.Table:
    """The rows of `table` whose source_row is in `rows`, in that order."""
    index = pc.index_in(pa.array(rows, pa.int64()), table["source_row"].cast(pa.int64()))
    return table.take(index)


def _check_media(con, export: Location, source: str, q: Quarantine) -> list[tuple[int, str]]:
    """Cross-check the media rows against the kept posts and the files in the export;
    quarantine the failures in (post_id, position) order. The kept (source_row,
    profile_id) pairs, in that order."""
    _duplicates(con, "media_v", "media_id", ("media_id",), source, "media_id", q)
    _keep_first(con, "media_v", "media_id", "media_first")
    key, ids = "post_id, position", ("media_id", "post_id")
    _duplicates(con, "media_first", key, ids, source, "(post_id, position)", q)
    _keep_first(con, "media_first", key, "media_kept")
    rels = sorted(
        r[0]
        for r in con.sql(
            "SELECT path FROM media_kept UNION SELECT thumbnail_path FROM media_kept "
            "WHERE thumbnail_path IS NOT NULL"
        ).fetchall()
    )
    problems = _file_problems(export, rels)
    found = pa.table(
        {"rel": list(problems), "why": list(problems.values())},
        schema=pa.schema([("rel", pa.string()), ("why", pa.string())]),
    )
    con.register("problems", found)
    con.sql(MEDIA_CHECKS)
    failed = con.sql(
        "SELECT source_row, media_id, post_id, path, thumbnail_path, media_type, post_profile, "
        "post_type, problem, path_why, thumb_why, single_row FROM media_checked "
        "WHERE problem IS NOT NULL OR single_n > 1 ORDER BY post_id, position"
    ).fetchall()
    for n, media_id, post_id, path, thumb, media_type, profile, post_type, problem, *why in failed:
        path_why, thumb_why, single_row = why
        ids = {"media_id": media_id, "post_id": post_id, "path": path}
        if problem == "orphan":
            reason = "post_id not among the valid posts"
            q.add(source, n, reason, field="post_id", value=post_id, **ids)
            continue
        ids["profile_id"] = profile
        if problem == "path":
            q.add(source, n, f"path: {path_why}", field="path", value=path, **ids)
        elif problem == "thumbnail":
            reason = f"thumbnail_path: {thumb_why}"
            q.add(source, n, reason, field="thumbnail_path", value=thumb, **ids)
        elif problem == "type":
            reason = f"media_type {media_type} inside a single {post_type} post"
            q.add(source, n, reason, field="media_type", value=media_type, **ids)
        else:
            reason = f"a single {post_type} post has one media item; row {single_row} is it"
            q.add(source, n, reason, field="post_id", **ids)
    return con.sql(
        "SELECT source_row, post_profile FROM media_checked "
        "WHERE problem IS NULL AND coalesce(single_n, 1) = 1 ORDER BY post_id, position"
    ).fetchall()


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
            valid[name], counts[name] = SCHEMAS[TABLE_OF[name]].empty_table(), 0
            continue
        sources[name] = file
        valid[name], counts[name] = validate_file(export, file, name, quarantine)
    kept = _cross_checks(export, valid, sources, counts, quarantine)
    tables = {
        "posts": _in_order(valid["posts"], kept.posts),
        "media": _media_table(export, valid["media"], kept.media, hash_workers),
        "followers": _in_order(valid["followers"], kept.followers),
        "excluded": _in_order(valid["exclude"], kept.excluded),
        "quarantine": quarantine.table(),
    }
    return IngestResult(tables=tables, input_rows={sources.get(k, k): v for k, v in counts.items()})


@dataclass
class _Kept:
    """The source rows each input keeps after the checks across rows and files (media:
    (row, its post's profile))."""

    posts: list[int]
    media: list[tuple[int, str]]
    followers: list[int]
    excluded: list[int]


def _cross_checks(
    export: Location,
    valid: dict[str, pa.Table],
    sources: dict[str, str],
    counts: dict[str, int],
    quarantine: Quarantine,
) -> _Kept:
    """The checks across rows and files, in DuckDB: duplicates (the first row wins),
    posts of a profile without follower history, media against posts and files,
    exclusions of unknown media; every row they reject goes to `quarantine`."""
    import duckdb

    con = duckdb.connect()
    try:
        for name, table in valid.items():
            con.register(f"{name}_v", table)
        key = 'profile_id, "at"'
        source = sources["followers"]
        _duplicates(
            con, "followers_v", key, ("profile_id",), source, "(profile_id, at)", quarantine
        )
        _keep_first(con, "followers_v", key, "followers_kept")
        source = sources["posts"]
        ids = ("profile_id", "post_id")
        _duplicates(con, "posts_v", "post_id", ids, source, "post_id", quarantine)
        _keep_first(con, "posts_v", "post_id", "posts_first")
        orphans = con.sql(
            "SELECT source_row, profile_id, post_id FROM posts_first WHERE profile_id NOT IN "
            "(SELECT profile_id FROM followers_kept) ORDER BY source_row"
        ).fetchall()
        for n, profile, post in orphans:
            reason = f"no follower history for profile {profile!r}"
            kw = {"field": "profile_id", "value": profile, "profile_id": profile, "post_id": post}
            quarantine.add(source, n, reason, **kw)
        con.sql(
            "CREATE TEMP TABLE posts_kept AS SELECT * FROM posts_first WHERE profile_id IN "
            "(SELECT profile_id FROM followers_kept)"
        )
        media_rows = _check_media(con, export, sources["media"], quarantine)
        excluded_rows: list[int] = []
        if counts["exclude"]:
            kept_media = _in_order(valid["media"], [n for n, _ in media_rows])
            excluded_rows = _check_exclusions(con, kept_media, sources["exclude"], quarantine)
        return _Kept(
            _source_rows(con, "SELECT source_row FROM posts_kept ORDER BY source_row"),
            media_rows,
            _source_rows(con, "SELECT source_row FROM followers_kept ORDER BY source_row"),
            excluded_rows,
        )
    finally:
        con.close()


def _check_exclusions(con, kept_media: pa.Table, source: str, quarantine: Quarantine) -> list[int]:
    """The exclusion rows kept: the first per media_id, naming a valid media item."""
    _duplicates(con, "exclude_v", "media_id", ("media_id",), source, "media_id", quarantine)
    _keep_first(con, "exclude_v", "media_id", "exclude_kept")
    con.register("media_out", kept_media.select(["media_id"]))
    unknown = con.sql(
        "SELECT source_row, media_id FROM exclude_kept WHERE media_id NOT IN "
        "(SELECT media_id FROM media_out) ORDER BY source_row"
    ).fetchall()
    for n, media_id in unknown:
        reason = "media_id not among the valid media"
        quarantine.add(source, n, reason, field="media_id", value=media_id, media_id=media_id)
    return _source_rows(
        con,
        "SELECT source_row FROM exclude_kept WHERE media_id IN "
        "(SELECT media_id FROM media_out) ORDER BY source_row",
    )


def _media_table(
    export: Location, valid: pa.Table, media_rows: list[tuple[int, str]], hash_workers: int
) -> pa.Table:
    """The media kept, with their post's profile, their bytes' sha256 (hashed here, or
    by Ray tasks where the files are on object storage) and their size."""
    media = _in_order(valid, [n for n, _ in media_rows])
    rels = media["path"].to_pylist()
    if isinstance(export.fs, pafs.LocalFileSystem):
        hashes = _hash_local(export, rels, hash_workers)
    else:
        hashes = _hash_on_cluster(export, rels)
    sizes = [info.size for info in export.infos(rels)]
    schema = SCHEMAS["media"]
    for column, values in (
        ("profile_id", [profile for _, profile in media_rows]),
        ("sha256", hashes),
        ("size_bytes", sizes),
    ):
        i = schema.get_field_index(column)
        media = media.set_column(i, schema.field(i), pa.array(values, schema.field(i).type))
    return media


def _to_table(name: str, rows: list[dict]) -> pa.Table:
    schema = SCHEMAS[name]
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


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
    # Later stages (embed) find the media files through this record.
    (out / "ingest.json").write_text(
        json.dumps({"input_dir": export.uri, "input_rows": result.input_rows}, indent=2)
    )
    store.refresh_views(out)
    log.info("ingested %s: %s", export.display(), {k: v.num_rows for k, v in result.tables.items()})
    return result
