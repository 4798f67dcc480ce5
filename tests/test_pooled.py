"""The cross-profile model (popray/training/pooled.py): profile-grouped folds, the history
comparison, the final model saved as profile "*", and predict's fallback to it."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from grid_helpers import WIDTH, several, synthetic

from popray.config import GridConfig, LabelConfig, TrainConfig
from popray.training.dataset import TrainingSet
from popray.training.model_files import POOLED
from popray.training.pooled import PROFILE_GROUPED, run_pooled
from popray.training.pooled_folds import HISTORIES, capped, history_folds, profile_folds


def _owner(ds: TrainingSet) -> dict[str, str]:
    return dict(
        zip(ds.images.ids + ds.videos.ids, ds.images.profile + ds.videos.profile, strict=True)
    )


@pytest.mark.parametrize("model", ["image", "video", "video_to_image"])
def test_profile_folds_never_put_one_profile_in_training_and_validation(model):
    ds = several(2, 6)
    owner = _owner(ds)
    folds = profile_folds(ds, model, 5)
    validated = [m for f in folds for m in f.val]
    own = ds.images.ids if model == "image" else ds.videos.ids
    assert sorted(validated) == sorted(own)  # every item validated exactly once
    for fold in folds:
        seen = {owner[m] for m in fold.train + fold.extra_train}
        held_out = {owner[m] for m in fold.val}
        assert held_out and not seen & held_out
        assert seen | held_out == set(ds.profiles())
        assert bool(fold.extra_train) == (model == "video_to_image")


def _times(ds: TrainingSet) -> dict[str, datetime]:
    """Publication times: within each profile, items in reverse id order (so that the
    latest are the lowest ids: time order is not id order)."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return {
        m: start + timedelta(days=1000 - i)
        for ids in (ds.images.ids, ds.videos.ids)
        for i, m in enumerate(ids)
    }


def test_history_folds_test_on_the_latest_fifth_and_train_on_what_came_just_before():
    ds = several(2, 5)
    times = _times(ds)
    curve = history_folds(ds, "image", "prof1", times)
    mine = sorted((m for m in ds.images.ids if m.startswith("prof1-")), key=times.get)
    test = mine[-9:]  # 45 images: a fifth is 9
    assert [h for h, _ in curve] == [10, 20, 36]
    for h, fold in curve:
        assert list(fold.val) == test
        assert list(fold.train) == mine[-9 - h : -9]  # the h items just before the test
        assert max(times[m] for m in fold.train) < min(times[m] for m in fold.val)
    videos = history_folds(ds, "video", "prof0", times)  # 30 videos: the latest 6 tested
    assert [(h, len(f.val)) for h, f in videos] == [(10, 6), (20, 6), (24, 6)]
    few = synthetic(2, n_images=14)  # 5 tested, 9 before: fewer than HISTORIES[0]
    assert history_folds(few, "image", "profile", _times(few)) == []
    assert HISTORIES[0] == 10


def _shared(k: int, profiles: int, seed: int = 0) -> TrainingSet:
    """Profiles whose classes sit around the same centres: what one profile's items teach
    carries over to another's (as a planted visual effect does)."""
    ds = several(k, profiles)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (k, WIDTH))
    views = centres[ds.images.y][:, None] + rng.normal(0, 1, ds.images.embeddings.shape)
    frames = centres[ds.videos.y][:, None] + rng.normal(0, 1, ds.videos.embeddings.shape)
    ds.images.embeddings = views.astype(np.float32)
    ds.videos.embeddings = frames.astype(np.float32)
    ds.videos.pooled = frames.max(axis=1).astype(np.float32)
    return ds


CFG = GridConfig(pooled=["image", "video"], folds=5, train=TrainConfig(epochs=20))


def test_the_pooled_model_scores_unseen_profiles_and_is_saved_as_profile_star(
    ray_session, tmp_path
):
    ds = _shared(2, 5)
    times = _times(ds)
    targets = {
        (2, m): (float(y) + 0.01 * i, None)
        for ids, ys in ((ds.images.ids, ds.images.y), (ds.videos.ids, ds.videos.y))
        for i, (m, y) in enumerate(zip(ids, ys, strict=True))
    }
    lines = []
    result = run_pooled(tmp_path / "models", {2: ds}, CFG, "net", times, targets, lines.append)
    assert not result.skipped
    owner = _owner(ds)
    for table in result.predictions:
        rows = table.to_pylist()
        model = rows[0]["model"]
        assert {r["protocol"] for r in rows} == {PROFILE_GROUPED}
        own = ds.images.ids if model == "image" else ds.videos.ids
        assert sorted(r["media_id"] for r in rows) == sorted(own)  # each item once
        assert all(r["profile_id"] == owner[r["media_id"]] for r in rows)
        # each fold held out whole profiles: a profile's items are all in one fold
        folds = {}
        for r in rows:
            folds.setdefault(r["profile_id"], set()).add(r["fold"])
        assert all(len(f) == 1 for f in folds.values())
        # classes that carry over between profiles are learnt on the others
        accuracy = np.mean([r["label"] == r["pred"] for r in rows])
        assert accuracy > 0.8, (model, accuracy)
    curve = result.cross_profile.to_pylist()
    assert {(r["model"], r["profile_id"]) for r in curve} == {
        (m, p) for m in ("image", "video") for p in ds.profiles()
    }
    image = [r for r in curve if (r["model"], r["profile_id"]) == ("image", "prof0")]
    assert [(r["history"], r["all_history"]) for r in image] == [
        (10, False),
        (20, False),
        (36, True),
    ]
    assert all(r["n_test"] == 9 and r["pooled_spearman"] is not None for r in image)
    models = {r.model: r for r in result.models}
    assert set(models) == {"image", "video"}
    assert {r.profile_id for r in models.values()} == {POOLED}
    assert models["image"].n_images == len(ds.images.ids)
    assert (tmp_path / models["image"].path / "model.pt").exists()
    # the same items and settings again: the saved final models are reused
    again = run_pooled(tmp_path / "models", {2: ds}, CFG, "net", times, targets)
    assert [m.created_at for m in again.models] == [m.created_at for m in result.models]


def _profile_of(ids) -> list[str]:
    return [m.split("-")[0] for m in ids]


def test_capped_spreads_the_limit_evenly_over_profiles_and_moves_only_a_changed_profile():
    ids = [f"p{p}-m{i}" for p, n in ((0, 5), (1, 40), (2, 40)) for i in range(n)]
    kept = capped(ids, _profile_of(ids), 45)
    assert Counter(_profile_of(kept)) == {"p0": 5, "p1": 20, "p2": 20}  # 5 + 2 x 20
    assert list(kept) == [m for m in ids if m in set(kept)]  # in their order
    assert capped(ids, _profile_of(ids), None) == tuple(ids)
    assert capped(ids, _profile_of(ids), len(ids)) == tuple(ids)
    # three new items on p1: p1 still keeps 20, the other profiles' picks do not move
    more = ids + [f"p1-new{i}" for i in range(3)]
    again = capped(more, _profile_of(more), 45)
    assert Counter(_profile_of(again)) == {"p0": 5, "p1": 20, "p2": 20}
    assert {m for m in again if not m.startswith("p1")} == {
        m for m in kept if not m.startswith("p1")
    }
    assert capped(more, _profile_of(more), 45) == again  # the same pick every run
    # more profiles than the limit: exactly `limit` items
    many = [f"q{i}-m0" for i in range(300)]
    assert len(capped(many, _profile_of(many), 100)) == 100


def test_a_capped_pool_trains_on_the_cap_and_still_scores_every_item(ray_session, tmp_path):
    ds = _shared(2, 5)  # 45 images per profile
    cfg = CFG.model_copy(update={"pooled": ["image"], "pooled_max_items": 100})
    result = run_pooled(tmp_path / "models", {2: ds}, cfg, "net", _times(ds), {})
    (table,) = result.predictions
    assert sorted(table["media_id"].to_pylist()) == sorted(ds.images.ids)  # all scored
    (model,) = result.models
    assert model.n_images == 100
    import pyarrow.parquet as pq

    items = pq.read_table(tmp_path / model.path / "items.parquet")  # path: from OUT
    assert Counter(_profile_of(items["media_id"].to_pylist())) == dict.fromkeys(ds.profiles(), 20)
    uncapped = run_pooled(tmp_path / "all", {2: ds}, CFG, "net", _times(ds), {})
    assert next(m for m in uncapped.models if m.model == "image").n_images == 225


def test_fewer_than_five_profiles_get_a_message_not_an_error(tmp_path):
    ds = several(2, 4)
    result = run_pooled(tmp_path, {2: ds}, CFG, "net", _times(ds), {})
    assert result.predictions == [] and result.models == []
    assert result.cross_profile.num_rows == 0
    assert result.skipped == [
        "cross-profile model: skipped, it needs at least 5 profiles with labelled items "
        "(this run has 4)"
    ]
    off = run_pooled(tmp_path, {2: ds}, CFG.model_copy(update={"pooled": []}), "n", {}, {})
    assert off.skipped == []


@pytest.fixture(scope="module")
def five(ray_session, tmp_path_factory):
    """Five small generated profiles, embedded by a random small backbone, trained with
    one seed: the grid's own models, then the cross-profile ones."""
    from popray.config import DedupConfig, EmbedConfig
    from popray.dedup import run_dedup
    from popray.embed import run_embed
    from popray.ingest import run_ingest
    from popray.labels import run_label
    from popray.tools.sample import generate_many, profile_specs
    from popray.train import run_train

    root = tmp_path_factory.mktemp("five")
    specs = [  # few, short videos: the models here are image models
        replace(s, video_share=0.05, max_video_s=3.0) for s in profile_specs(5, seed=3, posts=24)
    ]
    generate_many(root / "input", specs)
    out = root / "out"
    run_ingest(root / "input", out)
    run_label(out, FIVE_LABELS)
    embed = EmbedConfig(backbone=FIVE_BACKBONE, weights="random", views=0, device="cpu")
    run_embed(out, embed)
    run_dedup(out, DedupConfig(threshold=1e-6), FIVE_BACKBONE)
    lines: list[str] = []
    report = run_train(out, FIVE_GRID, FIVE_LABELS, FIVE_BACKBONE, lines.append)
    return root, out, report, lines


FIVE_GRID = GridConfig(
    models=["image"],
    pooled=["image"],
    seeds=[0],
    protocols=["stratified_kfold"],
    train=TrainConfig(epochs=2),
)
FIVE_BACKBONE = "mobilenetv3_small_050"
FIVE_LABELS = LabelConfig(k=[2], scheme="por_global")


def test_train_adds_the_pooled_rows_to_predictions_metrics_and_models(five):
    from popray.io import store

    _, out, report, lines = five
    assert any(line.startswith("cross-profile image k=2: 5 profiles") for line in lines)
    grouped = store.query(
        out, "SELECT * FROM predictions WHERE protocol = 'profile_grouped'"
    ).to_pylist()
    from popray.training.loading import load_dataset

    ds = load_dataset(out, "mobilenetv3_small_050", 2, "por_global")  # what the grid trains on
    expected = dict(zip(ds.images.ids, ds.images.profile, strict=True))
    assert len(set(ds.images.profile)) == 5
    assert sorted(r["media_id"] for r in grouped) == sorted(expected)  # each once
    assert all(expected[r["media_id"]] == r["profile_id"] for r in grouped)
    metrics = store.query(
        out, "SELECT * FROM metrics WHERE protocol = 'profile_grouped'"
    ).to_pylist()
    pooled_row = next(r for r in metrics if r["profile_id"] is None)
    assert pooled_row["n_items"] == len(expected)
    assert pooled_row["spearman_mean"] is not None
    assert pooled_row["recent_accuracy"] is not None  # the same baselines as the grid's
    assert len(metrics) == 1 + 5
    models = store.read_table(out, "models").to_pylist()
    assert [m["model"] for m in models if m["profile_id"] == POOLED] == ["image"]
    assert store.query(out, "SELECT count(*) AS n FROM cross_profile")["n"][0].as_py() > 0
    text = report.text()
    assert "cross-profile model, scored only on profiles it never saw" in text
    assert "own model trained on its h latest items" in text


def test_predict_falls_back_to_the_pooled_model_for_a_profile_without_one(five):
    from typer.testing import CliRunner

    from popray.cli import app
    from popray.io import store

    root, out, _, _ = five
    candidate = sorted((root / "input" / "media").glob("*.jpg"))[0]
    args = ["predict", "--out", str(out), "--media", str(candidate), "--weights", "random"]
    result = CliRunner().invoke(app, [*args, "--profile", "newcomer"])
    assert result.exit_code == 0, result.output
    assert "profile 'newcomer' has no model of its own: ranked by the cross-profile" in (
        result.output
    )
    (row,) = store.read_table(out, "predictions_new").to_pylist()
    assert (row["profile_id"], row["for_profile"], row["rank"]) == (POOLED, "newcomer", 1)
    own = CliRunner().invoke(app, [*args, "--profile", "brand000"])
    assert own.exit_code == 0, own.output
    assert "cross-profile" not in own.output
    (row,) = store.read_table(out, "predictions_new").to_pylist()
    assert (row["profile_id"], row["for_profile"]) == ("brand000", "brand000")


def _pooled_rows(out) -> tuple:
    """The cross-profile rows of a run: its profile-grouped predictions, its models of
    profile `*` and its `cross_profile` rows."""
    from popray.io import store

    grouped = store.query(
        out, "SELECT * FROM predictions WHERE protocol = 'profile_grouped' ORDER BY media_id"
    ).to_pylist()
    models = [m for m in store.read_table(out, "models").to_pylist() if m["profile_id"] == POOLED]
    return grouped, models, store.read_table(out, "cross_profile").to_pylist()


def test_a_rerun_keeps_the_cross_profile_models_until_enough_items_changed(five, tmp_path):
    """popray/training/pooled_keep.py: an unchanged rerun keeps the published cross-profile models
    and their rows (nothing trained); once a profile holding more than 5% of the items
    changed, they are trained again; a higher limit keeps them; so does age, up to its
    limit."""
    import shutil

    from popray.io import store
    from popray.train import run_train
    from popray.training import pooled_keep
    from popray.training.loading import load_datasets
    from popray.training.units import unit_keys

    _, out, _, _ = five
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    part = f"por_global-{FIVE_BACKBONE}"
    record = store.read_table(copy, "pooled_units", part).to_pylist()
    datasets = load_datasets(copy, FIVE_BACKBONE, [2], "por_global")
    assert sum(r["n_items"] for r in record) == len(datasets[2].images.ids + datasets[2].videos.ids)
    assert len({r["profile_id"] for r in record}) == 5
    before = _pooled_rows(copy)
    assert before[0] and before[1] and before[2]

    def train(grid: GridConfig) -> list[str]:
        lines: list[str] = []
        run_train(copy, grid, FIVE_LABELS, FIVE_BACKBONE, lines.append)
        return lines

    lines = train(FIVE_GRID)
    (line,) = [line for line in lines if line.startswith("cross-profile models:")]
    assert line.startswith("cross-profile models: kept (") and "0.0% of the items" in line
    assert not any(line.startswith("cross-profile image k=2") for line in lines)
    assert _pooled_rows(copy) == before  # the same rows, the models' creation time included
    assert store.read_table(copy, "pooled_units", part).to_pylist() == record

    # one profile's unit differs from the one the models were trained on (as after a new
    # post): its items' share of all the items is over 5%
    profile = record[0]["profile_id"]
    share = sum(r["n_items"] for r in record if r["profile_id"] == profile) / sum(
        r["n_items"] for r in record
    )
    assert share > 0.05

    def tamper() -> None:
        rows = [r | {"unit": "changed"} if r["profile_id"] == profile else r for r in record]
        store.write_table(copy, "pooled_units", pa.Table.from_pylist(rows), part=part)

    tamper()
    lines = train(FIVE_GRID.model_copy(update={"pooled_refresh_share": share + 0.01}))
    assert any(line.startswith("cross-profile models: kept (") for line in lines)
    assert f"{share:.1%} of the items changed" in "\n".join(lines)
    lines = train(FIVE_GRID)
    assert any(line.startswith("cross-profile models: trained again (") for line in lines)
    assert any(line.startswith("cross-profile image k=2: 5 profiles") for line in lines)
    again = store.read_table(copy, "pooled_units", part).to_pylist()
    assert {r["unit"] for r in again} == {r["unit"] for r in record}  # this run's units
    assert min(r["trained_at"] for r in again) > max(r["trained_at"] for r in record)
    # (the final model itself is the saved one: the items are in fact the same, and a
    # model saved from the same items and settings is reused by its snapshot)
    assert _pooled_rows(copy)[1] == before[1]

    # age: kept for pooled_refresh_days, then trained again
    units = unit_keys(FIVE_GRID, datasets, FIVE_BACKBONE)
    trained_at = again[0]["trained_at"]
    for days, keep in ((6.9, True), (7.1, False)):
        now = trained_at + timedelta(days=days)
        decision = pooled_keep.decide(copy, part, FIVE_GRID, FIVE_BACKBONE, datasets, units, now)
        assert decision.keep is keep, decision.line
    changed = FIVE_GRID.model_copy(update={"pooled_max_items": 1000})
    decision = pooled_keep.decide(copy, part, changed, FIVE_BACKBONE, datasets, units)
    assert not decision.keep and "options changed" in decision.line


def test_the_train_stage_reads_every_profile_when_the_pooled_models_would_train():
    """The train stage reads the embeddings before the cross-profile models run, so it
    must count profiles as they do: every profile with labelled items, not only those
    with cells of their own (with 14 posts, 164 of 200 sample profiles had none)."""
    from popray.training.pooled import MIN_PROFILES, profiles_of, trains_on_every_profile

    grid = GridConfig()
    enough, short = {2: several(2, MIN_PROFILES)}, {2: several(2, MIN_PROFILES - 1)}
    assert len(profiles_of(enough)) == MIN_PROFILES
    assert trains_on_every_profile(grid, enough)
    assert not trains_on_every_profile(grid, short)
    assert not trains_on_every_profile(grid.model_copy(update={"pooled": []}), enough)
