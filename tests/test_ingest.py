import csv
import hashlib
import json
import shutil

import pyarrow.parquet as pq
import pytest

from popray.errors import InputError
from popray.ingest import ingest
from popray.io import store

SOURCES = {
    "posts.csv": "posts",
    "media.csv": "media",
    "followers.csv": "followers",
    "exclude.csv": "excluded",
}


def _rows_in(path):
    with path.open(newline="") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def test_every_input_row_lands_in_exactly_one_place(tiny_input, tiny_out):
    quarantine = store.read_table(tiny_out, "quarantine").to_pylist()
    for source, table in SOURCES.items():
        valid = store.read_table(tiny_out, table).column("source_row").to_pylist()
        bad = [q["row"] for q in quarantine if q["source"] == source]
        assert len(valid) == len(set(valid)) and len(bad) == len(set(bad))
        assert not set(valid) & set(bad), f"{source}: a row is both valid and quarantined"
        n = _rows_in(tiny_input / source)
        assert set(valid) | set(bad) == set(range(1, n + 1)), f"{source}: rows lost"


def test_planted_bad_rows_are_quarantined_with_file_row_and_reason(tiny_truth, tiny_out):
    quarantine = {
        (q["source"], q["row"]): q for q in store.read_table(tiny_out, "quarantine").to_pylist()
    }
    for bad in tiny_truth["bad_rows"]:
        entry = quarantine.get((bad["file"], bad["row"]))
        assert entry is not None, f"not quarantined: {bad}"
        assert entry["reason"] and entry["stage"] == "ingest"
    reasons = {q["media_id"]: q["reason"] for q in quarantine.values() if q["media_id"]}
    assert "absolute" in reasons["mbad1"]
    assert "'..'" in reasons["mbad2"]
    assert "file not found" in reasons["mbad3"]
    assert "symbolic link" in reasons["mbad4"]
    assert "post_id not among the valid posts" in reasons["mbad0"]


def test_media_hashes_and_profile(tiny_input, tiny_out):
    media = store.read_table(tiny_out, "media").to_pylist()
    assert media and all(m["profile_id"] == "sample_brand" for m in media)
    for m in media[:5]:
        data = (tiny_input / m["path"]).read_bytes()
        assert m["sha256"] == hashlib.sha256(data).hexdigest()
        assert m["size_bytes"] == len(data)


def test_same_export_as_jsonl_and_parquet_gives_same_tables(tiny_input, tmp_path):
    reference = ingest(tiny_input)
    alt = tmp_path / "alt"
    shutil.copytree(tiny_input, alt, symlinks=True)
    # posts as JSON Lines, followers as Parquet (typed columns), media stays CSV.
    with (alt / "posts.csv").open(newline="") as fh:
        posts = list(csv.DictReader(fh))
    with (alt / "posts.jsonl").open("w") as fh:
        for p in posts:
            fh.write(json.dumps({k: v for k, v in p.items() if v != ""}) + "\n")
    (alt / "posts.csv").unlink()
    reference_followers = reference.tables["followers"]
    pq.write_table(reference_followers.drop(["source_row"]), alt / "followers.parquet")
    (alt / "followers.csv").unlink()
    result = ingest(alt)
    assert result.tables["posts"].equals(reference.tables["posts"])
    assert (
        result.tables["followers"]
        .drop(["source_row"])
        .equals(reference_followers.drop(["source_row"]))
    )
    assert result.tables["media"].equals(reference.tables["media"])


def _write(path, text):
    path.write_text(text)
    return path


def _minimal_export(root):
    root.mkdir(exist_ok=True)
    (root / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    _write(
        root / "posts.csv",
        "profile_id,post_id,published_at,likes,comments,post_type\n"
        "b,p1,2021-01-01T10:00:00,10,1,image\n"
        "b,p1,2021-01-02T10:00:00,12,1,image\n"
        "nohist,p2,2021-01-02T10:00:00,12,1,image\n",
    )
    _write(
        root / "media.csv",
        "media_id,post_id,position,media_type,path\n"
        "m1,p1,0,image,a.jpg\n"
        "m1,p1,1,image,a.jpg\n"
        "m2,p2,0,image,a.jpg\n"
        "m3,p1,0,video,a.jpg\n",
    )
    _write(root / "followers.csv", "profile_id,at,followers\nb,2021-01-01,100\nb,2021-01-01,120\n")
    return root


def test_cross_file_rules(tmp_path):
    result = ingest(_minimal_export(tmp_path / "x"))
    q = {(r["source"], r["row"]): r["reason"] for r in result.tables["quarantine"].to_pylist()}
    assert "duplicate post_id (first seen at row 1)" in q[("posts.csv", 2)]
    assert "no follower history" in q[("posts.csv", 3)]
    assert "duplicate media_id" in q[("media.csv", 2)]
    assert "post_id not among the valid posts" in q[("media.csv", 3)]
    assert "duplicate (post_id, position)" in q[("media.csv", 4)]
    assert "duplicate (profile_id, at)" in q[("followers.csv", 2)]
    assert result.tables["posts"].num_rows == 1 and result.tables["media"].num_rows == 1


def test_type_mismatch_in_single_post(tmp_path):
    root = _minimal_export(tmp_path / "x")
    _write(root / "media.csv", "media_id,post_id,position,media_type,path\nm3,p1,0,video,a.jpg\n")
    q = ingest(root).tables["quarantine"].to_pylist()
    assert any("media_type video inside a single image post" in r["reason"] for r in q)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda r: (r / "posts.csv").unlink(), "missing posts.csv"),
        (lambda r: _write(r / "posts.csv", "profile_id,post_id,when\n"), "wrong header"),
        (
            lambda r: _write(r / "media.csv", "media_id,post_id,position,media_type,path,x\n"),
            "unknown column",
        ),
        (lambda r: (r / "posts.csv").write_bytes(b"\xff\xfe\x00garbage\x00"), "cannot be read"),
        (lambda r: _write(r / "posts.jsonl", "{}\n"), "keep one"),
        (lambda r: _write(r / "followers.csv", ""), "empty file"),
    ],
)
def test_unusable_files_stop_with_a_message_naming_the_file(tmp_path, mutate, message):
    root = _minimal_export(tmp_path / "x")
    mutate(root)
    with pytest.raises(InputError, match=message) as err:
        ingest(root)
    assert str(root) in str(err.value)


def test_views_work_after_out_is_moved(tiny_out, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere"
    shutil.copytree(tiny_out, moved)
    monkeypatch.chdir(tmp_path)
    n = store.query(moved, "SELECT count(*) AS n FROM media").column("n")[0].as_py()
    assert n == store.read_table(tiny_out, "media").num_rows


def test_sql_is_read_only(tiny_out):
    import duckdb

    with pytest.raises(duckdb.Error):
        store.query(tiny_out, "DROP VIEW media")


def test_validation_on_ray_tasks_gives_exactly_the_tables_of_the_driver(
    ray_session, tiny_input, tmp_path, monkeypatch
):
    """Long files are validated in chunks on Ray tasks: with chunks of 7 rows (and the
    parallel path from 10 rows on) every table, quarantine included, comes out equal to
    the driver's, row for row and in the same order, on an export with repeated posts,
    media and follower points and a second media item in a single post."""
    import popray.io.rows as rows_module

    root = tmp_path / "export"
    shutil.copytree(tiny_input, root)
    for name in ("posts.csv", "media.csv", "followers.csv"):
        with (root / name).open(newline="") as fh:
            rows = list(csv.reader(fh))
        rows += rows[3:9]  # six rows again, at the end: later duplicates
        with (root / name).open("w", newline="") as fh:
            csv.writer(fh).writerows(rows)
    with (root / "media.csv").open(newline="") as fh:
        media = list(csv.DictReader(fh))
    with (root / "posts.csv").open(newline="") as fh:
        single = next(p for p in csv.DictReader(fh) if p["post_type"] == "image")
    first = next(m for m in media if m["post_id"] == single["post_id"])
    with (root / "media.csv").open("a", newline="") as fh:
        extra = first | {"media_id": "m_second", "position": "5"}
        csv.DictWriter(fh, list(first)).writerow(extra)

    local = ingest(root)
    monkeypatch.setattr(rows_module, "PARALLEL_ROWS", 10)
    monkeypatch.setattr(rows_module, "CHUNK_ROWS", 7)
    chunked = []
    chunks = rows_module._chunks
    monkeypatch.setattr(rows_module, "_chunks", lambda *a: chunked.append(1) or chunks(*a))
    parallel = ingest(root)
    assert len(chunked) == 3  # posts, media and followers went to Ray tasks
    assert local.input_rows == parallel.input_rows
    for name, table in local.tables.items():
        assert table.equals(parallel.tables[name]), name
    reasons = [q["reason"] for q in local.tables["quarantine"].to_pylist()]
    assert sum("duplicate post_id" in r for r in reasons) == 6
    assert any("single image post has one media item; row" in r for r in reasons)
