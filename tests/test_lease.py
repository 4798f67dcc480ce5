"""The writer lease of a work folder on object storage (popray/io/lease.py), on a real S3 API:
moto's server on loopback (fixture `s3_uri`), which enforces If-None-Match / If-Match."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from popray.cli import app
from popray.config import RunConfig, scratch_for
from popray.errors import LeaseLost, LockedError, StorageError
from popray.io import lease
from popray.io.storage import Location


def _lock(uri: str) -> dict | None:
    try:
        return json.loads(Location.parse(uri).read_bytes(lease.LEASE_NAME))
    except FileNotFoundError:
        return None


def test_one_writer_at_a_time_and_the_lease_is_released(s3_uri):
    work = Location.parse(s3_uri("lease/one"))
    with lease.exclusive(work, "run") as held:
        assert "`popray run`" in _lock(work.uri)["holder"]
        with (
            pytest.raises(LockedError, match=r"being written by another popray run"),
            lease.exclusive(work, "run"),
        ):
            pass
        held.check()  # still ours
    assert _lock(work.uri) is None  # released
    with lease.exclusive(work, "train"):  # and free for the next run
        assert "`popray train`" in _lock(work.uri)["holder"]


def test_a_dead_holders_lease_expires_and_exactly_one_run_takes_it_over(s3_uri):
    work = Location.parse(s3_uri("lease/dead"))
    dead = lease.S3Lease(work, "run", ttl_s=1, renew_s=3600)
    dead.take()  # then "killed": never renewed, never released
    dead._stop.set()
    with pytest.raises(LockedError, match=r"lease expires in"):
        lease.S3Lease(work, "run", ttl_s=1, renew_s=3600).take()
    time.sleep(2.5)  # older than its ttl by the server's clock
    first = lease.S3Lease(work, "run", ttl_s=600, renew_s=3600)
    second = lease.S3Lease(work, "run", ttl_s=600, renew_s=3600)
    # both saw the stale lease; the conditional PUT lets exactly one replace it
    stale = first.client.get_object(Bucket=first.bucket, Key=first.key)["ETag"]
    first.etag = first._put(IfMatch=stale)
    with pytest.raises(Exception, match="PreconditionFailed"):
        second._put(IfMatch=stale)
    first.release()
    assert _lock(work.uri) is None


def test_a_holder_that_lost_its_lease_finds_out_before_publishing(s3_uri):
    work = Location.parse(s3_uri("lease/lost"))
    slow = lease.S3Lease(work, "run", ttl_s=1, renew_s=0.2)
    slow.take()
    slow.client.put_object(Bucket=slow.bucket, Key=slow.key, Body=b'{"holder": "another run"}')
    deadline = time.monotonic() + 10
    while slow.lost is None and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(LeaseLost, match="lost its writer lease"):
        slow.check()
    slow.release()
    assert _lock(work.uri) == {"holder": "another run"}  # never deletes another's lease


def test_a_missing_bucket_or_an_unsupported_store_is_a_clear_error(s3_uri):
    missing = Location.parse(s3_uri("x").replace("popray-test", "no-such-bucket"))
    with (
        pytest.raises(StorageError, match=r"no-such-bucket/x/LOCK: cannot take the writer lease"),
        lease.exclusive(missing, "run"),
    ):
        pass
    with (
        pytest.raises(StorageError, match=r"gs:// is not supported"),
        lease.exclusive(Location("gs://bucket/work"), "run"),
    ):
        pass


def test_stale_staging_is_swept_and_a_fresh_one_kept(s3_uri):
    from datetime import UTC, datetime

    from popray.embed import sweep_staging

    root = Location.parse(s3_uri("lease/sweep"))
    names = ["staging-embed-20261101T000000-dead", "staging-embed-20261130T230000-live", "mine"]
    for name in names:
        with root.fs.open_output_stream(root.child(name).path("image/part.parquet")) as f:
            f.write(b"rows")
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert sweep_staging(root, now) == [names[0]]
    assert root.names() == sorted(names[1:])  # younger than a day, or not popray's: kept


def test_a_work_folder_on_storage_derives_publish_storage_and_scratch(monkeypatch, tmp_path):
    monkeypatch.setenv("POPRAY_SCRATCH", str(tmp_path))
    uri = "s3://bucket/popray/brand?endpoint_override=h:9&scheme=http"
    cfg = RunConfig(input_dir="export", work_dir=uri)
    assert cfg.publish_to == uri
    assert cfg.storage == "s3://bucket/popray/brand/work?endpoint_override=h:9&scheme=http"
    assert cfg.out_dir == scratch_for(Location.parse(uri)) and cfg.out_dir.parent == tmp_path
    assert RunConfig.model_validate(cfg.model_dump()) == cfg  # stable through a dump
    kept = RunConfig(input_dir="export", work_dir=uri, out_dir=tmp_path / "mine")
    assert kept.out_dir == tmp_path / "mine"
    with pytest.raises(ValueError, match="leave publish_to out"):
        RunConfig(input_dir="export", work_dir=uri, publish_to="s3://bucket/elsewhere")


def test_run_refuses_a_held_work_folder_before_any_work(s3_uri, tiny_input, tmp_path):
    uri = s3_uri("lease/cli")
    args = ["run", "--input", str(tiny_input), "--out", uri]
    with lease.exclusive(Location.parse(uri), "run"):
        result = CliRunner().invoke(app, args, env={"POPRAY_SCRATCH": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert "being written by another popray run" in result.output
    assert not any(tmp_path.rglob("ingest.json"))  # refused before ingest


def test_stage_commands_refuse_a_uri_for_out():
    result = CliRunner().invoke(app, ["label", "--out", "s3://bucket/work"])
    assert result.exit_code == 2
    assert "popray run --out s3://" in " ".join(result.output.replace("│", " ").split())
