"""What every figure shares: the named queries of popray/io/sql/figures.sql, where a
figure is saved, and the colours and titles."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from matplotlib.figure import Figure

from popray.io import store

FIG_DIR = "figures"
SUFFIX = {"stratified_kfold": "", "walk_forward": "_walk_forward"}
TITLE = {"stratified_kfold": "stratified folds", "walk_forward": "walk-forward"}
NO_CLASS = "#999999"  # items a scheme gives no class
CLASS_COLOURS = ["#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b"]


def query(out: Path, query: str, **params) -> pa.Table:
    """The rows of the named query `query` of popray/io/sql/figures.sql."""
    return store.query(out, store.sql_text(f"figures.{query}"), **params)


def save(fig: Figure, out: Path, name: str) -> Path:
    path = out / FIG_DIR / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
