"""Several profiles in one export: labels, dedup, folds, models and metrics per profile.

The embeddings come from a randomly initialised small backbone (mobilenetv3_small_050,
1024-d, not 1280): fast, and it proves the width flows from the backbone to the models.
"""

from __future__ import annotations

import pytest

from popray.config import DedupConfig, EmbedConfig, GridConfig, LabelConfig, TrainConfig
from popray.io import store
from popray.training.train_plan import SKIPPED_FILE, SKIPPED_SHOWN, echo_skipped

BACKBONE = "mobilenetv3_small_050"
WIDTH = 1024


@pytest.fixture(scope="module")
def many(ray_session, tmp_path_factory):
    from popray.dedup import run_dedup
    from popray.embed import run_embed
    from popray.ingest import run_ingest
    from popray.labels import run_label
    from popray.tools.sample import generate_many, profile_specs
    from popray.train import run_train

    root = tmp_path_factory.mktemp("many")
    truth = generate_many(root / "input", profile_specs(3, seed=1, posts=30))
    out = root / "out"
    run_ingest(root / "input", out)
    labels = LabelConfig(k=[2], scheme="por_global")  # median split within each profile
    run_label(out, labels)
    run_embed(out, EmbedConfig(backbone=BACKBONE, weights="random", views=1, device="cpu"))
    run_dedup(out, DedupConfig(threshold=1e-6), BACKBONE)  # random net: all close
    grid = GridConfig(models=["image", "video_to_image"], seeds=[0, 1], train=TrainConfig(epochs=2))
    lines: list[str] = []
    report = run_train(out, grid, labels, BACKBONE, lines.append)
    return out, truth, report, lines


def test_every_profile_gets_its_own_labels_folds_and_models(many):
    out, truth, _, lines = many
    profiles = sorted(truth["profiles"])
    media = store.read_table(out, "media").to_pylist()
    assert sorted({m["profile_id"] for m in media}) == profiles
    # a profile whose few videos cannot fill 5 stratified folds skips its video model,
    # with the profile named; the others still train
    skipped = [x for x in lines if x.startswith("skipped profile ") and "walk_forward" not in x]
    assert skipped and all("video_to_image k=2" in x for x in skipped)
    # OUT keeps every reason, and this run (under 20) printed them all
    kept = (out / SKIPPED_FILE).read_text().splitlines()
    assert [f"skipped {x}" for x in kept] == [x for x in lines if x.startswith("skipped ")]
    folds = "SELECT * FROM {} WHERE protocol = 'stratified_kfold'"
    trials = store.query(out, folds.format("trials")).to_pylist()
    predictions = store.query(out, folds.format("predictions")).to_pylist()
    owner = {m["media_id"]: m["profile_id"] for m in media}
    images = {
        p: {
            r["media_id"]
            for r in store.read_table(out, "labels").to_pylist()
            if r["profile_id"] == p and r["media_type"] == "image" and r["scheme"] == "por_global"
        }
        for p in profiles
    }
    embedded = set(store.read_table(out, "embeddings_image")["media_id"].to_pylist())
    removed = {
        d["media_id"] for d in store.read_table(out, "duplicates").to_pylist() if not d["kept"]
    }
    for profile in profiles:
        mine = [t for t in trials if t["profile_id"] == profile and t["model"] == "image"]
        assert len(mine) == 2 * 5  # seeds x folds, each trained on this profile alone
        own = (images[profile] & embedded) - removed  # corrupt files never embedded
        assert {t["n_train"] + t["n_val"] for t in mine} == {len(own)}
        for seed in (0, 1):
            validated = [
                r["media_id"]
                for r in predictions
                if (r["profile_id"], r["model"], r["seed"]) == (profile, "image", seed)
            ]
            assert sorted(validated) == sorted(own)  # each of its items once, no other's
    assert all(owner[r["media_id"]] == r["profile_id"] for r in predictions)


def test_metrics_per_profile_and_pooled(many):
    out, truth, *_ = many
    rows = [
        r
        for r in store.read_table(out, "metrics").to_pylist()
        if r["model"] == "image" and r["protocol"] == "stratified_kfold"
    ]
    pooled = [r for r in rows if r["profile_id"] is None]
    own = [r for r in rows if r["profile_id"] is not None]
    assert len(pooled) == 1 and sorted(r["profile_id"] for r in own) == sorted(truth["profiles"])
    assert pooled[0]["n_items"] == sum(r["n_items"] for r in own)
    weighted = sum(r["accuracy_mean"] * r["n_items"] for r in own) / pooled[0]["n_items"]
    assert pooled[0]["accuracy_mean"] == pytest.approx(weighted)


def test_final_models_per_profile_follow_the_backbone_width(many):
    import json

    from popray.training.loading import load_dataset

    out, truth, *_ = many
    assert load_dataset(out, BACKBONE, 2).images.embeddings.shape[-1] == WIDTH
    models = store.read_table(out, "models").to_pylist()
    images = [m for m in models if m["model"] == "image"]
    assert sorted(m["profile_id"] for m in images) == sorted(truth["profiles"])
    for m in models:
        meta = json.loads((out / m["path"] / "model.json").read_text())
        assert (meta["profile_id"], meta["width"], meta["backbone"]) == (
            m["profile_id"],
            WIDTH,
            BACKBONE,
        )


def test_duplicates_never_span_profiles(many):
    out, *_ = many
    owner = {m["media_id"]: m["profile_id"] for m in store.read_table(out, "media").to_pylist()}
    groups: dict[str, set] = {}
    for d in store.read_table(out, "duplicates").to_pylist():
        groups.setdefault(d["group_id"], set()).add(owner[d["media_id"]])
    assert all(len(p) == 1 for p in groups.values())


def test_predict_and_explain_need_a_profile_when_there_are_several(many, tmp_path):
    import shutil

    from popray.explain import run_explain
    from popray.predict import run_predict

    out, truth, *_ = many
    profiles = sorted(truth["profiles"])
    candidates = tmp_path / "candidates"
    candidates.mkdir()
    for m in store.read_table(out, "media").to_pylist()[:40]:
        if m["media_type"] == "image" and len(list(candidates.iterdir())) < 2:
            shutil.copy(out.parent / "input" / m["path"], candidates)
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    with pytest.raises(ValueError, match=r"several profile_ids .*--profile"):
        run_predict(copy, [candidates], k=2, weights="random")
    table = run_predict(copy, [candidates], k=2, weights="random", profile=profiles[1])
    assert set(table["profile_id"].to_pylist()) == {profiles[1]}
    assert table["rank"].to_pylist() == [1, 2]
    # explain without a profile: samples of every profile, each with its own model
    explained = run_explain(copy, k=2, per_class=1, weights="random").to_pylist()
    paths = {r["model_path"] for r in explained}
    assert len(paths) == len(profiles) and all(r["error"] is None for r in explained)

    # again: a profile whose heatmaps are all there is taken over, the one that lost a
    # heatmap is explained again, and nothing else is rewritten
    lost = next(r for r in explained if r["profile_id"] == profiles[0])
    (copy / lost["path"]).unlink()
    others = [r["path"] for r in explained if r["profile_id"] != profiles[0]]
    kept = {path: (copy / path).stat().st_mtime_ns for path in others}
    lines: list[str] = []
    again = run_explain(copy, k=2, per_class=1, weights="random", echo=lines.append).to_pylist()
    assert lines == [f"explain: profiles: 1 recomputed, {len(profiles) - 1} reused"]
    assert (copy / lost["path"]).exists()
    # bit for bit, probabilities included: the profile explained alone (one actor) gets
    # what it got beside the others (one actor each)
    assert again == explained
    assert all((copy / path).stat().st_mtime_ns == mtime for path, mtime in kept.items())
    # other picks: every profile is explained again, and heatmaps no row lists are gone
    fewer = run_explain(copy, k=2, per_class=1, weights="random", extremes=0, echo=lines.append)
    assert lines[-1] == f"explain: profiles: {len(profiles)} recomputed, 0 reused"
    assert {p.name for p in (copy / "explain" / "k2").iterdir()} == {
        p.rsplit("/", 1)[1] for p in fewer["path"].to_pylist()
    }
    assert fewer.num_rows == sum(r["picked"] == "class_sample" for r in explained)


def test_walk_forward_windows_per_profile(many):
    """Beside the folds, each profile's last windows: trained on its own posts before the
    cut, scored on its own posts inside the window, each item once per (model, seed)."""
    from datetime import timedelta

    from popray.config import WalkForwardConfig

    out, truth, report, _ = many
    wf = WalkForwardConfig()
    horizon = timedelta(days=wf.horizon_days)
    published = {
        p["post_id"]: p["published_at"] for p in store.read_table(out, "posts").to_pylist()
    }
    media = {m["media_id"]: m for m in store.read_table(out, "media").to_pylist()}
    preds = [r for r in report.grid.predictions.to_pylist() if r["protocol"] == "walk_forward"]
    assert {r["profile_id"] for r in preds} == set(truth["profiles"])
    for r in preds:
        item = media[r["media_id"]]
        assert item["profile_id"] == r["profile_id"]
        assert r["cut_at"] <= published[item["post_id"]] < r["cut_at"] + horizon
    keys = [(r["model"], r["seed"], r["media_id"]) for r in preds]
    assert len(keys) == len(set(keys))
    trials = [t for t in report.grid.trials.to_pylist() if t["protocol"] == "walk_forward"]
    for t in trials:
        assert 0 <= t["fold"] < wf.cuts and t["window_end"] - t["cut_at"] == horizon
        assert t["cut_at"].hour == t["cut_at"].minute == 0  # windows run midnight to midnight
        own_before = [
            m
            for m in media.values()
            if m["profile_id"] == t["profile_id"]
            and m["media_type"] == "image"
            and published[m["post_id"]] < t["cut_at"]
        ]
        if t["model"] == "image":
            assert wf.min_train_per_class * 2 <= t["n_train"] <= len(own_before)
    rows = store.read_table(out, "metrics").to_pylist()
    assert {r["protocol"] for r in rows} == {"stratified_kfold", "walk_forward"}
    assert all(r["paper_accuracy"] is None for r in rows if r["protocol"] == "walk_forward")


def test_past_twenty_skipped_cells_are_counted_not_printed(tmp_path):
    reasons = [f"profile p{i}: video k=2: too few videos" for i in range(SKIPPED_SHOWN + 5)]
    lines: list[str] = []
    echo_skipped(tmp_path, reasons, lines.append)
    assert lines[:-1] == [f"skipped {r}" for r in reasons[:SKIPPED_SHOWN]]
    assert lines[-1].startswith(f"skipped 5 more cells: all {SKIPPED_SHOWN + 5} reasons in ")
    assert (tmp_path / SKIPPED_FILE).read_text().splitlines() == reasons
    few: list[str] = []
    echo_skipped(tmp_path, reasons[:3], few.append)
    assert few == [f"skipped {r}" for r in reasons[:3]]
