"""Published runs on object storage: a real S3 API (moto's server on loopback, fixture
`s3_uri`) through pyarrow's S3 filesystem, as `popray run --publish-to s3://...` uses it."""

from __future__ import annotations

import shutil

import pytest

from popray.io import remote, storage, store
from popray.io.publish import current, staged_run


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
    assert remote.push(out, uri).run == first
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
    published = remote.push(tmp_path / "first-node", uri).run
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
    newer = remote.push(other_head, uri).run
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
    before = remote.push(out, uri).run
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
    again = remote.push(out, uri).run  # the next attempt completes it
    assert remote.published(uri)["run"] == again != before


def test_a_rerun_uploads_what_changed_and_copies_the_rest_on_the_storage(
    s3_uri, tiny_out, tmp_path
):
    """A nightly run's unchanged files (hard links to the previous run's) are copied by
    the storage from the previous remote run; only the changed ones leave this machine.
    The remote run still holds every file, with the right bytes."""
    uri = s3_uri("brand-e")
    out = tmp_path / "work"
    _run(out, tiny_out)
    first = remote.push(out, uri)
    assert first.copied == 0 and first.uploaded > 0  # nothing to copy from yet

    def new_labels(run):
        store.write_table(run, "labels", store.read_table(run, "labels").slice(1))

    second = _run(out, tiny_out, new_labels)
    pushed = remote.push(out, uri)
    run = out / "runs" / second
    parquet = [p for p in run.rglob("*.parquet")]
    # rewritten: the labels part; always sent: files that are not linked (json, duckdb)
    sent = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    linked = {p.relative_to(run).as_posix() for p in parquet} - {"tables/labels/data.parquet"}
    assert pushed.copied == len(linked) > 0 and pushed.uploaded == len(sent) - len(linked)
    fs, base = storage.resolve(uri)
    selector = remote.pafs.FileSelector(f"{base}/runs/{second}", recursive=True)
    remote_files = {
        i.path.split(f"runs/{second}/", 1)[1]: i.size
        for i in fs.get_file_info(selector)
        if i.type == remote.pafs.FileType.File
    }
    assert remote_files == {rel: (run / rel).stat().st_size for rel in sent}
    con = remote.connect(uri)
    n = con.sql("SELECT count(*) FROM labels").fetchall()[0][0]
    assert n == store.read_table(out, "labels").num_rows


def test_a_bad_uri_is_a_clear_error():
    with pytest.raises(ValueError, match="nosuch://x: not a storage URI"):
        storage.resolve("nosuch://x")
