import shutil
from operator import attrgetter
from pathlib import Path

import numpy as np
import pytest

from popray.config import DedupConfig, LabelConfig
from popray.dedup import run_dedup
from popray.io import store
from popray.labels import run_label
from popray.training.loading import load_dataset, load_datasets

ARRAYS = ("images.embeddings", "videos.embeddings", "videos.pooled")  # a TrainingSet's


@pytest.fixture(scope="module")
def ready(embedded, tmp_path_factory):
    out = tmp_path_factory.mktemp("ready") / "out"
    shutil.copytree(embedded[1], out)
    run_label(out, LabelConfig())
    run_dedup(out, DedupConfig(), "efficientnet_lite0")
    return out


def test_dataset_holds_labelled_embedded_kept_media(ready, tiny_truth):
    data = load_dataset(ready, "efficientnet_lite0", k=3)
    removed = {
        d["media_id"] for d in store.read_table(ready, "duplicates").to_pylist() if not d["kept"]
    }
    assert removed and not removed & set(data.images.ids + data.videos.ids)
    assert not set(tiny_truth["corrupt_media"]) & set(data.images.ids + data.videos.ids)
    assert data.images.embeddings.shape == (len(data.images.ids), 3, 1280)  # view 0 + 2 views
    assert data.videos.embeddings.shape == (len(data.videos.ids), 15, 1280)
    assert np.allclose(data.videos.pooled, data.videos.embeddings.max(axis=1))
    labels = {
        (r["media_id"]): r["class"]
        for r in store.read_table(ready, "labels").to_pylist()
        if r["k"] == 3 and r["scheme"] == "por_rolling"
    }
    assert [labels[m] for m in data.images.ids] == data.images.y.tolist()
    assert set(data.images.y.tolist()) <= {0, 1, 2}


def test_other_schemes_and_missing_stages(ready, tmp_path):
    rolling = load_dataset(ready, "efficientnet_lite0", k=2)
    global_ = load_dataset(ready, "efficientnet_lite0", k=2, scheme="por_global")
    assert rolling.images.ids == global_.images.ids and global_.scheme == "por_global"
    labels = store.read_table(ready, "labels").to_pylist()
    glob = {r["media_id"]: r["class"] for r in labels if (r["k"], r["scheme"]) == (2, "por_global")}
    assert [glob[m] for m in global_.videos.ids] == global_.videos.y.tolist()
    # a scheme that leaves items without a class (each type's first post has no
    # previous posts to compare with): those items are not trained on
    moving = load_dataset(ready, "efficientnet_lite0", k=2, scheme="likes_moving_average")
    unclassed = {
        r["media_id"]
        for r in labels
        if r["scheme"] == "likes_moving_average" and r["class"] is None
    }
    assert unclassed & set(rolling.images.ids + rolling.videos.ids)
    assert set(moving.images.ids + moving.videos.ids) == (
        set(rolling.images.ids + rolling.videos.ids) - unclassed
    )
    with pytest.raises(FileNotFoundError, match="popray label"):
        load_dataset(tmp_path, "efficientnet_lite0", k=2)


@pytest.mark.parametrize("context", [False, True])
def test_a_remote_dataset_keeps_its_arrays_in_the_object_store_and_gathers_the_same(
    ready, tmp_path, monkeypatch, context
):
    """load_dataset(remote=True) has tasks read the embeddings and keep them in the object
    store (Rows), a few row groups a chunk: row groups of 5 rows and chunks of at least 7
    here, so a profile spans several chunks. What it gathers (one profile, a subset kept
    remote, the whole) equals the arrays loaded locally."""
    import popray.training.embedding_read as reader
    from popray.training.object_rows import Rows

    out = tmp_path / "out"
    shutil.copytree(ready, out)
    for name in ("embeddings_image", "embeddings_video"):
        table = store.read_table(out, name)
        everything = [("efficientnet_lite0.parquet", np.arange(table.num_rows))]
        _restore(store.table_dir(out, name), name, table, everything, row_group_size=5)
    monkeypatch.setattr(reader, "BATCH_ROWS", 7)
    local = load_dataset(out, "efficientnet_lite0", k=2, context=context)
    remote = load_dataset(out, "efficientnet_lite0", k=2, context=context, remote=True)
    assert isinstance(remote.images.embeddings, Rows) and len(remote.images.embeddings.refs) > 2
    assert remote.remote and not local.remote
    assert remote.images.embeddings.shape == local.images.embeddings.shape
    assert remote.videos.embeddings.shape == local.videos.embeddings.shape
    assert remote.images.ids == local.images.ids and remote.videos.ids == local.videos.ids
    every = remote.local()
    for name in ARRAYS:
        assert np.array_equal(attrgetter(name)(every), attrgetter(name)(local)), name
    rows = np.arange(1, len(local.images.ids), 3)
    subset = remote.images.embeddings.select(rows)
    assert isinstance(subset, Rows) and len(subset) == len(rows)
    assert np.array_equal(subset.take(np.array([0, 2])), local.images.embeddings[rows[[0, 2]]])
    profile = local.profiles()[0]
    kept = remote.for_profile(profile, remote=True)
    assert kept.remote and np.array_equal(kept.local().images.embeddings, local.images.embeddings)


@pytest.mark.parametrize("remote", [False, True])
def test_several_ks_read_each_embedding_row_once_and_equal_one_k_at_a_time(ready, remote):
    from popray.training.loading import load_datasets

    both = load_datasets(ready, "efficientnet_lite0", [2, 3, 2], remote=remote)
    assert sorted(both) == [2, 3]
    for k, data in both.items():
        alone = load_dataset(ready, "efficientnet_lite0", k)
        assert data.images.ids == alone.images.ids and data.videos.ids == alone.videos.ids
        assert np.array_equal(data.images.y, alone.images.y)
        whole = data.local()
        for name in ARRAYS:
            assert np.array_equal(attrgetter(name)(whole), attrgetter(name)(alone)), (k, name)
    if remote:  # the ks share the chunks read
        assert both[2].images.embeddings.refs is both[3].images.embeddings.refs


def test_several_ks_are_read_in_one_pass(ready, monkeypatch):
    import popray.training.embedding_read as reader

    read: list[int] = []
    pick = reader._pick

    def counting(path, groups, rows, *rest):
        read.append(len(rows))
        return pick(path, groups, rows, *rest)

    monkeypatch.setattr(reader, "_pick", counting)

    def rows_read(ks: list[int]) -> int:
        read.clear()
        load_datasets(ready, "efficientnet_lite0", ks)
        return sum(read)

    two, three, both = rows_read([2]), rows_read([3]), rows_read([2, 3])
    assert max(two, three) <= both < two + three  # the rows both ks train on, read once


def _restore(folder, name: str, table, parts: list, row_group_size: int) -> None:
    """Replace the part files of one embeddings table by `parts` (file name -> rows)."""
    import pyarrow.parquet as pq

    for old in folder.glob("*.parquet"):
        old.unlink()
    for file, rows in parts:
        pq.write_table(table.take(rows), folder / file, row_group_size=row_group_size)


@pytest.mark.parametrize("remote", [False, True])
def test_the_dataset_does_not_depend_on_how_the_embedding_rows_are_stored(
    ready, tmp_path, monkeypatch, ray_session, remote
):
    """The loader reads keys from DuckDB and streams the embeddings from the files in
    file order; an image's views, and the items, may lie anywhere. Rows shuffled over
    two part files with small row groups, beside a third file of another backbone's
    rows (copies, to be ignored), give the same items, classes and arrays."""
    import pyarrow as pa
    import pyarrow.compute as pc

    import popray.training.embedding_read as reader

    expected = load_dataset(ready, "efficientnet_lite0", k=2)
    out = tmp_path / "out"
    shutil.copytree(ready, out)
    rng = np.random.default_rng(3)
    for name in ("embeddings_image", "embeddings_video"):
        folder = store.table_dir(out, name)
        table = store.read_table(out, name)
        field = table.schema.field("backbone")
        other = table.set_column(
            table.schema.get_field_index("backbone"),
            field,
            pa.array(["other"] * table.num_rows, field.type),
        )
        both = pa.concat_tables([table, other])
        rows = rng.permutation(table.num_rows)
        half = len(rows) // 2
        fake = np.arange(table.num_rows, both.num_rows)
        parts = [("a.parquet", rows[:half]), ("m.parquet", fake), ("z.parquet", rows[half:])]
        _restore(folder, name, both, parts, row_group_size=5)
        assert pc.all(pc.equal(store.read_table(out, name)["backbone"], "other")).as_py() is False
    monkeypatch.setattr(reader, "BATCH_ROWS", 7)
    got = load_dataset(out, "efficientnet_lite0", k=2, remote=remote)
    assert got.remote == remote
    assert got.images.ids == expected.images.ids and got.videos.ids == expected.videos.ids
    assert got.images.sha256 == expected.images.sha256
    assert np.array_equal(got.images.y, expected.images.y)
    assert np.array_equal(got.videos.y, expected.videos.y)
    for name in ARRAYS:
        assert attrgetter(name)(got).shape == attrgetter(name)(expected).shape, name
        assert np.array_equal(attrgetter(name)(got.local()), attrgetter(name)(expected)), name
    if remote:  # a gather in any order returns the rows in that order
        rows = np.array([5, 0, 3, 3])
        assert np.array_equal(got.images.embeddings.take(rows), expected.images.embeddings[rows])


def test_views_of_unequal_count_are_refused(ready, tmp_path):
    """An image whose stored views are fewer than the others' is an error, not a ragged
    or silently padded array."""
    out = tmp_path / "out"
    shutil.copytree(ready, out)
    folder = store.table_dir(out, "embeddings_image")
    table = store.read_table(out, "embeddings_image")
    keep = np.flatnonzero(np.arange(table.num_rows) != 1)  # drop one view of one image
    _restore(folder, "embeddings_image", table, [("efficientnet_lite0.parquet", keep)], 100)
    with pytest.raises(ValueError, match="unequal length"):
        load_dataset(out, "efficientnet_lite0", k=2)


def test_under_ray_client_the_driver_reads_and_puts_the_rows(ready, monkeypatch, ray_session):
    """Under Ray Client the tasks would run on the cluster, away from this machine's
    files: the driver reads the rows itself and puts them in the object store, with the
    same result."""
    from ray.util.client import ray as client

    import popray.training.embedding_read as reader

    expected = load_dataset(ready, "efficientnet_lite0", k=2)
    monkeypatch.setattr(client, "is_connected", lambda: True)
    monkeypatch.setattr(reader, "_pick", _refuse_in_task(reader._pick))
    got = load_dataset(ready, "efficientnet_lite0", k=2, remote=True)
    assert got.remote
    for name in ARRAYS:
        assert np.array_equal(attrgetter(name)(got.local()), attrgetter(name)(expected)), name


def test_on_a_cluster_of_several_nodes_the_tasks_get_the_files_bytes(
    ready, tmp_path, monkeypatch, ray_session
):
    """With nodes besides the driver's, the read tasks may run where OUT's files are not:
    the driver sends each part file's bytes (once per file, however many chunks read it),
    the tasks never open a path, and the arrays are the same."""
    import popray.training.embedding_read as reader

    out = tmp_path / "out"
    shutil.copytree(ready, out)
    for name in ("embeddings_image", "embeddings_video"):  # row groups of 5 rows
        table = store.read_table(out, name)
        everything = [("efficientnet_lite0.parquet", np.arange(table.num_rows))]
        _restore(store.table_dir(out, name), name, table, everything, row_group_size=5)
    expected = load_dataset(out, "efficientnet_lite0", k=2)
    monkeypatch.setattr(reader, "_ships", lambda: True)
    monkeypatch.setattr(reader, "BATCH_ROWS", 7)  # several chunks per file
    monkeypatch.setattr(reader, "_pick", _bytes_only(reader._pick))
    read = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or real(self))
    got = load_dataset(out, "efficientnet_lite0", k=2, remote=True)
    assert got.remote and len(got.images.embeddings.refs) > 2
    for name in ARRAYS:
        assert np.array_equal(attrgetter(name)(got.local()), attrgetter(name)(expected)), name
    parts = [p for p in read if p.suffix == ".parquet"]
    assert parts and len(parts) == len(set(parts))  # each file sent once


def _bytes_only(pick):
    """`pick`, failing if it is handed a file's path instead of its bytes."""

    def from_bytes(path, *args, **kwargs):
        assert isinstance(path, np.ndarray), f"a task was handed the path {path}"
        return pick(path, *args, **kwargs)

    return from_bytes


def _refuse_in_task(pick):
    """`pick`, failing if it runs inside a Ray task or actor (not in this driver)."""

    def in_driver_only(*args, **kwargs):
        import ray

        assert ray.get_runtime_context().worker.mode == ray.SCRIPT_MODE, "ran in a task"
        return pick(*args, **kwargs)

    return in_driver_only


def test_only_the_profiles_asked_for_are_read(ready, ray_session):
    """The train stage first learns which profiles it trains, then reads only their
    embedding rows: the others' items are there (ids, classes, shapes), their rows are
    not, and touching them is an error, never a silent zero."""
    from popray.training.loading import load_keys
    from popray.training.object_rows import NotRead

    keys = load_keys(ready, "efficientnet_lite0", [2, 3])
    expected = keys.datasets()
    (profile,) = expected[2].profiles()
    unread = keys.datasets(remote=True, profiles=())
    for k, ds in unread.items():
        assert (
            ds.images.embeddings.refs == [] and ds.videos.embeddings.refs == []
        )  # no read task ran
        assert ds.images.ids == expected[k].images.ids and ds.videos.ids == expected[k].videos.ids
        assert ds.images.embeddings.shape == expected[k].images.embeddings.shape
        assert ds.videos.embeddings.shape == expected[k].videos.embeddings.shape
        assert not ds.complete and ds.read_ids() == []
        with pytest.raises(NotRead, match="were not read"):
            ds.for_profile(profile).local()
    mine = keys.datasets(remote=True, profiles={profile, "someone else"})
    for k, ds in mine.items():
        assert ds.complete and sorted(ds.read_ids()) == sorted(ds.images.ids + ds.videos.ids)
        whole = ds.local()
        for name in ARRAYS:
            assert np.array_equal(attrgetter(name)(whole), attrgetter(name)(expected[k])), name
    with pytest.raises(ValueError, match="remote"):
        keys.datasets(remote=False, profiles=())
