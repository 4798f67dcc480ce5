import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from popray.config import EmbedConfig
from popray.errors import WeightsError
from popray.media import decode
from popray.media.backbones import create_backbone
from popray.media.embedder import Embedder

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def lite0_embedder():
    return Embedder(EmbedConfig(device="cpu", torch_threads=2))


def _classify(embedder, photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "p.png")
    pixels = decode.resize(decode.load_image(tmp_path / "p.png"))[None]
    emb = embedder.embed_frames(pixels)
    assert emb.shape == (1, 1280) and np.isfinite(emb).all()
    logits = embedder.backbone.model.get_classifier()(torch.from_numpy(emb))
    return int(logits.argmax())


def test_default_weights_are_the_real_imagenet_ones(lite0_embedder, tmp_path):
    """The ImageNet head of the same weights, applied to popray's embedding, sees a cat."""
    assert _classify(lite0_embedder, skimage.data.chelsea(), tmp_path) in CAT_CLASSES
    assert _classify(lite0_embedder, skimage.data.coffee(), tmp_path) == ESPRESSO


def test_checkpoint_file_round_trip(lite0_embedder, tmp_path):
    path = tmp_path / "lite0.pth"
    torch.save(lite0_embedder.backbone.model.state_dict(), path)
    again = create_backbone("efficientnet_lite0", weights=str(path))
    x = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(again.embed(x), lite0_embedder.backbone.embed(x))


def test_missing_or_wrong_weights_are_errors_not_random_init(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        create_backbone("efficientnet_lite0", weights=str(tmp_path / "nope.pth"))
    other = tmp_path / "other.pth"
    torch.save(create_backbone("resnet18", weights="random").model.state_dict(), other)
    with pytest.raises(WeightsError, match="does not fit"):
        create_backbone("efficientnet_lite0", weights=str(other))
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("no_such_net")


def test_random_init_only_when_asked_and_width_follows_backbone():
    small = create_backbone("resnet18", weights="random")
    assert small.width == 512
    # the same weights whatever the process's RNG did before, and the RNG left as it was
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    again = create_backbone("resnet18", weights="random")
    assert torch.equal(torch.random.get_rng_state(), state)
    weights = zip(small.model.state_dict().values(), again.model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in weights)
    with torch.inference_mode():
        assert small.embed(torch.rand(1, 3, 224, 224)).shape == (1, 512)


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "resnet18"])
def test_width_is_the_width_of_the_embedding(name):
    import torch

    backbone = create_backbone(name, "random")
    with torch.inference_mode():
        assert backbone.embed(torch.zeros(1, 3, 224, 224)).shape == (1, backbone.width)


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def _instagram_size(name: str, folder, quality: int = 90):
    """A bundled real photo at Instagram's portrait size, a 1080x1350 JPEG (upscaled)."""
    photo = Image.fromarray(getattr(skimage.data, name)()[..., :3])
    path = folder / f"{name}-q{quality}.jpg"
    photo.resize((1080, 1350), Image.Resampling.BICUBIC).save(path, quality=quality)
    return path


def _embed(embedder, path, draft: int | None) -> np.ndarray:
    pixels = decode.resize(decode.load_image(path, draft=draft))
    return embedder.embed_frames(pixels[None])[0]


def test_reduced_scale_jpeg_decoding_changes_nothing_that_matters(lite0_embedder, tmp_path):
    """Decoding 1080x1350 photos at half scale (decode.DRAFT): the same embeddings (cosine
    >= 0.99), the same ImageNet classes, duplicates still duplicates. (A landscape
    1080x718 photo keeps its full scale: half would leave fewer than 448 rows.)"""
    from popray.config import DedupConfig

    head = lite0_embedder.backbone.model.get_classifier()
    threshold = DedupConfig().threshold_for("efficientnet_lite0")
    for name in PHOTOS:
        path = _instagram_size(name, tmp_path)
        assert decode.load_image(path, draft=decode.DRAFT).width == 540  # really reduced
        full, fast = _embed(lite0_embedder, path, None), _embed(lite0_embedder, path, decode.DRAFT)
        cosine = full @ fast / np.linalg.norm(full) / np.linalg.norm(fast)
        assert cosine >= 0.99, (name, cosine)
        copy = _instagram_size(name, tmp_path / "..", quality=70)  # re-encoded
        distance = np.linalg.norm(fast - _embed(lite0_embedder, copy, decode.DRAFT))
        assert distance < threshold, (name, distance)
        top = int(head(torch.from_numpy(fast[None])).argmax())
        if name == "chelsea":
            assert top in CAT_CLASSES
        if name == "coffee":
            assert top == ESPRESSO
    png = tmp_path / "p.png"  # other formats decode at full size
    Image.fromarray(skimage.data.coffee()).save(png)
    assert decode.load_image(png, draft=decode.DRAFT).size == (600, 400)
