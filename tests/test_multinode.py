"""popray on a real two-node cluster with no shared file system (tests/multinode.py): a
head with no CPUs and a worker node that sees neither the export, nor the work folder,
nor /tmp, nor ~/.cache of the driver's machine; object storage from moto on 127.0.0.1."""

import json
import shutil

import multinode
import numpy as np
import pytest

from popray import store

pytestmark = pytest.mark.slow
WHY_NOT = multinode.available()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_uri):
    if WHY_NOT:
        pytest.skip(f"no two-node cluster here: {WHY_NOT}")
    root = tmp_path_factory.mktemp("multinode")
    export, work = root / "export", root / "work"
    export.mkdir()
    work.mkdir()
    with multinode.two_nodes(hidden=[export, work]) as c:
        yield c, root, export, work


def test_the_worker_node_sees_none_of_the_drivers_files(cluster, tmp_path):
    """The isolation itself: a task pinned to the worker does not see a sentinel file that
    the driver's machine has in the export, the work folder, /tmp or ~/.cache."""
    c, root, export, work = cluster
    cache = multinode.Path.home() / ".cache" / f"popray-sentinel-{tmp_path.name}"
    sentinels = [export / "sentinel", work / "sentinel", root / "sentinel", cache]
    for s in sentinels:
        s.write_text("the driver's machine")
    try:
        src = multinode.source_tree(tmp_path / "src")
        job = c.submit(
            src,
            "python",
            "tests/cluster_probe.py",
            multinode.WORKER_RESOURCE,
            *map(str, sentinels),
            timeout=300,
        )
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        line = next(x for x in job.stdout.splitlines() if x.startswith("PROBE "))
        probe = json.loads(line.removeprefix("PROBE "))
        assert probe["driver"]["node"] != probe["worker"]["node"]
        assert all(probe["driver"]["exists"].values()), probe  # the head sees them
        assert not any(probe["worker"]["exists"].values()), probe  # the worker: none
    finally:
        for s in sentinels:
            s.unlink(missing_ok=True)
        shutil.rmtree(tmp_path / "src", ignore_errors=True)


def _job(c, src, *args, timeout=900):
    job = c.submit(src, "python", "-m", *args, timeout=timeout)
    return job.returncode, job.stdout + job.stderr


def test_an_export_on_s3_is_decoded_and_embedded_on_the_worker(
    cluster, tmp_path, tiny_input, s3_uri, embedded
):
    """Ingest and embed submitted with `ray job submit`: the drivers run on the head (no
    CPUs), every hashing and decode task on the worker, which reads the objects itself.
    Every media item that is not corrupt is embedded, none is "not found", and the
    embeddings equal those of a single-node run of the same export. A plain local export
    is refused up front, naming the fix, instead of quarantining every item."""
    c, _, export, work = cluster
    src = multinode.source_tree(tmp_path / "src")
    shutil.copytree(tiny_input, export, symlinks=True, dirs_exist_ok=True)

    local_out = work / "local"
    rc, log = _job(c, src, "jobs.ingest", "--input", str(export), "--out", str(local_out))
    assert rc == 0, log[-3000:]
    rc, log = _job(c, src, "jobs.embed", "--out", str(local_out), "--views", "2")
    assert rc != 0 and "nodes that do not see it" in log and "s3://" in log, log[-3000:]
    assert not store.has_table(local_out, "embeddings_image")  # nothing half-done

    uri = s3_uri("exports/multinode")
    multinode.upload(tiny_input, uri)
    out = work / "s3"
    rc, log = _job(c, src, "jobs.ingest", "--input", uri, "--out", str(out))
    assert rc == 0, log[-3000:]
    rc, log = _job(c, src, "jobs.embed", "--out", str(out), "--views", "2")
    assert rc == 0, log[-3000:]

    truth = json.loads((tiny_input / "sample_truth.json").read_text())
    media = store.read_table(out, "media").to_pylist()
    quarantined = {
        q["media_id"]: q["reason"]
        for q in store.read_table(out, "quarantine").to_pylist()
        if q["stage"] == "embed"
    }
    assert not [r for r in quarantined.values() if "not found" in r], quarantined
    assert set(quarantined) == set(truth["corrupt_media"]) & {m["media_id"] for m in media}
    _, single, _ = embedded  # the same export embedded on one node, same options
    for name, key in (
        ("embeddings_image", ["media_id", "view"]),
        ("embeddings_video", ["media_id"]),
    ):
        here = store.read_table(single, name).sort_by([(k, "ascending") for k in key])
        there = store.read_table(out, name).sort_by([(k, "ascending") for k in key])
        assert here.select(key).equals(there.select(key)), name
        col = "embedding" if name == "embeddings_image" else "pooled"
        a = np.stack(here[col].to_numpy(zero_copy_only=False))
        b = np.stack(there[col].to_numpy(zero_copy_only=False))
        assert np.allclose(a, b, atol=1e-4), f"{name}: max diff {np.abs(a - b).max()}"
