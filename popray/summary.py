"""A short, human-readable summary of a run, read back from the DuckDB views."""

from __future__ import annotations

from pathlib import Path

import duckdb

from popray.errors import MissingError
from popray.io import store

SUMMARY_QUERIES = {
    "inputs": """
        SELECT (SELECT count(*) FROM posts) AS posts,
               (SELECT count(*) FROM media WHERE media_type = 'image') AS images,
               (SELECT count(*) FROM media WHERE media_type = 'video') AS videos,
               (SELECT count(*) FROM followers) AS follower_points,
               (SELECT count(*) FROM excluded) AS excluded_media,
               (SELECT count(*) FROM quarantine) AS quarantined_rows
    """,
    "quarantine": """
        SELECT stage, source, "row", coalesce(media_id, '') AS media_id, field, reason
        FROM quarantine ORDER BY stage DESC, source, "row"
    """,
    "class_balance": """
        SELECT scheme, media_type, k, class, count(*) AS media,
               round(100.0 * count(*)
                   / sum(count(*)) OVER (PARTITION BY scheme, media_type, k), 1) AS pct,
               round(median(por), 4) AS median_por
        FROM labels GROUP BY scheme, media_type, k, class
        ORDER BY scheme, media_type, k, class NULLS FIRST
    """,
    "embeddings": """
        SELECT (SELECT count(DISTINCT media_id) FROM embeddings_image) AS images_embedded,
               (SELECT count(*) FROM embeddings_image) AS image_views,
               (SELECT count(*) FROM embeddings_video) AS videos_embedded,
               (SELECT count(*) FROM quarantine WHERE stage = 'embed') AS quarantined_at_embed
    """,
    "duplicates": """
        SELECT media_type, count(DISTINCT group_id) AS groups,
               count(*) FILTER (WHERE NOT kept) AS removed,
               round(max(distance), 3) AS max_distance
        FROM duplicates GROUP BY media_type ORDER BY media_type
    """,
    "followers": """
        SELECT count(DISTINCT post_id) FILTER (WHERE followers_extrapolated)
                   AS posts_extrapolated,
               count(DISTINCT post_id) AS posts_labelled
        FROM labels
    """,
}


# Sections that read a table some stage writes later than ingest (all others need `posts`).
NEEDS = {
    "class_balance": "labels",
    "followers": "labels",
    "embeddings": "embeddings_video",
    "duplicates": "duplicates",
}


def sections(con) -> list[tuple[str, str]]:
    """(title, SQL) of the summary sections whose tables exist on this connection."""
    views = {r[0] for r in con.sql("SELECT view_name FROM duckdb_views()").fetchall()}
    return [(t, q) for t, q in SUMMARY_QUERIES.items() if NEEDS.get(t, "posts") in views]


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
