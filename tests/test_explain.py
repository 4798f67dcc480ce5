import numpy as np
import pytest
import torch
from PIL import Image

from popray.explain import run_explain
from popray.io import store
from popray.media.backbones import create_backbone
from popray.media.gradcam import Explainer, FullNetwork, overlay
from popray.training.models import create_model


def _manual_gradcam(network: FullNetwork, x: torch.Tensor) -> np.ndarray:
    """Grad-CAM by hand: weights = spatial mean of d(top logit)/d(feature map)."""
    maps = network.backbone.forward_features(x).detach().requires_grad_(True)
    logits = network.head(network.backbone.forward_head(maps, pre_logits=True))
    logits[0, logits[0].argmax()].backward()
    weights = maps.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * maps).sum(dim=1))[0].detach().numpy()
    return cam / cam.max()


def test_gradcam_is_the_top_class_map_of_the_last_feature_map():
    torch.manual_seed(0)
    backbone = create_backbone("mobilenetv3_small_050", "random")
    head = create_model("image", 3, backbone.width).eval()
    network = FullNetwork(backbone, head).eval()
    explainer = Explainer(network, *backbone.pixel_stats(), 3)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    pixels[:112, :112] = 255  # some structure
    from captum.attr import LayerGradCam

    x = explainer.tensor(pixels)
    top = int(network(x).argmax())
    heat = LayerGradCam(network, network.feature_map).attribute(x, target=top)[0, 0]
    heat = torch.relu(heat).detach().numpy()
    assert heat.shape == (7, 7)
    assert np.allclose(heat / heat.max(), _manual_gradcam(network, x), atol=1e-5)


def test_overlay_keeps_the_photo_and_adds_the_heat():
    image = Image.new("RGB", (800, 600), (128, 128, 128))
    heat = np.zeros((7, 7))
    heat[0, 0] = 1.0
    out = np.asarray(overlay(image, heat)).astype(int)
    assert out.shape == (336, 448, 3)  # longest side 448, aspect kept
    assert (out[5, 5] != out[-5, -5]).any()  # the hot corner differs from the cold one


def test_explain_writes_heatmaps_per_class_and_names_unreadable_files(
    trained_copy, tmp_path, tiny_truth
):
    good = tmp_path / "candidate.png"
    Image.new("RGB", (320, 240), (200, 40, 40)).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    table = run_explain(trained_copy, k=2, per_class=2, media=[good, bad], extremes=2)
    rows = table.to_pylist()
    sampled = [r for r in rows if r["picked"] == "class_sample"]
    assert sorted(r["label"] for r in sampled) == [0, 0, 1, 1]
    # the two highest- and two lowest-scored images, by their out-of-fold score
    scored = store.query(
        trained_copy,
        "SELECT media_id, avg(proba[2]) AS p FROM predictions WHERE model = 'image' "
        "AND k = 2 AND protocol = 'stratified_kfold' GROUP BY media_id ORDER BY p DESC, media_id",
    ).to_pylist()
    ends = {picked: [r for r in rows if r["picked"] == picked] for picked in ("top", "bottom")}
    assert [r["media_id"] for r in ends["top"]] == [s["media_id"] for s in scored[:2]]
    assert [r["media_id"] for r in ends["bottom"]] == [s["media_id"] for s in scored[-2:]]
    for r, s in zip(ends["top"] + ends["bottom"], scored[:2] + scored[-2:], strict=True):
        assert r["score"] == pytest.approx(s["p"])  # k = 2: the score is P(popular)
        assert r["label"] is not None and r["error"] is None
    for r in rows[:-1]:
        png = Image.open(trained_copy / r["path"])
        assert max(png.size) <= 448 and r["error"] is None  # never upscaled
        assert r["pred"] == int(np.argmax(r["proba"])) and abs(sum(r["proba"]) - 1) < 1e-5
    assert rows[-2]["file"] == str(good) and rows[-2]["media_id"] is None
    assert rows[-1]["path"] is None and "cannot decode image" in rows[-1]["error"]
    con = store.connect(trained_copy)
    assert con.sql("SELECT count(*) FROM explanations").fetchall()[0][0] == 4 + 4 + 2
    con.close()


def test_explain_without_a_trained_model_says_so(embedded):
    with pytest.raises(FileNotFoundError, match="popray train"):
        run_explain(embedded[1], k=2)
