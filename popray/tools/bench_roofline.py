"""The embedding roofline: where each image's time goes, and the machine's limit.

    python -m jobs.benchmark embed --input data/demo --photos 256

- `photos_1080`: Instagram-size photos (1080x1350 JPEG, quality 90), made from the real
  photos scikit-image ships, each copy flipped or cropped a little so no two are equal.
- `breakdown`: milliseconds per image of each step, measured one step at a time in one
  process (read, decode, resize, views, to-tensor, forward, write), the way the
  pipeline does them (JPEGs at a reduced DCT scale, views from the 224 image).
- `limit`: on CPU decode and forward share the cores. An image costs 1/d core-seconds
  to decode (d: the one-core rate of read + decode + resize + views) and C/f to embed (f:
  the forward rate of all C cores), so C busy cores give C / (1/d + C/f) images/s. On a
  GPU the two overlap: min(f, C * d).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from popray.records import MediaItem

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def photos_1080(folder: Path, n: int) -> list[MediaItem]:
    """`n` 1080x1350 JPEGs from the bundled photos (made once, kept), as embed items."""
    import skimage.data
    from PIL import Image, ImageOps

    folder = folder.resolve()  # absolute: the Ray workers run in other folders
    folder.mkdir(parents=True, exist_ok=True)
    sources = [Image.fromarray(getattr(skimage.data, name)()[..., :3]) for name in PHOTOS]
    items = []
    for i in range(n):
        path = folder / f"photo_{i:05d}.jpg"
        if not path.exists():
            photo = sources[i % len(sources)]
            cut = (i // len(sources)) % 20  # a different crop (and a flip) per copy
            photo = photo.crop((cut, cut, photo.width - cut, photo.height - cut))
            photo = ImageOps.mirror(photo) if (i // len(sources)) % 2 else photo
            tmp = path.with_suffix(".tmp")
            photo.resize((1080, 1350), Image.Resampling.BICUBIC).save(tmp, "JPEG", quality=90)
            tmp.rename(path)
        items.append(MediaItem.of_file(f"p{i}", path))
    return items


def breakdown(images: list[MediaItem], cfg) -> dict:
    """Milliseconds per image of each step of the embedding of `images` (cfg.views
    augmented views each), one step at a time in this process."""
    import pyarrow.parquet as pq
    import torch

    from popray.media import decode
    from popray.media.embed_pipeline import image_key
    from popray.media.embed_write import image_table
    from popray.media.embedder import Embedder

    embedder = Embedder(cfg)
    spent = dict.fromkeys(("read", "decode", "resize", "views", "to_tensor", "forward", "write"))
    spent = {k: 0.0 for k in spent}

    def timed(step: str, fn, *args):
        start = time.perf_counter()
        value = fn(*args)
        spent[step] += time.perf_counter() - start
        return value

    stacks = []
    for it in images:
        data = timed("read", Path(it.path).read_bytes)
        image = timed("decode", decode.load_image, data, cfg.max_image_pixels, decode.DRAFT)
        base = timed("resize", decode.resize, image)
        views = [base]
        for v in range(1, cfg.views + 1):
            p = decode.view_params(decode.view_rng(cfg.seed, it.sha256, v), cfg.augment)
            views.append(timed("views", decode.augmented_view, base, p))
        stacks.append(np.stack(views))
    frames = np.concatenate(stacks)
    embedder.embed_frames(frames[: cfg.batch_size])  # warm-up
    total = timed("forward", embedder.embed_frames, frames)  # split below
    with torch.inference_mode():
        start = time.perf_counter()
        tensors = [
            (
                torch.from_numpy(frames[i : i + cfg.batch_size]).permute(0, 3, 1, 2).float()
                - embedder.mean
            )
            / embedder.std
            for i in range(0, len(frames), cfg.batch_size)
        ]
        spent["to_tensor"] = time.perf_counter() - start
        start = time.perf_counter()
        for x in tensors:
            embedder.backbone.embed(x)
        spent["forward"] = time.perf_counter() - start
    key, sizes = image_key(cfg), np.cumsum([len(s) for s in stacks])[:-1]
    start = time.perf_counter()
    embedded = [
        it | {"embeddings": e} for it, e in zip(images, np.split(total, sizes), strict=True)
    ]
    table = image_table(embedded, cfg, key, total.shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(table, os.path.join(tmp, "rows.parquet"), compression="zstd")
    spent["write"] = time.perf_counter() - start
    ms = {f"{k}_ms": round(1000 * v / len(images), 2) for k, v in spent.items()}
    return {"images": len(images), "views": cfg.views, **ms}


def limit(decode_one_core: float, forward: float, cores: int, gpu: bool, frames: int = 1) -> float:
    """The machine's images/s limit (see the module docstring); `frames`: backbone passes
    per image (1 + views)."""
    forward = forward / frames
    if gpu:
        return min(forward, cores * decode_one_core)
    return cores / (1 / decode_one_core + cores / forward)


def bench_photos(folder: Path, n: int, cfg, forward: float, cores: int, gpu: bool):
    """On `n` 1080x1350 photos: a plain full-decode loop against the pipeline (no views,
    and cfg.views), each step's time, and the pipeline as a fraction of the limit."""
    from popray.tools.bench_embed import pipeline_rate, plain_loop_rate

    photos = photos_1080(folder, n)
    cfg0 = cfg.model_copy(update={"views": 0})
    plain = plain_loop_rate(photos, cfg0)
    for views in sorted({0, cfg.views}):
        run_cfg = cfg.model_copy(update={"views": views})
        rate = pipeline_rate(photos, run_cfg)
        steps = breakdown(photos[:32], run_cfg)
        decode_ms = sum(steps[f"{k}_ms"] for k in ("read", "decode", "resize", "views"))
        bound = limit(1000 / decode_ms, forward, cores, gpu, 1 + views)
        yield {
            "bench": "embed_photos_1080x1350",
            "photos": n,
            "views": views,
            "plain_full_decode_loop_img_s": round(plain, 2),
            "pipeline_img_s": round(rate, 2),
            "ratio_to_loop": round(rate / plain, 3),
            "limit_img_s": round(bound, 1),
            "pipeline_vs_limit": round(rate / bound, 3),
        } | steps
