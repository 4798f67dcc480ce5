import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from grid_helpers import DATASETS, GRID, RESUMABLE, several, synthetic

from popray.training.cells import MAX_TRIALS, Cell, plan_cells, shard_size, trial_specs
from popray.training.folds import split
from popray.training.tune import run_grid

HELPER = Path(__file__).with_name("grid_helpers.py")


def _finished(trials):
    return dict(
        zip(
            zip(*(trials[c].to_pylist() for c in ("model", "k", "seed", "fold")), strict=True),
            trials["finished_at"].to_pylist(),
            strict=True,
        )
    )


def test_every_item_is_predicted_once_per_seed_in_its_own_fold(ray_session, tmp_path):
    cfg = GRID.model_copy(update={"seeds": [0, 1]})
    result = run_grid(tmp_path, DATASETS, cfg, "test")
    cells = [Cell(m, k, ("profile",)) for m in cfg.models for k in (2, 3)]
    assert result.trials.num_rows == len(trial_specs(cfg, cells)) == 24
    rows = result.predictions.to_pylist()
    for model in cfg.models:
        for k, ds in DATASETS.items():
            for seed in cfg.seeds:
                mine = [r for r in rows if (r["model"], r["k"], r["seed"]) == (model, k, seed)]
                own = ds.images.ids if model == "image" else ds.videos.ids
                assert sorted(r["media_id"] for r in mine) == sorted(own)  # each exactly once
                folds = split(ds, model, seed, cfg.folds)
                assert all(r["media_id"] in folds[r["fold"]].val for r in mine)
                y = dict(zip(own, (ds.images.y if model == "image" else ds.videos.y), strict=True))
                assert all(r["label"] == y[r["media_id"]] for r in mine)
                assert all(np.isclose(sum(r["proba"]), 1, atol=1e-5) for r in mine)
                assert all(r["pred"] == int(np.argmax(r["proba"])) for r in mine)
    # the classes are learnable: better than chance everywhere
    acc = result.trials["val_accuracy"].to_numpy()
    assert acc.mean() > 0.7
    # a second run on the same data trains nothing and returns the same trials
    again = run_grid(tmp_path, DATASETS, cfg, "test")
    assert again.resumed and again.reused == 24
    assert _finished(again.trials) == _finished(result.trials)
    # other items (or other labels or bytes) make a different grid
    changed = {2: synthetic(2, n_images=48), 3: DATASETS[3]}
    assert run_grid(tmp_path, changed, cfg, "test").experiment != result.experiment


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["INT", "KILL"])
def test_an_interrupted_grid_resumes_without_redoing_finished_trials(ray_session, tmp_path, sig):
    """A real interruption: the grid's driver process signals itself after 4 trials
    (SIGINT = Ctrl-C, SIGKILL = a crash); the same call then resumes."""
    run = subprocess.run(
        [sys.executable, str(HELPER), str(tmp_path), "4", sig],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (tmp_path / "interrupted").exists(), run.stdout + run.stderr
    assert run.returncode != 0  # it did not finish
    cells = [Cell(m, k, ("profile",)) for m in RESUMABLE.models for k in (2, 3)]
    total = len(trial_specs(RESUMABLE, cells))
    resumed_at = time.time()
    result = run_grid(tmp_path, DATASETS, RESUMABLE, "test")
    assert result.resumed and 4 <= result.reused < total
    assert result.trials.num_rows == total
    times = [t.timestamp() for t in result.trials["finished_at"].to_pylist()]
    # every trial that had finished was reused (its result kept), none trained again,
    # and the rest were trained now
    # (after SIGKILL a worker of the killed driver may still finish the trial it was
    # training, just after resumed_at: its folder is then reused, not trained again)
    late = sum(t >= resumed_at for t in times) - (total - result.reused)
    assert late in (0, 1) if sig == "KILL" else late == 0
    assert sum(t < resumed_at for t in times) == result.reused - late


def test_profiles_train_apart_in_shared_trials(ray_session, tmp_path):
    """3 profiles, 2 per Tune trial: each profile has its own folds and its own model."""
    data = {2: several(2, profiles=3)}
    cfg = GRID.model_copy(update={"models": ["image"], "seeds": [0], "profiles_per_trial": 2})
    result = run_grid(tmp_path, data, cfg, "test")
    trials = result.trials.to_pylist()
    assert len({t["trial"] for t in trials}) == 3 * 2  # folds x shards of (2, 1) profiles
    assert len(trials) == 3 * 3  # a row per profile and fold
    for profile in ("prof0", "prof1", "prof2"):
        own = data[2].for_profile(profile)
        rows = [r for r in result.predictions.to_pylist() if r["profile_id"] == profile]
        assert sorted(r["media_id"] for r in rows) == sorted(own.images.ids)
        folds = split(own, "image", 0, cfg.folds)  # the profile's own folds
        assert all(r["media_id"] in folds[r["fold"]].val for r in rows)
        assert {t["n_train"] + t["n_val"] for t in trials if t["profile_id"] == profile} == {
            len(own.images.ids)
        }


def test_many_profiles_keep_the_number_of_trials_bounded():
    cells = [Cell(m, k, tuple(f"p{i}" for i in range(1000))) for m in "ab" for k in (2, 3)]
    cfg = GRID.model_copy(update={"seeds": [0, 1, 2], "folds": 5})
    specs = trial_specs(cfg, cells)
    assert len(specs) <= MAX_TRIALS and shard_size(cfg, cells) == 125
    covered = {(s.model, s.k, s.seed, s.fold, p) for s in specs for p in s.profiles}
    assert len(covered) == 4 * 1000 * 15  # every profile in every cell, seed and fold once
    assert len({s.name for s in specs}) == len(specs)
    one = trial_specs(cfg, [Cell("a", 2, ("p0",))])
    assert [s.profiles for s in one] == [("p0",)] * 15  # one profile: the paper's grid


def test_cells_without_enough_data_are_skipped_with_the_reason():
    data = {2: synthetic(2, n_images=45, n_videos=4), 3: synthetic(3, n_images=8)}
    cells, skipped = plan_cells(data, GRID)  # 3 folds: each class needs 3 items
    assert cells == [Cell("image", 2, ("profile",)), Cell("video_to_image", 3, ("profile",))]
    assert skipped[0] == (
        "image k=3: image class counts [3, 3, 2] cannot fill 3 stratified folds "
        "(every class needs 3) (scheme por_rolling)"
    )
    assert skipped[1].startswith("video_to_image k=2: video class counts [2, 2] cannot fill")
    assert len(skipped) == 2
    # one class only (a threshold no post reaches) is not a 2-class problem
    one = synthetic(2)
    one.images.y = np.zeros_like(one.images.y)
    cells, skipped = plan_cells({2: one}, GRID)
    assert cells == [Cell("video_to_image", 2, ("profile",))]
    assert skipped == [
        "image k=2: image class counts [45, 0] cannot fill 3 stratified folds "
        "(every class needs 3) (scheme por_rolling)"
    ]


def test_popray_train_on_the_sample_writes_queryable_tables(embedded, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from popray.cli import app
    from popray.config import DedupConfig, LabelConfig
    from popray.dedup import run_dedup
    from popray.io import store
    from popray.labels import run_label

    out = tmp_path / "out"
    shutil.copytree(embedded[1], out)
    run_label(out, LabelConfig())
    run_dedup(out, DedupConfig(), "efficientnet_lite0")
    args = ["train", "--out", str(out), "--model", "image", "--seed", "0", "--epochs", "3"]
    args += ["--protocol", "stratified_kfold"]  # the paper's folds alone
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "[10/10] image k=" in result.output  # one progress line per trial
    table = result.output[result.output.index("stratified 5-fold") :].splitlines()
    assert table[3].startswith("image ")  # the metrics table, paper layout
    con = store.connect(out)
    n = con.sql("SELECT count(*) FROM trials WHERE model = 'image'").fetchall()[0][0]
    per_item = con.sql(
        "SELECT k, count(*), count(DISTINCT media_id) FROM predictions GROUP BY k ORDER BY k"
    ).fetchall()
    models = con.sql("SELECT model, k, path FROM models ORDER BY k").fetchall()
    protocols = con.sql("SELECT DISTINCT protocol FROM metrics").fetchall()
    con.close()
    assert n == 10 and per_item[0][1] == per_item[0][2]  # each item once (one seed)
    assert protocols == [("stratified_kfold",)]
    assert [(m, k) for m, k, _ in models] == [("image", 2), ("image", 3)]
    assert all((out / path / "model.pt").exists() for _, _, path in models)


def test_the_grid_learns_the_configured_scheme_and_says_which(trained, tmp_path):
    """Any label scheme trains end to end; its tables sit beside the paper's scheme's,
    and cells a scheme cannot fill are skipped with the reason."""
    import shutil

    from popray.config import GridConfig, LabelConfig, TrainConfig
    from popray.errors import NothingToTrain
    from popray.io import store
    from popray.train import run_train

    out = tmp_path / "out"
    shutil.copytree(trained, out)
    cfg = GridConfig(models=["image"], seeds=[0], train=TrainConfig(epochs=2))
    lines = []
    labels = LabelConfig(scheme="likes_moving_average")
    report = run_train(out, cfg, labels, "efficientnet_lite0", lines.append)
    assert any("k=3: no item has a class of scheme likes_moving_average" in x for x in lines)
    # one row for the profile and one pooling every profile (here the same one)
    assert report.metrics["scheme"].to_pylist() == ["likes_moving_average"] * 2
    assert report.metrics["profile_id"].to_pylist() == [None, "sample_brand"]
    assert report.metrics["paper_accuracy"].to_pylist() == [None] * 2  # not the paper's labels
    # its ranking columns, recomputed from the tables: rho of the expected class against
    # the scheme's rank_score (likes minus the moving average), by scipy
    from scipy.stats import spearmanr

    own = report.metrics.to_pylist()[1]
    score = {
        r["media_id"]: r["rank_score"]
        for r in store.read_table(out, "labels").to_pylist()
        if (r["scheme"], r["k"]) == ("likes_moving_average", 2)
    }
    scored = report.grid.predictions.to_pylist()  # one seed: each item validated once
    expected = [r["proba"][1] for r in scored]  # Σ p·c for k = 2
    rho = spearmanr(np.round(expected, 6), [score[r["media_id"]] for r in scored]).statistic
    assert own["spearman_mean"] == pytest.approx(rho)
    assert own["recent_spearman"] is not None and 0 <= own["top20_precision_mean"] <= 1
    metrics = store.read_table(out, "metrics")
    assert set(metrics["scheme"].to_pylist()) == {"por_rolling", "likes_moving_average"}
    models = store.read_table(out, "models").to_pylist()
    assert {(m["scheme"], m["k"]) for m in models} >= {
        ("por_rolling", 2),
        ("por_rolling", 3),
        ("likes_moving_average", 2),
    }
    assert all((out / m["path"] / "model.pt").exists() for m in models)
    # validated items are exactly those the scheme gives a class
    classed = {
        r["media_id"]
        for r in store.read_table(out, "labels").to_pylist()
        if (r["scheme"], r["k"], r["media_type"]) == ("likes_moving_average", 2, "image")
        and r["class"] is not None
    }
    predicted = store.read_table(out, "predictions").to_pylist()
    mine = {r["media_id"] for r in predicted if r["scheme"] == "likes_moving_average"}
    assert mine and mine <= classed
    # a threshold no post reaches leaves one class: nothing to train, and why
    with pytest.raises(NothingToTrain, match="class counts"):
        run_train(out, cfg, LabelConfig(scheme="ratio_threshold"), "efficientnet_lite0")


@pytest.mark.slow
def test_the_ray_train_engine_writes_the_rows_that_in_process_trials_write(ray_session, tmp_path):
    """Engine `ray_train`: each trial is a one-worker TorchTrainer whose worker builds and
    writes the trial's rows of `trials` and `predictions` itself; they are the rows an
    in-process trial writes (same data, seeds and folds), but for the engine."""
    cfg = GRID.model_copy(
        update={"models": ["image"], "seeds": [0], "folds": 2, "max_concurrent": 1}
    )
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 5})})
    data = {2: DATASETS[2]}
    here = run_grid(tmp_path / "in_process", data, cfg, "test")
    there = run_grid(
        tmp_path / "ray_train", data, cfg.model_copy(update={"engine": "ray_train"}), "test"
    )
    assert set(there.trials["engine"].to_pylist()) == {"ray_train"}
    assert there.trials.num_rows == here.trials.num_rows == 2
    same = ["model", "k", "seed", "fold", "n_train", "n_val", "unit", "trial", "grid"]
    assert there.trials.select(same).equals(here.trials.select(same))
    keys = ["media_id", "fold", "label", "model", "k", "seed", "scheme", "backbone"]
    order = [("media_id", "ascending")]
    a, b = (r.predictions.sort_by(order) for r in (here, there))
    assert b.select(keys).equals(a.select(keys))
    proba = [np.array(t["proba"].to_pylist()) for t in (a, b)]
    assert np.allclose(*proba, atol=1e-4)  # the same training, in another process
