import pytest
import torch

from popray.models import REGISTRY, create_model


def test_first_gru_has_the_papers_30960_parameters():
    model = create_model("video", k=3)
    assert sum(p.numel() for p in model.gru1.parameters()) == 30_960
    assert sum(p.numel() for p in create_model("image_to_video", 2).gru1.parameters()) == 30_960


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("k", [2, 3])
def test_every_model_maps_its_input_to_k_finite_logits(name, k):
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
