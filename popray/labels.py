"""Labels: followers at post time, Popularity Rate and the popularity classes of every
label scheme, in DuckDB SQL.

The SQL lives in `popray/io/sql/` (`followers_at_post.sql`, `label_items.sql`, one
`labels_<scheme>.sql` per scheme); values are bound parameters. Writes table `labels`:
one row per (media item, scheme, k) for every media item that is not excluded.

    popray label --out out --k 2 --k 3 --window-days 56
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from popray.config import LabelConfig
from popray.io import store
from popray.io.tables import US_PER_DAY, conform, empty


def _scheme_queries(config: LabelConfig) -> list[tuple[str, dict]]:
    """(SQL file, parameters) of every scheme and k: the paper's two PoR schemes and
    `residual` for every k; the binary schemes for k = 2 (they define two classes)."""
    queries = []
    for k in config.k:
        quantiles = [j / k for j in range(1, k)]
        queries.append(
            (
                "labels_por",
                {
                    "k": k,
                    "quantiles": quantiles,
                    "half_window_us": round(config.window_days * US_PER_DAY / 2),
                    "window_days": config.window_days,
                },
            )
        )
        queries.append(
            (
                "labels_residual",
                {"k": k, "quantiles": quantiles, "keep_extremes": config.keep_extremes},
            )
        )
    if 2 in config.k:
        queries.append(("labels_ratio_threshold", {"threshold": config.ratio_threshold}))
        queries.append(("labels_likes_moving_average", {"previous": config.moving_average_posts}))
    return queries


def _sql_file(scheme: str) -> str:
    """The SQL file that computes `scheme` (labels_por.sql computes both PoR schemes)."""
    return "labels_por" if scheme.startswith("por_") else f"labels_{scheme}"


def label_tables(
    posts: pa.Table,
    media: pa.Table,
    followers: pa.Table,
    excluded: pa.Table,
    config: LabelConfig,
    only: str | None = None,
) -> pa.Table:
    """Compute the `labels` table from the ingest tables (pure: nothing is written);
    `only`: the rows of that scheme's SQL file alone (the PoR file gives both PoR
    schemes), for callers that need one scheme."""
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
            store.sql_text("followers_at_post"),
            params={
                "extrapolation_window_us": round(config.extrapolation_window_days * US_PER_DAY)
            },
        ).to_arrow_table()
        con.register("post_followers", post_followers)
        con.execute(store.sql_text("ties_macro"))
        con.register("items", con.sql(store.sql_text("label_items")).to_arrow_table())
        parts = [
            conform(con.sql(store.sql_text(name), params=params).to_arrow_table(), "labels")
            for name, params in _scheme_queries(config)
            if only is None or name == _sql_file(only)
        ]
    finally:
        con.close()
    labels = pa.concat_tables([empty("labels"), *parts])
    order = [(c, "ascending") for c in ("profile_id", "scheme", "k", "media_type")]
    return labels.sort_by([*order, ("published_at", "ascending"), ("media_id", "ascending")])


def run_label(out: Path, config: LabelConfig) -> pa.Table:
    """Label the ingested tables under `out` and publish table `labels`."""
    tables = {n: store.read_table(out, n) for n in ("posts", "media", "followers", "excluded")}
    labels = label_tables(**tables, config=config)
    store.write_table(out, "labels", labels)
    store.refresh_views(out)
    return labels
