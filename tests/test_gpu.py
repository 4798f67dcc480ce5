"""The GPU path of the embedding actor (skipped without CUDA)."""

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from popray import decode
from popray.config import EmbedConfig
from popray.embed import Embedder, run_pipeline
from popray.storage import LOCAL_FILES

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

    from popray.ingest import sha256_file

    assert ray.cluster_resources().get("GPU", 0) >= 1
    images = []
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path)
        images.append(path)
    items = [
        {"media_id": p.stem, "sha256": sha256_file(p), "kind": "image", "path": str(p), "thumb": ""}
        for p in images
    ]
    results = run_pipeline(items, EmbedConfig(views=2, device="auto"), LOCAL_FILES)
    assert sorted(r["media_id"] for r in results) == sorted(p.stem for p in images)
    assert all(not r["error"] and np.asarray(r["embeddings"]).shape == (3, 1280) for r in results)
