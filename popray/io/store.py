"""Output storage: Parquet tables under `OUT/tables/<name>/` and the DuckDB views over them.

`OUT/popray.duckdb` holds one view per table, `read_parquet('tables/<name>/*.parquet')`
(a table may have several part files: embeddings one per backbone, quarantine one per
stage),
with a path relative to OUT. DuckDB resolves relative paths against its
`file_search_path` (default: the current directory), so the database keeps working when
OUT is moved or copied: open it from inside OUT, or `SET file_search_path = '<OUT>'`
first; `popray sql` and `connect()` do that for you.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from popray.errors import LockedError, MissingError, QueryError
from popray.io.storage import Location
from popray.io.tables import FIXED_SCHEMA, NAMES, table_schema

DB_NAME = "popray.duckdb"
LOCK_NAME = ".popray.lock"
PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# At most this much data per Parquet row group: a reader holds one row group's column
# while it streams the file (embedding rows are 5-80 KB: one group per table would make
# every streaming reader hold the whole table).
ROW_GROUP_BYTES = 64 << 20


def table_dir(out: Path, name: str) -> Path:
    return out / "tables" / name


def write_table(
    out: Path, name: str, table: pa.Table, part: str = "data", schema: pa.Schema | None = None
) -> Path:
    """Write one part of an output table as `tables/<name>/<part>.parquet`, atomically.

    Most tables have one part (`data`); embeddings have one per backbone and quarantine
    one per stage. The table is cast to its declared schema (a drifting column type
    fails here, loudly), written beside the target, then renamed over it.
    """
    return write_batches(out, name, [table], part, schema)


def write_batches(
    out: Path,
    name: str,
    batches: Iterable[pa.Table | pa.RecordBatch],
    part: str = "data",
    schema: pa.Schema | None = None,
) -> Path:
    """`write_table` for a stream of batches (a table too large for memory): each is cast
    to the schema and appended; the part replaces the old one when the stream ends."""
    schema = schema or (table_schema(name) if name in NAMES else None)
    return _replace(out, name, part, lambda tmp: write_stream(tmp, schema, batches))


def write_stream(
    sink: str | Path | pa.NativeFile,
    schema: pa.Schema,
    batches: Iterable[pa.Table | pa.RecordBatch],
) -> None:
    """Write `batches` to `sink` as popray writes every table's Parquet file: each cast
    to `schema`, zstd, row groups of at most ROW_GROUP_BYTES (a reader fetches only the
    groups it needs)."""
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for batch in batches:
            if isinstance(batch, pa.RecordBatch):
                batch = pa.Table.from_batches([batch])
            batch = batch.select(schema.names).cast(schema)
            writer.write_table(batch, row_group_size=_group_rows(batch))


def write_part_bytes(out: Path, name: str, part: str, data: bytes | memoryview) -> Path:
    """Put a part's Parquet file that was built elsewhere (`write_stream` in a Ray task,
    into memory) in place of the old part, atomically."""
    return _replace(out, name, part, lambda tmp: Path(tmp).write_bytes(memoryview(data)))


def _replace(out: Path, name: str, part: str, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` with a temporary file beside the part, then move it over the
    part (readers see the old file or the new one, never half of one)."""
    if name not in NAMES:
        raise ValueError(f"unknown output table {name!r}; known: {sorted(NAMES)}")
    if not PART.fullmatch(part):
        raise ValueError(f"bad table part name {part!r}")
    folder = table_dir(out, name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{part}.parquet"
    tmp = folder / f".{part}-{uuid.uuid4().hex}.parquet.tmp"
    try:
        write(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return target


def has_table(out: Path, name: str, part: str | None = None) -> bool:
    folder = table_dir(out, name)
    return (folder / f"{part}.parquet").exists() if part else any(folder.glob("*.parquet"))


def require(out: Path, stages: dict[str, str]) -> None:
    """Raise MissingError naming the first table of `stages` (table -> the stage that
    writes it) that OUT lacks: a cheap check before a stage starts Ray."""
    for name, stage in stages.items():
        if not has_table(out, name):
            raise MissingError(f"{out}: table {name!r} missing; run `popray {stage}`")


def read_table(out: Path, name: str, part: str | None = None) -> pa.Table:
    """Read an output table (all its parts, or one); a clear error when the stage that
    writes it has not run."""
    folder = table_dir(out, name)
    files = [folder / f"{part}.parquet"] if part else sorted(folder.glob("*.parquet"))
    if not files or not files[0].exists():
        raise MissingError(
            f"{folder / (part or '*')}.parquet does not exist: run the stage that writes "
            f"table {name!r} first"
        )
    tables = [pq.read_table(f) for f in files]
    if name in FIXED_SCHEMA:
        tables = [t.cast(table_schema(name)) for t in tables]
    return pa.concat_tables(tables)


def refresh_views(out: Path) -> Path:
    """(Re)create `OUT/popray.duckdb` with a view per table that exists under OUT."""
    db = out / DB_NAME
    con = duckdb.connect(str(db))
    try:
        con.execute("SET file_search_path = $p", {"p": str(out.resolve())})
        for name in NAMES:  # identifiers only from this allow-list
            ddl = "views.create" if has_table(out, name) else "views.drop"
            con.execute(sql_text(ddl).format(name=name))
    finally:
        con.close()
    return db


def _group_rows(table: pa.Table) -> int:
    """Rows per row group that keep a group of `table`'s rows under ROW_GROUP_BYTES."""
    row_bytes = table.nbytes // max(1, table.num_rows)
    return max(1, min(1 << 20, ROW_GROUP_BYTES // max(1, row_bytes)))


def connect(out: Path) -> duckdb.DuckDBPyConnection:
    """Open `OUT/popray.duckdb` read-only with relative paths resolved against OUT."""
    db = out / DB_NAME
    if not db.exists():
        raise MissingError(f"{db} does not exist: run `popray ingest --out {out}` first")
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET file_search_path = $p", {"p": str(out.resolve())})
    return con


def query(out: Path, sql: str, **params) -> pa.Table:
    """Run one SQL statement (with its $named `params`) against the views of OUT and
    return the result."""
    con = connect(out)
    try:
        return con.sql(sql, params=params or None).to_arrow_table()
    finally:
        con.close()


def show(con: duckdb.DuckDBPyConnection, sql: str, max_rows: int = 1_000) -> None:
    """Run one SQL statement and print its result as a table (`popray sql`)."""
    try:
        rel = con.sql(sql)
        if rel is not None:
            rel.show(max_rows=max_rows, max_width=200)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc


@contextmanager
def exclusive(out: Path, what: str) -> Iterator[None]:
    """Hold OUT's writer lock while the body runs; a second writer refuses at once.

    An advisory `flock` on `OUT/.popray.lock`: the kernel releases it when the holder
    exits, however it ends (even SIGKILL), so a crashed run never leaves a stale lock.
    (On network file systems without flock support use one OUT per host.)"""
    out.mkdir(parents=True, exist_ok=True)
    handle = (out / LOCK_NAME).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown holder"
        handle.close()
        raise LockedError(
            f"{out} is being written by another popray run ({holder}); wait for it to "
            "finish, or write to another --out"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
        handle.write(f"`popray {what}`, pid {os.getpid()} on {socket.gethostname()}, since {stamp}")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def query_tables(name: str, tables: dict[str, pa.Table], **params) -> pa.Table:
    """The rows of the named query `name` (see `sql_text`) over `tables`, each registered
    under its key, on a DuckDB of its own."""
    con = duckdb.connect()
    try:
        for table_name, table in tables.items():
            con.register(table_name, table)
        return con.sql(sql_text(name), params=params or None).to_arrow_table()
    finally:
        con.close()


def view_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The views a connection from `connect` has: the tables some stage has written."""
    return {r[0] for r in con.sql(sql_text("views.existing")).fetchall()}


def sql_text(name: str) -> str:
    """A named query: the file `popray/io/sql/<name>.sql`, or for "<file>.<query>" the
    query under the line `-- name: <query>` in `<file>.sql` (package data: the same
    installed and in a `ray job submit --working-dir .` upload)."""
    file, _, query = name.partition(".")
    if not query:
        return _sql_file(file)
    try:
        return sql_queries(file)[query]
    except KeyError:
        raise KeyError(f"{SQL_DIR / file}.sql has no query named {query!r}") from None


def sql_queries(file: str) -> dict[str, str]:
    """Every named query of `popray/io/sql/<file>.sql`, in file order: each starts at a line
    `-- name: <query>`; the comment lines right below it describe it."""
    named: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in _sql_file(file).splitlines():
        if line.startswith(NAME_MARK):
            lines = named.setdefault(line[len(NAME_MARK) :].strip(), [])
        else:
            lines.append(line)
    return {name: "\n".join(body).strip() for name, body in named.items()}


@functools.cache
def _sql_file(file: str) -> str:
    return (SQL_DIR / f"{file}.sql").read_text(encoding="utf-8")


SQL_DIR = Path(__file__).resolve().parent / "sql"
NAME_MARK = "-- name:"


def input_dir_of(out: Path) -> Location:
    """The export `out` was ingested from (recorded in OUT/ingest.json)."""
    from popray.records import IngestRecord

    return Location(IngestRecord.read(out).input_dir)
