"""popray on a real two-node cluster with no shared file system (tests/multinode.py): a
head with no CPUs and a worker node that sees neither the export, nor the work folder,
nor /tmp, nor ~/.cache of the driver's machine; object storage from moto on 127.0.0.1."""

import json
import re
import shutil
import time

import multinode
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from popray.io import remote, store
from popray.io.storage import Location

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


def _job(c, src, *args, timeout=900, env_vars=None):
    job = c.submit(src, "python", "-m", *args, timeout=timeout, env_vars=env_vars)
    return job.returncode, job.stdout + job.stderr


@pytest.fixture(scope="module")
def on_s3(cluster, tmp_path_factory, tiny_input, s3_uri):
    """The tiny export uploaded to S3, then ingested and embedded by jobs submitted to the
    cluster: (cluster, source tree, work folder on the head)."""
    c, _, _, work = cluster
    src = multinode.source_tree(tmp_path_factory.mktemp("src"))
    uri = s3_uri("exports/multinode")
    multinode.upload(tiny_input, uri)
    out = work / "s3"
    rc, log = _job(c, src, "jobs.ingest", "--input", uri, "--out", str(out))
    assert rc == 0, log[-3000:]
    args = ["jobs.embed", "--out", str(out), "--views", "2"]
    rc, log = _job(c, src, *args)  # the workers cannot write new rows to the head's disk
    assert rc != 0 and "the run's storage" in log and "--storage s3://" in log, log[-3000:]
    rc, log = _job(c, src, *args, "--storage", s3_uri("work/embed"))
    assert rc == 0, log[-3000:]
    assert Location.parse(s3_uri("work/embed")).files() == []  # staged rows: cleaned up
    return c, src, out


def test_an_export_on_s3_is_decoded_and_embedded_on_the_worker(
    cluster, on_s3, tmp_path, tiny_input, embedded, s3_uri
):
    """Ingest and embed submitted with `ray job submit`: the drivers run on the head (no
    CPUs), every hashing and decode task on the worker, which reads the objects itself.
    Every media item that is not corrupt is embedded, none is "not found", and the
    embeddings equal those of a single-node run of the same export. A plain local export
    is refused up front, naming the fix, instead of quarantining every item. A rerun
    rebuilds a part on the worker from the part's file on the head's disk."""
    _, _, export, work = cluster
    c, src, out = on_s3
    shutil.copytree(tiny_input, export, symlinks=True, dirs_exist_ok=True)

    local_out = work / "local"
    rc, log = _job(c, src, "jobs.ingest", "--input", str(export), "--out", str(local_out))
    assert rc == 0, log[-3000:]
    rc, log = _job(c, src, "jobs.embed", "--out", str(local_out), "--views", "2")
    assert rc != 0 and "nodes that do not see it" in log and "s3://" in log, log[-3000:]
    assert not store.has_table(local_out, "embeddings_image")  # nothing half-done

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

    # A part that lost an image's rows: the image is embedded again, and its part rebuilt
    # by a task on the worker (the head has no CPUs) from the part's earlier file, which
    # is on the head's disk and reaches the worker through the object store, and the new
    # rows on S3. The other parts stay as they were.
    again = work / "again"
    shutil.copytree(out, again)
    files = sorted((again / "tables" / "embeddings_image").glob("*.parquet"))
    inodes = {f.name: f.stat().st_ino for f in files}
    table = pq.read_table(files[0])
    lost = table["media_id"][0].as_py()
    pq.write_table(table.filter(pc.not_equal(table["media_id"], lost)), files[0])
    rc, log = _job(
        c, src, "jobs.embed", "--out", str(again), "--views", "2", "--storage",
        s3_uri("work/again"),
    )  # fmt: skip
    assert rc == 0, log[-3000:]
    assert re.search(r"table parts: 1 written, \d+ unchanged", log), log[-3000:]
    after = {f.name: f.stat().st_ino for f in files}
    assert [n for n in after if after[n] != inodes[n]] == [files[0].name]
    key = ["media_id", "view"]
    here = store.read_table(out, "embeddings_image").sort_by([(k, "ascending") for k in key])
    there = store.read_table(again, "embeddings_image").sort_by([(k, "ascending") for k in key])
    assert here.select(key).equals(there.select(key))
    a = np.stack(here["embedding"].to_numpy(zero_copy_only=False))
    b = np.stack(there["embedding"].to_numpy(zero_copy_only=False))
    assert np.allclose(a, b, atol=1e-4), f"max diff {np.abs(a - b).max()}"


def test_the_grid_trains_on_the_worker_and_keeps_its_state_on_s3(on_s3, s3_uri):
    """The grid submitted as a job: its trials can only run on the worker (the head has no
    CPUs), which writes each result to S3; the driver reads them from there, and nothing
    of the grid lands on the head's disk. Grid state on the head's own disk is refused up
    front. (That a fresh head reuses the trials on S3 is the killed-driver test's part.)"""
    c, src, embedded_out = on_s3
    out = embedded_out.parent / "grid"
    shutil.copytree(embedded_out, out)
    for stage in ("jobs.label", "jobs.dedup"):
        rc, log = _job(c, src, stage, "--out", str(out))
        assert rc == 0, log[-3000:]
    train = ["jobs.train", "--out", str(out), "--model", "image", "--seed", "0"]
    train += ["--epochs", "2", "--protocol", "stratified_kfold"]
    rc, log = _job(c, src, *train)
    assert rc != 0 and "the grid's storage" in log and "--storage s3://" in log, log[-3000:]

    storage = s3_uri("work/grid")
    rc, log = _job(c, src, *train, "--storage", storage)
    assert rc == 0, log[-3000:]
    trials = store.read_table(out, "trials")
    names = set(trials["trial"].to_pylist())
    assert trials.num_rows == 2 * 5 and len(names) == 10  # k 2 and 3, 5 folds, one seed
    grid = Location.parse(storage).child("grid")
    (experiment,) = [n for n in grid.names() if not n.endswith(".results")]
    results = grid.child(f"{experiment}.results")
    assert set(results.names()) == names  # every trial's result, on S3
    assert all(
        results.child(n).files() == ["metrics.json", "predictions.arrow", "trials.arrow"]
        for n in names
    )
    assert not (out / "grid").exists()  # nothing of the grid on the head's disk


def test_the_whole_job_on_a_work_folder_on_s3_survives_a_killed_driver(
    on_s3, s3_uri, trained, tmp_path
):
    """`jobs.run --out s3://...` (work_dir): the driver is SIGKILLed mid-grid (as when
    its head dies), and the run resumes on a *fresh* head (an empty scratch folder): the
    dead driver's lease keeps a second writer out until it expires, then is taken over;
    the trials that finished before the kill are reused from S3, and the published run
    equals a single-node run of the same export with the same options (`trained`)."""
    c, src, embedded_out = on_s3
    work = s3_uri("work/run")
    config = tmp_path / "run.toml"
    config.write_text(
        f'input_dir = "{s3_uri("exports/multinode")}"\n'
        f'work_dir = "{work}"\n'
        '[embed]\nviews = 2\nvideo_timeout_s = 30\ndevice = "cpu"\n'
        '[grid]\nmodels = ["image"]\nseeds = [0]\n[grid.train]\nepochs = 3\n'
    )
    ttl = 25  # long enough for the refused job below to start before it expires
    heads = [embedded_out.parent / f"head-{i}" for i in (1, 2)]  # scratch of two heads
    env = [{"POPRAY_SCRATCH": str(h), "POPRAY_LEASE_TTL_S": str(ttl)} for h in heads]
    results = Location.parse(work).child("work/grid")
    job = c.start(src, "python", "-m", "jobs.run", "--config", str(config), env_vars=env[0])
    deadline = time.monotonic() + 900
    finished: list[str] = []
    while not finished:
        assert time.monotonic() < deadline, c.logs(job)[-3000:]
        assert c.status(job) in ("PENDING", "RUNNING"), c.logs(job)[-3000:]
        time.sleep(2)
        finished = [
            f for f in results.files() if re.fullmatch(r"[^/]+\.results/[^/]+/metrics\.json", f)
        ]
    c.kill_driver(job)  # SIGKILL: no clean-up, the lease stays behind
    assert c.status(job) == "FAILED"
    assert remote.published(work) is None and "LOCK" in Location.parse(work).names()
    rc, log = _job(c, src, "jobs.run", "--config", str(config), env_vars=env[1])
    assert rc != 0 and "being written by another popray run" in log, log[-3000:]
    time.sleep(ttl + 2)  # the dead driver renews no more: its lease expires
    rc, log = _job(c, src, "jobs.run", "--config", str(config), env_vars=env[1])
    assert rc == 0, log[-4000:]
    reused = int(re.search(r"trials \((\d+) reused from an earlier run\)", log).group(1))
    assert reused >= len(finished), log[-3000:]
    assert "LOCK" not in Location.parse(work).names()  # released
    assert not [n for n in Location.parse(work).child("work").names() if "staging" in n]
    out = tmp_path / "published"
    assert remote.pull(work, out) == remote.published(work)["run"]
    assert (out / "report" / "index.html").is_file()

    def rows(where, name, key):
        return store.read_table(where, name).sort_by([(k, "ascending") for k in key])

    label_key = ["scheme", "k", "media_id"]
    assert rows(out, "labels", label_key).equals(rows(trained, "labels", label_key))
    for name, col, key in (
        ("embeddings_image", "embedding", ["media_id", "view"]),
        ("embeddings_video", "pooled", ["media_id"]),
    ):
        here, there = rows(trained, name, key), rows(out, name, key)
        assert here.select(key).equals(there.select(key)), name
        a = np.stack(here[col].to_numpy(zero_copy_only=False))
        b = np.stack(there[col].to_numpy(zero_copy_only=False))
        assert np.allclose(a, b, atol=1e-4), f"{name}: max diff {np.abs(a - b).max()}"
    trial_key = ["protocol", "model", "k", "seed", "fold", "profile_id", "cut_at"]
    here, there = rows(trained, "trials", trial_key), rows(out, "trials", trial_key)
    same = [*trial_key, "n_train", "n_val"]
    assert here.select(same).equals(there.select(same))
    acc = np.abs(here["val_accuracy"].to_numpy() - there["val_accuracy"].to_numpy())
    assert acc.max() <= 0.05, acc
    metric_key = ["scheme", "protocol", "model", "k", "profile_id"]
    assert (
        rows(out, "metrics", metric_key)
        .select(metric_key)
        .equals(rows(trained, "metrics", metric_key).select(metric_key))
    )


def test_a_worker_node_lost_mid_embed_leaves_every_item_embedded_once(cluster, on_s3, s3_uri):
    """A second worker joins; embedding is submitted, and once the cluster has staged its
    first rows that worker is SIGKILLed (its machine lost) with tasks on it. Ray retries
    its tasks and restarts its actors on the worker that is left: the job finishes, every
    item that is not corrupt is embedded exactly once (one row per media item and view),
    and the rows equal those of the undisturbed run."""
    c, src, embedded_out = on_s3
    out = embedded_out.parent / "lost"
    ingest = ["jobs.ingest", "--input", s3_uri("exports/multinode"), "--out", str(out)]
    rc, log = _job(c, src, *ingest)
    assert rc == 0, log[-3000:]
    before = c.node_ids()
    spare = c.add_worker(cpus=3)  # more CPUs than the first: it gets most of the tasks
    (spare_id,) = c.node_ids() - before
    storage = Location.parse(s3_uri("work/lost"))
    embed = ["jobs.embed", "--out", str(out), "--views", "2", "--storage", storage.uri]
    job = c.start(src, "python", "-m", *embed)
    deadline = time.monotonic() + 600
    while not [f for f in storage.files() if f.endswith(".parquet")]:
        assert time.monotonic() < deadline, c.logs(job)[-3000:]
        assert c.status(job) in ("PENDING", "RUNNING"), c.logs(job)[-3000:]
        time.sleep(0.5)
    placed = c.tasks_on(job, spare_id)
    c.kill_worker(spare)
    deadline = time.monotonic() + 900
    while c.status(job) in ("PENDING", "RUNNING"):
        assert time.monotonic() < deadline, c.logs(job)[-3000:]
        time.sleep(2)
    log = c.logs(job)
    assert placed > 0, "the lost worker had no tasks: the test proves nothing"
    assert c.status(job) == "SUCCEEDED", log[-4000:]
    deadline = time.monotonic() + 120  # the head marks a lost node dead after ~5 s
    while spare_id in c.node_ids():
        assert time.monotonic() < deadline, "the killed worker is still alive"
        time.sleep(2)
    for name, key in (
        ("embeddings_image", ["media_id", "view"]),
        ("embeddings_video", ["media_id"]),
    ):
        there = store.read_table(out, name)
        keys = there.select(key).to_pylist()
        assert len(keys) == len({tuple(k.values()) for k in keys}), f"{name}: a row twice"
        order = [(k, "ascending") for k in key]
        here = store.read_table(embedded_out, name).sort_by(order)
        assert here.select(key).equals(there.sort_by(order).select(key)), name
    assert storage.files() == []  # staged rows assembled and cleaned up
