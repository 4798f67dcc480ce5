"""Context features (popray/io/sql/context_features.sql): what they are, and that none of
them reads the item's own post's popularity or any later post."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from popray.config import LabelConfig
from popray.io import store
from popray.io.store import sql_text
from popray.labels import run_label
from popray.training.embedding_read import CONTEXT_FEATURES


def _features(out) -> dict[str, list[float]]:
    con = store.connect(out)
    try:
        sql = sql_text("context_features")
        return dict(con.sql(sql, params={"backbone": "efficientnet_lite0"}).fetchall())
    finally:
        con.close()


def _change_likes(out, post_ids: set[str], factor: int) -> None:
    """Multiply the likes of `post_ids` in the ingested posts, and label again."""
    posts = store.read_table(out, "posts")
    hit = pc.is_in(posts["post_id"], pa.array(sorted(post_ids)))
    likes = pc.if_else(hit, pc.multiply(posts["likes"], factor), posts["likes"])
    store.write_table(
        out, "posts", posts.set_column(posts.schema.get_field_index("likes"), "likes", likes)
    )
    run_label(out, LabelConfig(k=[2]))


@pytest.fixture(scope="module")
def labelled(embedded, tmp_path_factory):
    out = tmp_path_factory.mktemp("context") / "out"
    shutil.copytree(embedded[1], out)
    run_label(out, LabelConfig(k=[2]))
    return out


def test_features_are_the_posts_metadata(labelled):
    out = labelled
    features = _features(out)
    posts = {p["post_id"]: p for p in store.read_table(out, "posts").to_pylist()}
    media = store.read_table(out, "media").to_pylist()
    video = {v["media_id"]: v for v in store.read_table(out, "embeddings_video").to_pylist()}
    labelled = {r["media_id"] for r in store.read_table(out, "labels").to_pylist()}
    assert set(features) == labelled
    for m in media:
        if m["media_id"] not in labelled:
            continue
        f = dict(zip(CONTEXT_FEATURES, features[m["media_id"]], strict=True))
        p = posts[m["post_id"]]
        hour = p["published_at"].hour + p["published_at"].minute / 60
        assert f["hour_sin"] == pytest.approx(math.sin(2 * math.pi * hour / 24), abs=1e-6)
        assert f["weekday_cos"] == pytest.approx(
            math.cos(2 * math.pi * p["published_at"].weekday() / 7), abs=1e-6
        )
        assert (
            f[f"post_{p['post_type']}"] == 1
            and sum(f[n] for n in ("post_image", "post_video", "post_carousel")) == 1
        )
        n_media = sum(x["post_id"] == m["post_id"] for x in media)
        assert f["carousel_size"] == pytest.approx(n_media / 10)
        assert f["hashtags"] == pytest.approx(math.log1p(p["n_hashtags"] or 0) / 3, abs=1e-6)
        duration = video[m["media_id"]]["duration_s"] if m["media_id"] in video else 0
        assert f["video_duration"] == pytest.approx(math.log1p(duration) / 3, abs=1e-6)


def test_no_feature_reads_the_items_own_or_later_posts(labelled, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(labelled, out)
    before = _features(out)
    posts = sorted(store.read_table(out, "posts").to_pylist(), key=lambda p: p["published_at"])
    middle = posts[len(posts) // 2]
    later = {p["post_id"] for p in posts if p["published_at"] >= middle["published_at"]}
    # the item's own post and every later one become 50 times more popular ...
    _change_likes(out, later, 50)
    after = _features(out)
    media = store.read_table(out, "media").to_pylist()
    checked = [m["media_id"] for m in media if m["post_id"] == middle["post_id"]]
    assert checked
    for media_id in checked:  # ... and its features do not move
        assert after[media_id] == before[media_id]
    # while a later post's trend does see an earlier change (so this test can fail)
    _change_likes(out, {posts[len(posts) // 2 - 1]["post_id"]}, 1000)
    moved = _features(out)
    assert any(moved[m] != after[m] for m in after)


def test_context_widens_every_vector(trained):
    from popray.training.loading import load_dataset

    plain = load_dataset(trained, "efficientnet_lite0", 2)
    wide = load_dataset(trained, "efficientnet_lite0", 2, context=True)
    width = plain.images.embeddings.shape[-1]
    assert wide.images.embeddings.shape == (
        *plain.images.embeddings.shape[:-1],
        width + len(CONTEXT_FEATURES),
    )
    assert np.array_equal(wide.images.embeddings[..., :width], plain.images.embeddings)
    # every view of an image carries the same context
    assert np.array_equal(
        wide.images.embeddings[:, 0, width:], wide.images.embeddings[:, -1, width:]
    )
    assert wide.videos.embeddings.shape[-1] == wide.videos.pooled.shape[-1] == width + 12


def test_the_grid_trains_with_context_and_keeps_both_results(trained, tmp_path):
    from popray.config import GridConfig, LabelConfig, TrainConfig
    from popray.train import run_train
    from popray.training.model_files import load_final

    out = tmp_path / "out"
    shutil.copytree(trained, out)
    cfg = GridConfig(models=["image"], seeds=[0], k=[2], train=TrainConfig(epochs=2))
    report = run_train(
        out, cfg.model_copy(update={"context_features": True}), LabelConfig(), "efficientnet_lite0"
    )
    assert set(report.metrics["features"].to_pylist()) == {"embedding+context"}
    metrics = store.read_table(out, "metrics")
    assert set(metrics["features"].to_pylist()) == {"embedding", "embedding+context"}
    models = store.read_table(out, "models").to_pylist()
    wide = next(m for m in models if m["features"] == "embedding+context")
    # a model that needs post metadata cannot score a bare file: a clear error, not a
    # shape mismatch deep in torch
    with pytest.raises(ValueError, match="context features"):
        load_final(out, wide["path"])
    # predict and explain pick among the models that can: the plain ones
    from popray.training.model_files import saved_models

    picked = saved_models(out, scheme="por_rolling")
    assert picked and all(m.features == "embedding" for m in picked)
