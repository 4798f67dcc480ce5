"""Exports on object storage (a real S3 API: moto's server on loopback): ingest reads the
metadata and file info through pyarrow, and decode tasks read each file's bytes themselves."""

import time

import numpy as np
import pyarrow.fs as pafs
import pytest
from multinode import upload

from popray.errors import InputError, StorageError
from popray.ingest import ingest
from popray.io import store
from popray.io.storage import Location, check_cluster_reach
from popray.media import embed_pipeline


@pytest.fixture(scope="module")
def s3_export(tiny_input, s3_uri) -> Location:
    return upload(tiny_input, s3_uri("exports/tiny"))


def test_an_export_on_s3_ingests_like_the_folder_on_disk(ray_session, s3_export, tiny_out):
    """Same valid rows, hashes and sizes (computed by Ray tasks that read the objects);
    the one difference: the planted symbolic link is not on S3, so its row is "not found"."""
    got = ingest(s3_export).tables
    for name in ("posts", "media", "followers", "excluded"):
        want = store.read_table(tiny_out, name)
        assert got[name].sort_by("source_row").equals(want.sort_by("source_row")), name

    def reasons(rows):
        return {(q["source"], q["row"]): q["reason"] for q in rows}

    here = reasons(store.read_table(tiny_out, "quarantine").to_pylist())
    there = reasons(got["quarantine"].to_pylist())
    (link,) = [k for k, why in here.items() if "symbolic link" in why]
    assert there.pop(link) == "path: file not found"
    here.pop(link)
    assert there == here


def _items(media: list[dict], ids: list[str]) -> dict[str, np.ndarray]:
    rows = [m for m in media if m["media_id"] in ids]
    return {
        "media_id": np.array([m["media_id"] for m in rows]),
        "sha256": np.array([m["sha256"] for m in rows]),
        "kind": np.array([m["media_type"] for m in rows]),
        "path": np.array([m["path"] for m in rows]),
        "thumb": np.array([m["thumbnail_path"] or "" for m in rows]),
    }


def test_decode_tasks_read_bytes_from_storage(s3_export, tiny_out, tiny_truth, embed_cfg):
    """An image, a video and a corrupt file decode (or fail) from S3 as from disk; an
    object deleted after ingest is "file not found" (retried next run), one replaced
    after ingest fails its sha256 check."""
    media = store.read_table(tiny_out, "media").to_pylist()
    image = next(m for m in media if m["media_type"] == "image" and m["media_id"][0] == "m")
    video = next(
        m
        for m in media
        if m["media_type"] == "video" and m["media_id"] not in tiny_truth["corrupt_media"]
    )
    corrupt = next(
        m for m in media if tiny_truth["corrupt_media"].get(m["media_id"]) == "garbage_mp4"
    )
    ids = [image["media_id"], video["media_id"], corrupt["media_id"]]
    out = embed_pipeline.decode_batch(_items(media, ids), embed_cfg, s3_export)
    by_id = dict(zip(out["media_id"], zip(out["pixels"], out["error"], strict=True), strict=True))
    assert by_id[image["media_id"]][1] == "" and by_id[image["media_id"]][0].shape == (
        1 + embed_cfg.views,
        224,
        224,
        3,
    )
    assert by_id[video["media_id"]][1] == "" and len(by_id[video["media_id"]][0]) >= 15
    assert by_id[corrupt["media_id"]][1] and len(by_id[corrupt["media_id"]][0]) == 0

    # a copy of the export, then one object deleted and one replaced after ingest
    moved = Location(s3_export.uri.replace("exports/tiny", "exports/tiny-changed"))
    pafs.copy_files(
        s3_export.path(),
        moved.path(),
        source_filesystem=s3_export.fs,
        destination_filesystem=moved.fs,
    )
    moved.fs.delete_file(moved.path(image["path"]))
    with moved.fs.open_output_stream(moved.path(video["path"])) as s:
        s.write(b"not the video that was ingested")
    out = embed_pipeline.decode_batch(_items(media, ids[:2]), embed_cfg, moved)
    errors = dict(zip(out["media_id"], out["error"], strict=True))
    assert errors[image["media_id"]] == "file not found"
    assert errors[image["media_id"]].startswith(embed_pipeline.TRANSIENT)  # not cached: retried
    assert "changed since ingest" in errors[video["media_id"]]


def test_bad_locations_are_clear_errors_before_any_work(s3_uri, tmp_path):
    with pytest.raises(StorageError, match="not a storage URI"):
        Location.parse("nosuch://bucket/x")
    with pytest.raises(StorageError, match="names no bucket"):
        Location.parse("s3://")
    query = s3_uri("x").split("?", 1)[1]
    with pytest.raises(InputError, match="input folder not found"):
        ingest(f"s3://no-such-bucket/export?{query}")
    with pytest.raises(InputError, match="input folder not found"):
        ingest(s3_uri("no/such/prefix"))
    with pytest.raises(InputError, match=r"missing posts\.csv"):
        (tmp_path / "followers.csv").write_text("profile_id,at,followers\n")
        upload(tmp_path, s3_uri("half"))
        ingest(s3_uri("half"))
    start = time.monotonic()
    with pytest.raises(InputError, match="cannot be reached"):
        ingest("s3://bucket/export?endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1")
    assert time.monotonic() - start < 60  # fails, and says why, within seconds


def test_a_local_folder_is_refused_on_a_cluster_whose_nodes_do_not_see_it(monkeypatch, tmp_path):
    """On a multi-node cluster a plain path would be read (or written) only where it exists."""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}])
    with pytest.raises(
        StorageError, match=r"the export .* 2 nodes that do not see it.*--input s3://"
    ):
        check_cluster_reach(Location.parse(tmp_path), "the export", "--input")
    check_cluster_reach(Location.parse(f"file://{tmp_path}"), "the export", "--input")  # a mount
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": False}])
    check_cluster_reach(Location.parse(tmp_path), "the export", "--input")  # one live node


@pytest.mark.parametrize("where", ["disk", "s3"])
def test_a_location_lists_names_and_deletes_folders_on_disk_and_on_s3(where, tmp_path, s3_uri):
    root = Location.parse(tmp_path / "root") if where == "disk" else Location.parse(s3_uri("loc"))
    grid = root.child("grid")
    assert grid.names() == [] and grid.files() == []  # not there yet: empty, no error
    for rel in ("a/x.json", "a/deep/y.parquet", "b/z.json"):
        path = grid.path(rel)
        grid.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with grid.fs.open_output_stream(path) as stream:
            stream.write(rel.encode())
    assert grid.names() == ["a", "b"]
    assert grid.child("a").files() == ["deep/y.parquet", "x.json"]
    assert grid.child("a").read_bytes("deep/y.parquet") == b"a/deep/y.parquet"
    if where == "s3":
        assert "endpoint_override=" in grid.child("a").uri  # the query (endpoint) is kept
    grid.child("a").delete()
    grid.child("missing").delete()  # nothing there: nothing to do
    assert grid.names() == ["b"] and grid.files() == ["b/z.json"]
