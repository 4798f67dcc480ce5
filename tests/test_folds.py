import numpy as np
import pytest

from popray.training.folds import make_folds


def _data(seed=0):
    rng = np.random.default_rng(seed)
    images = ([f"i{i}" for i in range(60)], rng.integers(0, 3, 60))
    videos = ([f"v{i}" for i in range(25)], np.arange(25) % 2)
    return images, videos


def test_folds_partition_and_stratify():
    images, videos = _data()
    folds = make_folds("image", 0, images, videos)
    vals = [m for f in folds for m in f.val]
    assert sorted(vals) == sorted(images[0]) and len(folds) == 5
    cls = dict(zip(*images, strict=True))
    for f in folds:
        assert not set(f.train) & set(f.val) and f.extra_train == ()
        counts = np.bincount([cls[m] for m in f.val], minlength=3)
        assert counts.max() - counts.min() <= 3  # stratified


def test_video_models_share_folds_and_extras_only_train():
    images, videos = _data()
    by_model = {
        m: make_folds(m, 1, images, videos) for m in ("video", "image_to_video", "video_to_image")
    }
    vals = {m: [f.val for f in folds] for m, folds in by_model.items()}
    assert vals["video"] == vals["image_to_video"] == vals["video_to_image"]
    assert all(f.extra_train == () for f in by_model["video"])
    for m in ("image_to_video", "video_to_image"):
        for f in by_model[m]:
            assert set(f.extra_train) == set(images[0]) and not set(f.val) & set(images[0])


def test_seeds_shuffle_differently_and_too_few_items_is_an_error():
    images, videos = _data()
    assert [f.val for f in make_folds("image", 0, images, videos)] != [
        f.val for f in make_folds("image", 1, images, videos)
    ]
    with pytest.raises(ValueError, match="cannot fill 5 stratified folds"):
        make_folds("video", 0, images, (["v0", "v1", "v2"], np.array([0, 1, 0])))
    # told k, a class without items is a problem too (one class is not a 2-class task)
    one = ([f"i{n}" for n in range(20)], np.zeros(20, dtype=np.int64))
    assert len(make_folds("image", 0, one, videos)) == 5
    with pytest.raises(ValueError, match=r"class counts \[20, 0\] cannot fill"):
        make_folds("image", 0, one, videos, k=2)


def test_fold_arrays_put_extra_media_in_training_only():
    from grid_helpers import synthetic

    from popray.training.folds import all_data, fold_data, split

    ds = synthetic(2, n_images=20, n_videos=15)
    for model, own, shape in [
        ("image", 20, (3, 16)),
        ("video", 15, (15, 16)),
        ("image_to_video", 15, (15, 16)),
        ("video_to_image", 15, (16,)),
    ]:
        folds = split(ds, model, 0, 5)
        extra = 20 if model in ("image_to_video", "video_to_image") else 0
        for fold in folds:
            data = fold_data(ds, model, fold)
            assert (
                len(data.x_val) == len(fold.val)
                and len(data.x_train) == own - len(fold.val) + extra
            )
            assert data.x_train.shape[1:] == shape and data.train_views == (model == "image")
            assert data.x_val.shape[1:] == (shape[1:] if model == "image" else shape)
        if model == "image_to_video":  # an image becomes 15 equal frames, labels follow
            assert np.array_equal(
                data.x_train[-1], np.repeat(ds.images.embeddings[None, -1, 0], 15, 0)
            )
            assert data.y_train[-1] == ds.images.y[-1]
        x, y, views = all_data(ds, model)
        assert len(x) == len(y) == own + extra and views == (model == "image")
