"""What the models are judged against, from the labels alone (SQL in popray/io/sql/): the
recent-PoR baseline (the class of the profile's previous item of the same media type)
and the ranking targets (each item's rank_score and the baseline's guess of it).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from popray.io import store
from popray.io.store import sql_text


def recent_baseline(out: Path, scheme: str) -> dict[tuple[int, str], int | None]:
    """(k, media_id) -> the class of the profile's previous item of the same media type
    (popray/io/sql/baseline_recent.sql)."""
    con = store.connect(out)
    try:
        rows = con.sql(sql_text("baseline_recent"), params={"scheme": scheme}).fetchall()
    finally:
        con.close()
    return {(k, media_id): cls for media_id, k, cls in rows}


def over_labels(labels: pa.Table, name: str, scheme: str) -> list[tuple]:
    """The rows of `popray/io/sql/<name>.sql` run over `labels` (as the view `labels`)."""
    con = duckdb.connect()
    try:
        con.register("labels", labels)
        return con.sql(sql_text(name), params={"scheme": scheme}).fetchall()
    finally:
        con.close()


def recent_classes(labels: pa.Table, scheme: str) -> dict[tuple[int, str], int | None]:
    """(k, media_id) -> the recent-PoR baseline's class over `labels`
    (popray/io/sql/baseline_recent.sql)."""
    rows = over_labels(labels, "baseline_recent", scheme)
    return {(k, media_id): cls for media_id, k, cls in rows}


def ranking_targets(
    labels: pa.Table, scheme: str
) -> dict[tuple[int, str], tuple[float | None, float | None]]:
    """(k, media_id) -> (the item's rank_score, the recent-PoR baseline's guess of it: the
    previous item's rank_score or None) over `labels` (popray/io/sql/ranking_targets.sql)."""
    rows = over_labels(labels, "ranking_targets", scheme)
    return {(k, media_id): (score, recent) for media_id, k, score, recent in rows}
