"""Labels: followers at post time, Popularity Rate and popularity classes, in DuckDB SQL.

The SQL lives in `schemas/sql/` (`followers_at_post.sql`, `labels_por.sql`); values are
bound parameters. Writes table `labels`: one row per (media_id, k) for every media item
that is not excluded.

    popray label --out out --k 2 --k 3 --window-days 56
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import duckdb
import pyarrow as pa

from popray import store
from popray.config import LabelConfig
from popray.tables import LABELS

US_PER_DAY = 86_400_000_000


def sql_text(name: str) -> str:
    """The text of `schemas/sql/<name>.sql`: from the installed package (`popray.schemas`),
    or from the source tree when popray runs uninstalled (e.g. a `ray job submit
    --working-dir .` upload, where `popray/` is importable but `popray.schemas` is not)."""
    try:
        root = files("popray.schemas")
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parent.parent / "schemas"
    return (root / "sql" / f"{name}.sql").read_text(encoding="utf-8")


def label_tables(
    posts: pa.Table,
    media: pa.Table,
    followers: pa.Table,
    excluded: pa.Table,
    config: LabelConfig,
) -> pa.Table:
    """Compute the `labels` table from the ingest tables (pure: nothing is written)."""
    con = duckdb.connect()
    try:
        for name, table in (
            ("posts", posts),
            ("media", media),
            ("followers", followers),
            ("excluded", excluded),
        ):
            con.register(name, table)
        post_followers = con.sql(
            sql_text("followers_at_post"),
            params={
                "extrapolation_window_us": round(config.extrapolation_window_days * US_PER_DAY)
            },
        ).to_arrow_table()
        con.register("post_followers", post_followers)
        parts = []
        for k in config.k:
            parts.append(
                con.sql(
                    sql_text("labels_por"),
                    params={
                        "k": k,
                        "quantiles": [j / k for j in range(1, k)],
                        "half_window_us": round(config.window_days * US_PER_DAY / 2),
                        "window_days": config.window_days,
                    },
                ).to_arrow_table()
            )
    finally:
        con.close()
    return pa.concat_tables([p.cast(LABELS) for p in parts]) if parts else LABELS.empty_table()


def run_label(out: Path, config: LabelConfig) -> pa.Table:
    """Label the ingested tables under `out` and publish table `labels`."""
    tables = {n: store.read_table(out, n) for n in ("posts", "media", "followers", "excluded")}
    labels = label_tables(**tables, config=config)
    store.write_table(out, "labels", labels)
    store.refresh_views(out)
    return labels
