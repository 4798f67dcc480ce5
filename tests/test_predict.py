import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from popray.cli import app
from popray.io import store
from popray.predict import candidate_files, run_predict


@pytest.fixture
def candidates(tmp_path, tiny_input, tiny_truth):
    folder = tmp_path / "candidates"
    (folder / "sub").mkdir(parents=True)
    media = sorted((tiny_input / "media").glob("*.jpg"))
    good = [m for m in media if m.stem not in tiny_truth["corrupt_media"] and not m.is_symlink()]
    shutil.copy(good[0], folder / "a.jpg")
    shutil.copy(good[1], folder / "sub" / "b.jpg")
    Image.new("RGB", (300, 200), (10, 200, 30)).save(folder / "c.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "notes.txt").write_text("not media")
    (folder / ".hidden.jpg").write_bytes(b"")
    video = next((tiny_input / "media").glob("*.mp4"))
    shutil.copy(video, folder / "clip.mp4")
    return folder


def test_candidates_are_ranked_best_first_and_bad_files_say_why(trained_copy, candidates):
    assert ".hidden.jpg" not in {p.name for p in candidate_files([candidates])}
    table = run_predict(trained_copy, [candidates], k=2)
    rows = table.to_pylist()
    by_name = {r["file"].rsplit("/", 1)[1]: r for r in rows}
    assert set(by_name) == {"a.jpg", "b.jpg", "c.png", "broken.jpg", "notes.txt", "clip.mp4"}
    ranked = [r for r in rows if r["rank"] is not None]
    assert [r["rank"] for r in ranked] == [1, 2, 3]
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    for r in ranked:
        assert r["model"] == "image" and r["k"] == 2 and r["error"] is None
        assert r["score"] == pytest.approx(r["proba"][1])  # k = 2: P(popular)
        assert (trained_copy / r["gradcam"]).is_file()
    assert by_name["broken.jpg"]["error"].startswith("cannot decode image")
    assert "not an image" in by_name["notes.txt"]["error"]
    assert "no video model" in by_name["clip.mp4"]["error"]  # only `image` was trained
    con = store.connect(trained_copy)
    assert con.sql("SELECT count(*) FROM predictions_new WHERE rank IS NOT NULL").fetchall() == [
        (3,)
    ]
    con.close()


def test_predict_cli_prints_the_ranking(trained_copy, candidates):
    result = CliRunner().invoke(
        app,
        ["predict", "--out", str(trained_copy), "--media", str(candidates / "a.jpg"), "--k", "2"],
    )
    assert result.exit_code == 0, result.output
    assert "   1 " in result.output and "Grad-CAM:" in result.output
    missing = CliRunner().invoke(
        app, ["predict", "--out", str(trained_copy), "--media", "x", "--k", "5"]
    )
    assert missing.exit_code == 2 and "no saved image model for k=5" in missing.output


def test_the_gradient_boosted_baseline_runs_through_grid_final_models_and_predict(
    trained_copy, candidates
):
    """`gbdt` / `gbdt_video` in grid.models: trials on the same folds (and walk-forward
    windows) as the paper's models, metrics with the ranking columns, final models saved,
    and predict scoring with them (no Grad-CAM: trees have no gradients)."""
    from popray.config import GridConfig, LabelConfig, TrainConfig
    from popray.train import run_train

    cfg = GridConfig(  # 2 folds: the tiny sample has too few videos for 5
        models=["gbdt", "gbdt_video"], seeds=[0], folds=2, train=TrainConfig(epochs=2)
    )
    report = run_train(trained_copy, cfg, LabelConfig(), "efficientnet_lite0")
    trials = store.read_table(trained_copy, "trials").to_pylist()
    mine = [t for t in trials if t["model"] in ("gbdt", "gbdt_video")]
    assert {t["model"] for t in mine} == {"gbdt", "gbdt_video"}
    assert all(t["best_epoch"] == 1 for t in mine)
    assert {t["protocol"] for t in mine} == {"stratified_kfold", "walk_forward"}
    folds = {
        (t["k"], t["fold"])
        for t in mine
        if (t["model"], t["protocol"]) == ("gbdt", "stratified_kfold")
    }
    assert len(folds) == 2 * 2  # k 2 and 3, 2 folds each, one seed
    rows = [r for r in report.metrics.to_pylist() if r["model"] == "gbdt"]
    assert rows and all(0 <= r["accuracy_mean"] <= 1 for r in rows)
    assert all(r["top20_precision_mean"] is not None for r in rows)
    models = store.read_table(trained_copy, "models").to_pylist()
    assert {m["model"] for m in models} >= {"gbdt", "gbdt_video"}
    assert all((trained_copy / m["path"] / "model.pt").is_file() for m in models)
    table = run_predict(trained_copy, [candidates], k=2).to_pylist()
    ranked = {r["file"].rsplit("/", 1)[1]: r for r in table if r["rank"] is not None}
    assert {"a.jpg", "b.jpg", "c.png", "clip.mp4"} <= set(ranked)
    assert ranked["a.jpg"]["model"] == "gbdt" and ranked["a.jpg"]["gradcam"] is None
    assert ranked["clip.mp4"]["model"] == "gbdt_video"
    assert ranked["a.jpg"]["score"] == pytest.approx(ranked["a.jpg"]["proba"][1])


def test_every_model_scores_a_new_item_as_its_folds_validated_one():
    """Training and serving build a model's input in one place (`models.model_input`): a
    decoded candidate (a video with its thumbnail's embedding after the 15 frames) gives
    each model the same input as the same item in the validation folds."""
    import numpy as np

    from popray.predict import _model_input
    from popray.training.dataset import Items, TrainingSet
    from popray.training.folds import scoring_data
    from popray.training.models import REGISTRY

    rng = np.random.default_rng(0)
    views, frames = rng.normal(size=(4, 3, 8)), rng.normal(size=(5, 15, 8))
    thumbs = rng.normal(size=(5, 8)) + 9.0  # larger than any frame: a max would show it
    ids = [f"i{n}" for n in range(4)], [f"v{n}" for n in range(5)]
    y = np.array([0, 1, 0, 1]), np.array([0, 1, 0, 1, 1])
    images = Items(ids[0], ids[0], y[0], views)
    ds = TrainingSet(images, Items(ids[1], ids[1], y[1], frames, frames.max(axis=1)))
    for model, spec in REGISTRY.items():
        _, x, _ = scoring_data(ds, model)
        for i in range(len(x)):
            decoded = views[i] if spec.validate_on == "image" else np.vstack([frames[i], thumbs[i]])
            assert np.array_equal(_model_input(model, decoded), x[i]), (model, i)
