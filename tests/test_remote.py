"""Published runs on object storage: a real S3 API (moto's server on loopback, fixture
`s3_uri`) through pyarrow's S3 filesystem, as `popray run --publish-to s3://...` uses it."""

from __future__ import annotations

import shutil

import pytest

from popray import remote, storage, store
from popray.publish import current, staged_run


def _run(out, tiny_out, change=None):
    """A staged run whose tables are the tiny sample's (optionally changed)."""
    with staged_run(out) as run:
        if not (run / "tables").exists() or not any((run / "tables").iterdir()):
            shutil.rmtree(run / "tables", ignore_errors=True)
            shutil.copytree(tiny_out / "tables", run / "tables")
        if change:
            change(run)
        store.refresh_views(run)
    return current(out).name


def test_a_run_published_to_s3_reads_back_and_replaces_the_last(s3_uri, tiny_out, tmp_path):
    uri = s3_uri("brand-a")
    assert remote.published(uri) is None
    out = tmp_path / "work"
    first = _run(out, tiny_out)
    assert remote.push(out, uri) == first
    assert remote.published(uri)["run"] == first
    con = remote.connect(uri)
    n = con.sql("SELECT count(*) FROM posts").fetchall()[0][0]
    assert n == store.query(out, "SELECT count(*) AS n FROM posts")["n"][0].as_py()
    # a second run replaces it; the one before stays for readers, older ones go
    second = _run(out, tiny_out, lambda run: (run / "tables" / "quarantine").mkdir(exist_ok=True))
    remote.push(out, uri)
    third = _run(out, tiny_out)
    remote.push(out, uri)
    fs, base = storage.resolve(uri)
    runs = sorted(i.base_name for i in fs.get_file_info(remote.pafs.FileSelector(f"{base}/runs")))
    assert runs == sorted([second, third]) and remote.published(uri)["run"] == third


def test_a_fresh_machine_starts_from_the_published_run(s3_uri, tiny_out, tmp_path):
    uri = s3_uri("brand-b")
    _run(tmp_path / "first-node", tiny_out)
    published = remote.push(tmp_path / "first-node", uri)
    fresh = tmp_path / "fresh-node"
    assert remote.pull(uri, fresh) == published
    assert current(fresh).name == published  # published locally: the next run starts from it
    assert (fresh / "popray.duckdb").exists()
    assert store.query(fresh, "SELECT count(*) AS n FROM labels")["n"][0].as_py() > 0
    assert remote.pull(uri, fresh) is None  # already has a run: nothing downloaded


def test_a_scratch_copy_follows_its_work_folder(s3_uri, tiny_out, tmp_path):
    """`--out s3://...`: the driver's scratch is only a copy, so a run another head
    published since replaces it; a plain --out with --publish-to keeps its own run."""
    uri = s3_uri("brand-d")
    scratch, other_head = tmp_path / "scratch", tmp_path / "other-head"
    first = _run(scratch, tiny_out)
    remote.push(scratch, uri)
    _run(other_head, tiny_out)
    newer = remote.push(other_head, uri)
    assert remote.pull(uri, scratch) is None and current(scratch).name == first
    assert remote.pull(uri, scratch, refresh=True) == newer
    assert current(scratch).name == newer
    assert remote.pull(uri, scratch, refresh=True) is None  # up to date: nothing downloaded


def test_an_upload_killed_half_way_leaves_the_published_run(
    s3_uri, tiny_out, tmp_path, monkeypatch
):
    uri = s3_uri("brand-c")
    out = tmp_path / "work"
    _run(out, tiny_out)
    before = remote.push(out, uri)
    _run(out, tiny_out)

    def lost(source, destination, source_filesystem, destination_filesystem):
        with destination_filesystem.open_output_stream(f"{destination}/tables/half") as f:
            f.write(b"PAR1")  # the first bytes made it, then the line dropped
        raise OSError("connection lost")

    monkeypatch.setattr(remote.pafs, "copy_files", lost)
    with pytest.raises(OSError, match="connection lost"):
        remote.push(out, uri)
    assert remote.published(uri)["run"] == before  # readers still get the whole last run
    assert remote.connect(uri).sql("SELECT count(*) FROM labels").fetchall()[0][0] > 0
    monkeypatch.undo()
    again = remote.push(out, uri)  # the next attempt completes it
    assert remote.published(uri)["run"] == again != before


def test_a_bad_uri_is_a_clear_error():
    with pytest.raises(ValueError, match="nosuch://x: not a storage URI"):
        storage.resolve("nosuch://x")
