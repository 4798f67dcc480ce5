"""The GPU path of the embedding actor (skipped without CUDA)."""

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from popray.config import EmbedConfig
from popray.io.storage import LOCAL_FILES
from popray.media import decode
from popray.media.embed_pipeline import run_pipeline
from popray.media.embedder import Embedder
from popray.records import MediaItem

pytestmark = pytest.mark.gpu


def test_gpu_embeddings_match_cpu_and_still_see_a_cat(tmp_path):
    Image.fromarray(skimage.data.chelsea()).save(tmp_path / "cat.png")
    pixels = np.repeat(decode.resize(decode.load_image(tmp_path / "cat.png"))[None], 3, axis=0)
    gpu = Embedder(EmbedConfig(device="cuda"))
    cpu = Embedder(EmbedConfig(device="cpu"))
    assert gpu.device.type == "cuda"
    a, b = gpu.embed_frames(pixels), cpu.embed_frames(pixels)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99  # bf16 autocast on the GPU, fp32 on the CPU
    logits = cpu.backbone.model.get_classifier()(torch.from_numpy(a[:1]))
    assert int(logits.argmax()) in range(281, 286)


def test_actor_pool_runs_on_the_gpu(ray_session, tmp_path):
    import ray

    assert ray.cluster_resources().get("GPU", 0) >= 1
    images = []
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path)
        images.append(path)
    items = [MediaItem.of_file(p.stem, p) for p in images]
    results = run_pipeline(items, EmbedConfig(views=2, device="auto"), LOCAL_FILES)
    assert sorted(r.media_id for r in results) == sorted(p.stem for p in images)
    assert all(not r.error and np.asarray(r.embeddings).shape == (3, 1280) for r in results)
    assert {r.device for r in results} == {"cuda"}  # the actor's forward passes ran on the GPU


def test_nvjpeg_gives_the_cpu_paths_pixels():
    """nvJPEG decode, resize and views on the GPU against PIL on the CPU."""
    import io

    from popray.config import AugmentConfig
    from popray.io.storage import sha256_bytes
    from popray.media import decode_device

    aug, cuda = AugmentConfig(), torch.device("cuda")
    for name in ("chelsea", "coffee", "astronaut"):
        photo = Image.fromarray(getattr(skimage.data, name)()[..., :3]).resize((1080, 1350))
        buf = io.BytesIO()
        photo.save(buf, "JPEG", quality=90)
        data, sha = buf.getvalue(), sha256_bytes(buf.getvalue())
        cpu = decode.image_views(data, 4, 0, sha, aug, 50_000_000).astype(np.int16)
        [base] = decode_device.decode_resized([data], cuda)
        assert base.device.type == "cuda"
        dev = decode_device.image_views([base], [sha], 4, 0, aug)
        diff = np.abs(decode_device.to_hwc_uint8(dev).astype(np.int16) - cpu)
        assert diff.mean(axis=(1, 2, 3)).max() < 0.5, (name, diff.mean(axis=(1, 2, 3)))
        assert np.quantile(diff, 0.99) <= 2, name


def test_the_gpu_pool_decodes_jpegs_with_nvjpeg_and_embeds_as_the_cpu_does(ray_session, tmp_path):
    items = []
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        path = tmp_path / f"{name}.jpg"
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        photo.resize((1080, 1350)).save(path, quality=90)
        items.append(MediaItem.of_file(name, path))
    gpu = run_pipeline(items, EmbedConfig(views=2, device="cuda"), LOCAL_FILES)  # auto: actor
    cpu = run_pipeline(items, EmbedConfig(views=2, device="cpu"), LOCAL_FILES)  # auto: tasks
    by_id = {r.media_id: np.asarray(r.embeddings) for r in cpu}
    for r in gpu:
        a, b = np.asarray(r.embeddings), by_id[r.media_id]
        assert not r.error and a.shape == b.shape == (3, 1280) and r.device == "cuda"
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= 0.99, (r.media_id, cosine)
