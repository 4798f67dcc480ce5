"""The nightly benchmark's own parts: the new posts it adds, and its table comparison."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq

from popray.ingest import ingest
from popray.tools.bench_nightly import NEW_POSTS, add_posts, compare


def test_new_posts_are_valid_later_posts_with_media_of_their_own(tiny_input, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(tiny_input, export)
    before = ingest(export).tables
    profile = before["posts"]["profile_id"][0].as_py()
    new = add_posts(export, profile)
    after = ingest(export).tables
    assert len(new) == NEW_POSTS
    assert after["posts"].num_rows == before["posts"].num_rows + NEW_POSTS
    posts = {r["post_id"]: r for r in after["posts"].to_pylist()}
    latest = max(r["published_at"] for r in before["posts"].to_pylist())
    assert all(posts[p]["published_at"] > latest and posts[p]["profile_id"] == profile for p in new)
    media = [r for r in after["media"].to_pylist() if r["post_id"] in new]
    old_hashes = set(before["media"]["sha256"].to_pylist())
    assert len(media) == NEW_POSTS and not {m["sha256"] for m in media} & old_hashes
    assert after["quarantine"].num_rows == before["quarantine"].num_rows  # nothing new is bad


def _run(folder, trials: list[dict]):
    """A run folder whose `trials` table holds `trials` (as a published run lays it out)."""
    (folder / "tables" / "trials").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(trials), folder / "tables" / "trials" / "data.parquet")
    return folder


def test_compare_tells_identical_rows_from_changed_ones_and_ignores_only_volatile_columns(
    tmp_path,
):
    row = {"profile_id": "a", "model": "image", "val_accuracy": 0.5, "train_s": 1.0}
    a = _run(tmp_path / "a", [row, row | {"profile_id": "b"}])
    b = _run(tmp_path / "b", [row | {"train_s": 2.0}, row | {"profile_id": "b"}])
    c = _run(tmp_path / "c", [row, row | {"profile_id": "b", "val_accuracy": 0.6}])
    assert compare(a, b, ["b"], volatile=False)["trials"] == "identical (1 rows)"
    assert compare(a, b, ["a"], volatile=False)["trials"].startswith("DIFFERENT")
    assert compare(a, b, ["a"], volatile=True)["trials"] == "identical (1 rows)"  # train_s
    assert compare(a, c, ["b"], volatile=True)["trials"].startswith("DIFFERENT")
    assert compare(a, c, ["a"], volatile=True)["labels"] == "identical (0 rows)"
