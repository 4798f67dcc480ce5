"""Ingest: validate a profile export and write `posts`, `media`, `followers`, `excluded`
and `quarantine` as Parquet under OUT, plus the DuckDB views over them.

Every input row ends up in exactly one place: its valid table (with `source_row`) or
`quarantine` (with file, row, field and reason). A missing or unreadable file, or a wrong
header, stops the run with an `InputError` naming the file.

    popray ingest --input data/demo --out out
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from popray import store
from popray.contract import (
    INPUTS,
    REQUIRED_INPUTS,
    MediaRow,
    PostRow,
)
from popray.storage import Location, StorageError, sha256_bytes
from popray.tables import SCHEMAS

log = logging.getLogger(__name__)
FORMATS = (".csv", ".jsonl", ".parquet")


class InputError(ValueError):
    """The input folder cannot be read as a profile export; the message names the file."""


@dataclass
class Quarantine:
    """Rows that could not be used, in the `quarantine` table's shape."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, source: str, row: int | None, reason: str, **extra: Any) -> None:
        entry = dict.fromkeys(SCHEMAS["quarantine"].names)
        entry.update(stage="ingest", source=source, row=row, reason=reason, **extra)
        self.rows.append(entry)

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=SCHEMAS["quarantine"])


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


def validate_file(
    export: Location, name: str, model: type[BaseModel], quarantine: Quarantine
) -> tuple[list[tuple[int, Any]], int]:
    """Validate every row of one input file (`name` inside `export`); bad rows go to
    quarantine. Returns the valid (row number, model) pairs and the number of rows read.
    """
    valid: list[tuple[int, Any]] = []
    n_rows = 0
    for n, record in read_rows(export, name, model):
        n_rows += 1
        if isinstance(record, str):
            quarantine.add(name, n, record)
            continue
        try:
            valid.append((n, model.model_validate(record)))
        except ValidationError as exc:
            field_name, value, reason = _describe_errors(exc)
            ids = {k: record.get(k) for k in ("profile_id", "post_id", "media_id")}
            ids = {k: str(v) for k, v in ids.items() if v is not None}
            quarantine.add(
                name,
                n,
                reason,
                field=field_name,
                value=value,
                record=json.dumps(record, default=str)[:2000],
                **ids,
            )
    return valid, n_rows


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        return list(pool.map(lambda r: sha256_file(Path(export.path(r))), rels))


def _hash_chunk(export: Location, rels: list[str]) -> list[str]:
    """Ray task: sha256 of each object, read on the node the task runs on."""
    return [sha256_bytes(export.read_bytes(r)) for r in rels]


def _hash_on_cluster(export: Location, rels: list[str], chunk: int = 32) -> list[str]:
    """sha256 of objects on storage, computed by Ray tasks where the bytes are read
    (the driver downloads none of them)."""
    import ray

    from popray.embed import ensure_ray

    ensure_ray()
    task = ray.remote(num_cpus=0.5, max_retries=3)(_hash_chunk)
    refs = [task.remote(export, rels[i : i + chunk]) for i in range(0, len(rels), chunk)]
    return [h for part in ray.get(refs) for h in part]


def _first_wins(
    rows: list[tuple[int, Any]],
    key,
    source: str,
    what: str,
    quarantine: Quarantine,
    id_fields: tuple[str, ...] = (),
) -> list[tuple[int, Any]]:
    """Keep the first row of each key; later rows are quarantined as duplicates."""
    seen: dict[Any, int] = {}
    kept = []
    for n, row in rows:
        k = key(row)
        if k in seen:
            ids = {name: getattr(row, name) for name in id_fields}
            quarantine.add(source, n, f"duplicate {what} (first seen at row {seen[k]})", **ids)
            continue
        seen[k] = n
        kept.append((n, row))
    return kept


def _check_media(
    export: Location,
    rows: list[tuple[int, MediaRow]],
    posts: dict[str, PostRow],
    source: str,
    quarantine: Quarantine,
) -> list[tuple[int, MediaRow]]:
    """Cross-check media rows against posts and the files in the export."""
    rows = _first_wins(rows, lambda m: m.media_id, source, "media_id", quarantine, ("media_id",))
    rows = _first_wins(
        rows,
        lambda m: (m.post_id, m.position),
        source,
        "(post_id, position)",
        quarantine,
        ("media_id", "post_id"),
    )
    kept: list[tuple[int, MediaRow]] = []
    singles: dict[str, int] = {}
    rels = sorted({p for _, m in rows for p in (m.path, m.thumbnail_path) if p is not None})
    problems = _file_problems(export, rels)
    for n, m in sorted(rows, key=lambda r: (r[1].post_id, r[1].position)):
        ids = {"media_id": m.media_id, "post_id": m.post_id, "path": m.path}
        post = posts.get(m.post_id)
        if post is None:
            quarantine.add(
                source,
                n,
                "post_id not among the valid posts",
                field="post_id",
                value=m.post_id,
                **ids,
            )
            continue
        ids["profile_id"] = post.profile_id
        problem = None
        if why := problems.get(m.path):
            problem = ("path", m.path, f"path: {why}")
        elif m.thumbnail_path is not None and (twhy := problems.get(m.thumbnail_path)):
            problem = ("thumbnail_path", m.thumbnail_path, f"thumbnail_path: {twhy}")
        if problem:
            quarantine.add(source, n, problem[2], field=problem[0], value=problem[1], **ids)
            continue
        if post.post_type != "carousel":
            if m.media_type != post.post_type:
                quarantine.add(
                    source,
                    n,
                    f"media_type {m.media_type} inside a single {post.post_type} post",
                    field="media_type",
                    value=m.media_type.value,
                    **ids,
                )
                continue
            if m.post_id in singles:
                quarantine.add(
                    source,
                    n,
                    f"a single {post.post_type} post has one media item; "
                    f"row {singles[m.post_id]} is it",
                    field="post_id",
                    **ids,
                )
                continue
        if post.post_type != "carousel":
            singles[m.post_id] = n
        kept.append((n, m))
    return kept


def ingest(source: Location | Path | str, hash_workers: int = 8) -> IngestResult:
    """Validate a profile export (a local folder or a storage URI) into the five ingest
    tables (nothing is written)."""
    try:
        export = source if isinstance(source, Location) else Location.parse(source)
        export.check_folder()
    except StorageError as exc:
        raise InputError(str(exc)) from exc
    quarantine = Quarantine()
    valid: dict[str, list[tuple[int, Any]]] = {}
    sources: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, model in INPUTS.items():
        file = find_input(export, name)
        if file is None:
            if name in REQUIRED_INPUTS:
                raise InputError(f"{export.display()}: missing {name}.csv (or .jsonl / .parquet)")
            valid[name], counts[name] = [], 0
            continue
        sources[name] = file
        valid[name], counts[name] = validate_file(export, file, model, quarantine)

    followers = _first_wins(
        valid["followers"],
        lambda f: (f.profile_id, f.at),
        sources["followers"],
        "(profile_id, at)",
        quarantine,
        ("profile_id",),
    )
    with_history = {f.profile_id for _, f in followers}
    posts = _first_wins(
        valid["posts"],
        lambda p: p.post_id,
        sources["posts"],
        "post_id",
        quarantine,
        ("profile_id", "post_id"),
    )
    kept_posts = []
    for n, p in posts:
        if p.profile_id not in with_history:
            quarantine.add(
                sources["posts"],
                n,
                f"no follower history for profile {p.profile_id!r}",
                field="profile_id",
                value=p.profile_id,
                profile_id=p.profile_id,
                post_id=p.post_id,
            )
        else:
            kept_posts.append((n, p))
    post_by_id = {p.post_id: p for _, p in kept_posts}
    media = _check_media(export, valid["media"], post_by_id, sources["media"], quarantine)
    media_ids = {m.media_id for _, m in media}

    excluded = []
    if valid["exclude"]:
        rows = _first_wins(
            valid["exclude"],
            lambda e: e.media_id,
            sources["exclude"],
            "media_id",
            quarantine,
            ("media_id",),
        )
        for n, e in rows:
            if e.media_id in media_ids:
                excluded.append((n, e))
            else:
                quarantine.add(
                    sources["exclude"],
                    n,
                    "media_id not among the valid media",
                    field="media_id",
                    value=e.media_id,
                    media_id=e.media_id,
                )

    rels = [m.path for _, m in media]
    if isinstance(export.fs, pafs.LocalFileSystem):
        hashes = _hash_local(export, rels, hash_workers)
    else:
        hashes = _hash_on_cluster(export, rels)
    sizes = [info.size for info in export.infos(rels)]

    tables = {
        "posts": _to_table("posts", [p.model_dump() | {"source_row": n} for n, p in kept_posts]),
        "media": _to_table(
            "media",
            [
                m.model_dump()
                | {
                    "profile_id": post_by_id[m.post_id].profile_id,
                    "sha256": h,
                    "size_bytes": s,
                    "source_row": n,
                }
                for (n, m), h, s in zip(media, hashes, sizes, strict=True)
            ],
        ),
        "followers": _to_table(
            "followers", [f.model_dump() | {"source_row": n} for n, f in followers]
        ),
        "excluded": _to_table(
            "excluded", [e.model_dump() | {"source_row": n} for n, e in excluded]
        ),
        "quarantine": quarantine.table(),
    }
    return IngestResult(tables=tables, input_rows={sources.get(k, k): v for k, v in counts.items()})


def _to_table(name: str, rows: list[dict]) -> pa.Table:
    schema = SCHEMAS[name]
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


def input_dir_of(out: Path) -> Location:
    """The export `out` was ingested from (recorded in OUT/ingest.json)."""
    record = out / "ingest.json"
    if not record.exists():
        raise FileNotFoundError(f"{record} does not exist: run `popray ingest --out {out}` first")
    return Location(json.loads(record.read_text())["input_dir"])


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
