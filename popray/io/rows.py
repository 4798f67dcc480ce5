"""Reading and validating input files, row by row: each row becomes a validated model
(with its `source_row`) or a `Quarantine` entry naming its file, row, field and reason.
Long files are validated in chunks on Ray tasks (`validate_file`).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from popray.errors import InputError
from popray.io.contract import (
    INPUTS,
)
from popray.io.storage import Location
from popray.io.tables import table_schema
from popray.records import QuarantineEntry, quarantine_table

FORMATS = (".csv", ".jsonl", ".parquet")


@dataclass
class Quarantine:
    """Rows that could not be used, in the `quarantine` table's shape."""

    rows: list[QuarantineEntry] = field(default_factory=list)

    def add(self, source: str, row: int | None, reason: str, **extra: Any) -> None:
        self.rows.append(QuarantineEntry("ingest", source, row, reason, **extra))

    def table(self) -> pa.Table:
        return quarantine_table(self.rows)


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
    parallel_rows: int | None = None,
) -> tuple[pa.Table, int]:
    """Validate every row of one input file (`source` inside `export`, input `name`):
    its valid rows as a table of `TABLE_OF[name]`'s schema (columns other stages add
    left empty), and the number of rows read; bad rows go to `quarantine`, in row order.

    The file is parsed here, a chunk at a time; from `parallel_rows` rows on (default
    `PARALLEL_ROWS`), each chunk of `CHUNK_ROWS` is validated by a Ray task (at most two
    per cluster CPU in flight), so the driver holds only the chunks in flight and the
    Arrow results."""
    model = INPUTS[name]
    parallel_rows = PARALLEL_ROWS if parallel_rows is None else parallel_rows
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


def _to_table(name: str, rows: list[dict]) -> pa.Table:
    schema = table_schema(name)
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
