"""popray on a real two-node cluster with no shared file system (tests/multinode.py): a
head with no CPUs and a worker node that sees neither the export, nor the work folder,
nor /tmp, nor ~/.cache of the driver's machine; object storage from moto on 127.0.0.1."""

import json
import shutil

import multinode
import pytest

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
