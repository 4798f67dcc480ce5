"""Ingest's checks across rows and files, in DuckDB over the validated input tables
(SQL: popray/io/sql/ingest.sql): duplicates (the first row wins), posts of a profile
without follower history, media against their posts and the files in the export,
exclusions of unknown media. Every row they reject goes to the quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from popray.io.rows import Quarantine
from popray.io.storage import Location
from popray.io.store import sql_text


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


def _duplicates(
    con, table: str, key: str, ids: tuple[str, ...], source: str, what: str, q: Quarantine
) -> None:
    """Quarantine every later row of a `key` that `table` holds twice (first row wins)."""
    sql = sql_text("ingest.later_duplicates").format(table=table, key=key, ids=", ".join(ids))
    for row in con.sql(sql).fetchall():
        n, first, *values = row
        q.add(
            source,
            n,
            f"duplicate {what} (first seen at row {first})",
            **dict(zip(ids, values, strict=True)),
        )


def _keep_first(con, table: str, key: str, out: str) -> None:
    con.sql(sql_text("ingest.keep_first").format(table=table, key=key, out=out))


def _source_rows(con, query: str) -> list[int]:
    return [r[0] for r in con.sql(sql_text(f"ingest.{query}")).fetchall()]


def in_order(table: pa.Table, rows: list[int]) -> pa.Table:
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
    rels = sorted(r[0] for r in con.sql(sql_text("ingest.media_files")).fetchall())
    problems = _file_problems(export, rels)
    found = pa.table(
        {"rel": list(problems), "why": list(problems.values())},
        schema=pa.schema([("rel", pa.string()), ("why", pa.string())]),
    )
    con.register("problems", found)
    con.sql(sql_text("ingest.check_media"))
    failed = con.sql(sql_text("ingest.media_failed")).fetchall()
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
    return con.sql(sql_text("ingest.media_passed")).fetchall()


@dataclass
class Kept:
    """The source rows each input keeps after the checks across rows and files (media:
    (row, its post's profile))."""

    posts: list[int]
    media: list[tuple[int, str]]
    followers: list[int]
    excluded: list[int]


def cross_checks(
    export: Location,
    valid: dict[str, pa.Table],
    sources: dict[str, str],
    counts: dict[str, int],
    quarantine: Quarantine,
) -> Kept:
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
        orphans = con.sql(sql_text("ingest.posts_without_followers")).fetchall()
        for n, profile, post in orphans:
            reason = f"no follower history for profile {profile!r}"
            kw = {"field": "profile_id", "value": profile, "profile_id": profile, "post_id": post}
            quarantine.add(source, n, reason, **kw)
        con.sql(sql_text("ingest.keep_posts"))
        media_rows = _check_media(con, export, sources["media"], quarantine)
        excluded_rows: list[int] = []
        if counts["exclude"]:
            kept_media = in_order(valid["media"], [n for n, _ in media_rows])
            excluded_rows = _check_exclusions(con, kept_media, sources["exclude"], quarantine)
        return Kept(
            _source_rows(con, "posts_kept"),
            media_rows,
            _source_rows(con, "followers_kept"),
            excluded_rows,
        )
    finally:
        con.close()


def _check_exclusions(con, kept_media: pa.Table, source: str, quarantine: Quarantine) -> list[int]:
    """The exclusion rows kept: the first per media_id, naming a valid media item."""
    _duplicates(con, "exclude_v", "media_id", ("media_id",), source, "media_id", quarantine)
    _keep_first(con, "exclude_v", "media_id", "exclude_kept")
    con.register("media_out", kept_media.select(["media_id"]))
    unknown = con.sql(sql_text("ingest.exclusions_unknown")).fetchall()
    for n, media_id in unknown:
        reason = "media_id not among the valid media"
        quarantine.add(source, n, reason, field="media_id", value=media_id, media_id=media_id)
    return _source_rows(con, "exclusions_kept")
