import pyarrow as pa
import pytest
import torch
from grid_helpers import DATASETS

from popray.config import GridConfig, TrainConfig
from popray.io.tables import table_schema
from popray.training.evaluate import compute_metrics
from popray.training.final import train_final
from popray.training.fit import fit_all
from popray.training.folds import all_data
from popray.training.model_files import load_final, prune


def _grid_tables(models, best_epochs):
    trials, preds = [], []
    cell = {"scheme": "por_rolling", "backbone": "b", "features": "embedding"}
    cell |= {"profile_id": "profile", "protocol": "stratified_kfold", "seed": 0}
    finished = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()
    for model in models:
        for k in DATASETS:
            for fold, epoch in enumerate(best_epochs):
                trial = {"model": model, "k": k, "fold": fold, "best_epoch": epoch}
                trial |= {"val_accuracy": 0.5, "n_train": 1, "n_extra": 0, "n_val": 1}
                trial |= {"epochs": 15, "train_s": 0.1, "finished_at": finished}
                trials.append(cell | trial | {"engine": "in_process", "trial": "t"})
            pred = {"model": model, "k": k, "fold": 0, "media_id": "x", "label": 0, "pred": 0}
            preds.append(cell | pred | {"proba": [1.0] + [0.0] * (k - 1)})
    return (
        pa.Table.from_pylist(trials, schema=table_schema("trials")),
        compute_metrics(pa.Table.from_pylist(preds, schema=table_schema("predictions"))),
    )


@pytest.mark.parametrize("model", ["image", "video", "image_to_video", "video_to_image"])
def test_final_models_train_on_everything_save_and_load(ray_session, tmp_path, model):
    cfg = GridConfig(models=[model], train=TrainConfig(epochs=15))
    trials, metrics = _grid_tables([model], [20, 30, 45])
    # walk-forward trials beside them pick their epochs on other data: not used here
    forward = trials.to_pylist()
    forward = [t | {"protocol": "walk_forward", "best_epoch": 2} for t in forward]
    trials = pa.concat_tables(
        [trials, pa.Table.from_pylist(forward, schema=table_schema("trials"))]
    )
    table, reused = train_final(tmp_path, DATASETS, cfg, trials, metrics, "b")
    assert reused == 0
    assert table.num_rows == 2 and set(table["epochs"].to_pylist()) == {30}  # median best epoch
    for row in table.to_pylist():
        ds = DATASETS[row["k"]]
        mixed = model in ("image_to_video", "video_to_image")
        assert row["n_images"] == (len(ds.images.ids) if model == "image" or mixed else 0)
        assert row["n_videos"] == (0 if model == "image" else len(ds.videos.ids))
        net, meta = load_final(tmp_path, row["path"])
        assert meta.snapshot == row["snapshot"] and meta.epochs == 30
        # the saved weights are those of a training on all the data for the median epoch
        # (a Ray task trains it on grid.cpus_per_trial threads: the same here, bit for bit)
        x, y, views = all_data(ds, model)
        threads = torch.get_num_threads()
        torch.set_num_threads(int(cfg.cpus_per_trial))
        try:
            again = fit_all(
                model, row["k"], x, y, TrainConfig(epochs=30), seed=0, train_views=views
            )
        finally:
            torch.set_num_threads(threads)
        for name, value in again.state_dict().items():
            assert torch.equal(net.state_dict()[name], value), name
    # same data, same settings: nothing is trained again
    before = {p: (tmp_path / p / "model.pt").stat().st_mtime_ns for p in table["path"].to_pylist()}
    again, reused = train_final(tmp_path, DATASETS, cfg, trials, metrics, "b")
    assert reused == table.num_rows
    assert {
        p: (tmp_path / p / "model.pt").stat().st_mtime_ns for p in again["path"].to_pylist()
    } == before
    # folders no table names are pruned
    (tmp_path / "models" / "stale-k2-0").mkdir()
    prune(tmp_path, again)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(
        p.split("/")[1] for p in again["path"].to_pylist()
    )


def test_load_final_names_a_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `popray train`"):
        load_final(tmp_path, "models/nope")
