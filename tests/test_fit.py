"""One training (popray.training.fit): fit_fold keeps the best epoch; views and seeds."""

import numpy as np
import pytest

from popray.training.fit import FoldData, TrainConfig, fit_fold


def _blobs(n, k, width, seed, views=None, seq=None):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.0, (k, width))
    y = rng.integers(0, k, n)
    x = centers[y] + rng.normal(0, 0.8, (n, width))
    if views:
        x = x[:, None, :] + rng.normal(0, 0.3, (n, views, width))
    if seq:
        x = np.repeat(x[:, None, :], seq, axis=1) + rng.normal(0, 0.3, (n, seq, width))
    return x.astype(np.float32), y


@pytest.mark.parametrize(
    "model,shape", [("image", {}), ("video_to_image", {}), ("video", {"seq": 15})]
)
def test_learns_a_separable_problem_and_keeps_the_best_epoch(model, shape):
    x, y = _blobs(400, 3, 16, 0, **shape)
    data = FoldData(x[:300], y[:300], x[300:], y[300:])
    result = fit_fold(model, 3, data, TrainConfig(epochs=15), seed=0)
    assert result.val_accuracy == max(result.history) > 0.8
    assert result.history.index(result.val_accuracy) + 1 == result.best_epoch
    assert result.val_proba.shape == (100, 3)
    assert np.allclose(result.val_proba.sum(axis=1), 1, atol=1e-5)
    assert (result.val_proba.argmax(1) == y[300:]).mean() == result.val_accuracy
    # the kept weights are the ones that produced the kept probabilities
    import torch

    from popray.training.models import create_model

    again = create_model(model, 3, 16)
    again.load_state_dict(result.state_dict)
    again.eval()
    with torch.inference_mode():
        proba = torch.softmax(again(torch.as_tensor(x[300:])), 1).numpy()
    assert np.allclose(proba, result.val_proba, atol=1e-6)


def test_views_are_sampled_and_runs_are_reproducible():
    x, y = _blobs(300, 2, 16, 1, views=5)
    data = FoldData(x[:200], y[:200], x[200:, 0], y[200:], train_views=True)
    a = fit_fold("image", 2, data, TrainConfig(epochs=5), seed=3)
    b = fit_fold("image", 2, data, TrainConfig(epochs=5), seed=3)
    c = fit_fold("image", 2, data, TrainConfig(epochs=5), seed=4)
    assert a.history == b.history and np.array_equal(a.val_proba, b.val_proba)
    assert not np.array_equal(a.val_proba, c.val_proba)
    assert a.val_accuracy > 0.8
