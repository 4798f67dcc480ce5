"""Whole-run publication: one symlink switch per run; a failed run publishes nothing."""

import pytest
from typer.testing import CliRunner

from popray.cli import app
from popray.io import store
from popray.io.publish import ENTRIES, current

runner = CliRunner()


def _run(cfg):
    return runner.invoke(app, ["run", "--config", str(cfg)])


@pytest.mark.slow
def test_runs_publish_atomically_and_a_failed_run_leaves_the_last_one(
    ray_session, tiny_input, tmp_path, monkeypatch, s3_uri
):
    """Locally (one symlink switch) and on object storage (`publish_to`: CURRENT last)."""
    from popray.io import remote

    uri = s3_uri("runs-test")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"input_dir: {tiny_input}\nout_dir: out\nlabel:\n  k: [2]\nembed:\n  views: 1\n"
        "grid:\n  models: [image]\n  seeds: [0]\n  train:\n    epochs: 2\n"
        f"publish_to: '{uri}'\n"
    )
    out = tmp_path / "out"
    first = _run(cfg)
    assert first.exit_code == 0, first.output
    a = current(out)
    for name in ENTRIES:  # the names users open go through `current`
        assert (out / name).is_symlink() and (out / name).resolve() == a / name
    folds = "SELECT count(*) AS n FROM trials WHERE protocol = 'stratified_kfold'"
    assert store.query(out, folds)["n"][0].as_py() == 5
    labels_a = store.read_table(out, "labels")
    # the same run on object storage, queryable there
    assert f"published run {a.name} to" in first.output
    assert remote.published(uri)["run"] == a.name
    there = runner.invoke(app, ["sql", "--out", uri, folds])
    here = runner.invoke(app, ["sql", "--out", str(out), folds])
    assert there.exit_code == 0 and there.output == here.output and "5" in there.output

    # a run that fails half-way (after labels and embeddings, in training) publishes nothing
    import popray.train

    def boom(*args, **kwargs):
        raise RuntimeError("training machine lost")

    monkeypatch.setattr(popray.train, "run_train", boom)
    failed = _run(cfg)
    assert failed.exit_code != 0 and "training machine lost" in repr(failed.exception)
    assert current(out) == a and store.read_table(out, "labels").equals(labels_a)
    assert remote.published(uri)["run"] == a.name  # nothing uploaded
    assert len(list((out / "runs").iterdir())) == 2  # the published run + the unfinished one
    monkeypatch.undo()

    # the next run publishes; the unfinished one is removed; the last published one kept
    second = _run(cfg)
    assert second.exit_code == 0, second.output
    b = current(out)
    assert b != a and sorted((out / "runs").iterdir()) == sorted([a, b])
    # embeddings were hard-linked from the previous run, not recomputed
    assert "nothing new to embed" in second.output
    third = _run(cfg)
    assert third.exit_code == 0
    assert sorted((out / "runs").iterdir()) == sorted([b, current(out)])  # a pruned
    assert remote.published(uri)["run"] == current(out).name

    # a fresh machine (empty work folder) starts from the run published on object storage
    fresh = runner.invoke(app, ["run", "--config", str(cfg), "--out", str(tmp_path / "fresh")])
    assert fresh.exit_code == 0, fresh.output
    assert f"started from run {current(out).name} published at" in fresh.output
    assert "nothing new to embed" in fresh.output
