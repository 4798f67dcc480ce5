"""A short, human-readable summary of a run, read back from the DuckDB views."""

from __future__ import annotations

from pathlib import Path

import duckdb

from popray.errors import MissingError
from popray.io import store

# Sections that read a table some stage writes later than ingest (all others need `posts`).
NEEDS = {
    "class_balance": "labels",
    "followers": "labels",
    "embeddings": "embeddings_video",
    "duplicates": "duplicates",
}


def sections(con) -> list[tuple[str, str]]:
    """(title, SQL) of the summary sections (popray/io/sql/summary.sql, in order) whose
    tables exist on this connection."""
    views = store.view_names(con)
    queries = store.sql_queries("summary")
    return [(t, q) for t, q in queries.items() if NEEDS.get(t, "posts") in views]


def summary_text(out: Path) -> str:
    """The run summary: inputs, quarantined rows and why, class balance per media type."""
    con = store.connect(out)
    try:
        parts = []
        for title, sql in sections(con):
            rel = con.sql(sql)
            body = str(rel) if rel.to_arrow_table().num_rows else "(none)\n"
            parts.append(f"== {title.replace('_', ' ')} ==\n{body}")
        return "\n".join(parts)
    except duckdb.Error as exc:
        raise MissingError(
            f"{exc}\n(outputs written by an older popray? run `popray run` again)"
        ) from exc
    finally:
        con.close()
