import shutil

import numpy as np
import pytest

from popray import store
from popray.config import DedupConfig, LabelConfig
from popray.dataset import load_dataset
from popray.dedup import run_dedup
from popray.labels import run_label


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
    assert removed and not removed & set(data.image_ids + data.video_ids)
    assert not set(tiny_truth["corrupt_media"]) & set(data.image_ids + data.video_ids)
    assert data.image_views.shape == (len(data.image_ids), 3, 1280)  # view 0 + 2 views
    assert data.video_frames.shape == (len(data.video_ids), 15, 1280)
    assert np.allclose(data.video_pooled, data.video_frames.max(axis=1))
    labels = {
        (r["media_id"]): r["class"]
        for r in store.read_table(ready, "labels").to_pylist()
        if r["k"] == 3 and r["scheme"] == "por_rolling"
    }
    assert [labels[m] for m in data.image_ids] == data.image_y.tolist()
    assert set(data.image_y.tolist()) <= {0, 1, 2}


def test_other_schemes_and_missing_stages(ready, tmp_path):
    rolling = load_dataset(ready, "efficientnet_lite0", k=2)
    global_ = load_dataset(ready, "efficientnet_lite0", k=2, scheme="por_global")
    assert rolling.image_ids == global_.image_ids and global_.scheme == "por_global"
    labels = store.read_table(ready, "labels").to_pylist()
    glob = {r["media_id"]: r["class"] for r in labels if (r["k"], r["scheme"]) == (2, "por_global")}
    assert [glob[m] for m in global_.video_ids] == global_.video_y.tolist()
    # a scheme that leaves items without a class (each type's first post has no
    # previous posts to compare with): those items are not trained on
    moving = load_dataset(ready, "efficientnet_lite0", k=2, scheme="likes_moving_average")
    unclassed = {
        r["media_id"]
        for r in labels
        if r["scheme"] == "likes_moving_average" and r["class"] is None
    }
    assert unclassed & set(rolling.image_ids + rolling.video_ids)
    assert set(moving.image_ids + moving.video_ids) == (
        set(rolling.image_ids + rolling.video_ids) - unclassed
    )
    with pytest.raises(FileNotFoundError, match="popray label"):
        load_dataset(tmp_path, "efficientnet_lite0", k=2)
