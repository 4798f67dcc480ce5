import pytest
import torch

from popray.training.models import (
    DROPOUT,
    PAPER_MODELS,
    REGISTRY,
    CnnRnn,
    SequenceDropout,
    create_model,
)


def test_first_gru_has_the_papers_30960_parameters():
    model = create_model("video", k=3)
    assert sum(p.numel() for p in model.gru1.parameters()) == 30_960
    assert sum(p.numel() for p in create_model("image_to_video", 2).gru1.parameters()) == 30_960


@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
@pytest.mark.parametrize("k", [2, 3])
def test_every_paper_model_maps_its_input_to_k_finite_logits(name, k):
    torch.manual_seed(0)
    model = create_model(name, k, width=64)
    shape = (5, 15, 64) if REGISTRY[name].input == "sequence" else (5, 64)
    x = torch.randn(shape)
    out = model(x)
    assert out.shape == (5, k) and torch.isfinite(out).all()
    model.eval()
    assert torch.equal(model(x), model(x))  # dropout is off in eval mode
    out.sum().backward()  # trainable end to end
    assert all(p.grad is not None for p in model.parameters())


def test_architecture_follows_the_paper():
    video = create_model("video", 3)
    assert (video.gru1.hidden_size, video.gru2.hidden_size) == (8, 6)
    assert (video.dense.out_features, video.head.out_features) == (8, 3)
    assert isinstance(create_model("video_to_image", 2).dropout, torch.nn.Dropout)
    assert create_model("image", 2).dropout.p == 0.2


def test_unknown_model_and_bad_k_are_errors():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("transformer", 2)
    with pytest.raises(ValueError, match="at least 2"):
        create_model("image", 1)


@pytest.mark.parametrize("name", ["gbdt", "gbdt_video"])
def test_the_gradient_boosted_baseline_fits_scores_and_survives_a_save(name, tmp_path):
    import numpy as np

    from popray.training.fit import FoldData, TrainConfig, fit_all, fit_fold

    assert set(REGISTRY) - set(PAPER_MODELS) == {"gbdt", "gbdt_video"}
    rng = np.random.default_rng(0)
    views = REGISTRY[name].validate_on == "image"
    x = rng.normal(size=(80, 3, 40) if views else (80, 40)).astype(np.float32)
    first = x[:, 0] if views else x
    y = (first[:, 0] > 0).astype(int) + (first[:, 1] > 1).astype(int)  # 3 classes
    data = FoldData(x[:60], y[:60], first[60:], y[60:], train_views=views)
    result = fit_fold(name, 3, data, TrainConfig(epochs=4), seed=0)
    assert result.best_epoch == 1 and result.val_proba.shape == (20, 3)
    assert np.allclose(result.val_proba.sum(axis=1), 1) and result.val_accuracy >= 0.6
    net = fit_all(name, 4, x, y, TrainConfig(), seed=0, train_views=views)  # class 3: none
    torch.save(net.state_dict(), tmp_path / "model.pt")
    again = create_model(name, 4, 40)
    with pytest.raises(RuntimeError, match="fit the model"):
        again(torch.as_tensor(first))
    again.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    proba = torch.softmax(again(torch.as_tensor(first)), 1).numpy()
    assert proba.shape == (80, 4) and proba[:, 3].max() < 1e-4  # never seen: ~0
    assert np.array_equal(proba, torch.softmax(net(torch.as_tensor(first)), 1).numpy())


def test_the_gradient_boosted_baseline_can_skip_the_pca():
    """`jobs.benchmark gbdt` compares the PCA the model uses with the raw embedding."""
    import numpy as np

    from popray.training.models import PCA_COMPONENTS, GbdtModel

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 50)).astype(np.float32)
    y = (x[:, 7] > 0).astype(int)  # one raw dimension decides
    steps = {}
    for pca in (PCA_COMPONENTS, None):
        net = GbdtModel(50, 2, pca).fit(x, y, seed=0)
        steps[pca] = [name for name, _ in net.pipeline.steps]
        assert torch.softmax(net(torch.as_tensor(x)), 1).shape == (60, 2)
    assert steps == {
        PCA_COMPONENTS: ["pca", "histgradientboostingclassifier"],
        None: ["histgradientboostingclassifier"],
    }


def test_the_grus_input_dropout_keeps_one_mask_per_sequence_as_keras_does():
    torch.manual_seed(0)
    x = torch.rand(64, 15, 40) + 0.5  # no zeros of its own
    drop = SequenceDropout(DROPOUT).train()
    out = drop(x)
    kept = out != 0
    assert torch.equal(kept, kept[:, :1].expand_as(kept))  # the same at every timestep
    assert torch.allclose(out[kept], x[kept] / (1 - DROPOUT))
    assert abs(float((~kept).float().mean()) - DROPOUT) < 0.02
    assert not torch.equal(kept[0], kept[1])  # each sequence its own mask
    assert torch.equal(drop.eval()(x), x)
    net = CnnRnn(40, 2)
    assert isinstance(net.in_dropout1, SequenceDropout)
    assert isinstance(net.in_dropout2, SequenceDropout)
