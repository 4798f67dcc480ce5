"""Output storage: Parquet tables under `OUT/tables/<name>/` and the DuckDB views over them.

`OUT/popray.duckdb` holds one view per table, `read_parquet('tables/<name>/*.parquet')`,
with a path relative to OUT. DuckDB resolves relative paths against its
`file_search_path` (default: the current directory), so the database keeps working when
OUT is moved or copied: open it from inside OUT, or `SET file_search_path = '<OUT>'`
first; `popray sql` and `connect()` do that for you.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from popray.tables import SCHEMAS

DB_NAME = "popray.duckdb"


def table_dir(out: Path, name: str) -> Path:
    return out / "tables" / name


def write_table(out: Path, name: str, table: pa.Table) -> Path:
    """Write one output table as `tables/<name>/data.parquet`, replacing it atomically.

    The table is cast to its declared schema (so a drifting column type fails here, loudly)
    and written next to the target first, then renamed over it.
    """
    if name not in SCHEMAS:
        raise ValueError(f"unknown output table {name!r}; known: {sorted(SCHEMAS)}")
    table = table.select(SCHEMAS[name].names).cast(SCHEMAS[name])
    folder = table_dir(out, name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "data.parquet"
    tmp = folder / f".data-{uuid.uuid4().hex}.parquet.tmp"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, target)
    return target


def read_table(out: Path, name: str) -> pa.Table:
    """Read one output table; a clear error when the stage that writes it has not run."""
    path = table_dir(out, name) / "data.parquet"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: run the stage that writes table {name!r} first"
        )
    return pq.read_table(path, schema=SCHEMAS[name])


def refresh_views(out: Path) -> Path:
    """(Re)create `OUT/popray.duckdb` with a view per table that exists under OUT."""
    db = out / DB_NAME
    con = duckdb.connect(str(db))
    try:
        con.execute("SET file_search_path = $p", {"p": str(out.resolve())})
        for name in SCHEMAS:  # identifiers only from this allow-list
            if (table_dir(out, name) / "data.parquet").exists():
                con.execute(
                    f'CREATE OR REPLACE VIEW "{name}" AS '
                    f"SELECT * FROM read_parquet('tables/{name}/*.parquet')"
                )
            else:
                con.execute(f'DROP VIEW IF EXISTS "{name}"')
    finally:
        con.close()
    return db


def connect(out: Path) -> duckdb.DuckDBPyConnection:
    """Open `OUT/popray.duckdb` read-only with relative paths resolved against OUT."""
    db = out / DB_NAME
    if not db.exists():
        raise FileNotFoundError(f"{db} does not exist: run `popray ingest --out {out}` first")
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET file_search_path = $p", {"p": str(out.resolve())})
    return con


def query(out: Path, sql: str) -> pa.Table:
    """Run one SQL statement against the views of OUT and return the result."""
    con = connect(out)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
