"""The embedding benchmarks (`python -m jobs.benchmark embed`), in one run on the same
files: popray's Ray Data pipeline against a plain single-process loop, its video sampling
against `ray.data.read_videos`, and the bounds of this machine (one core's decode rate,
the backbone's forward rate; per-step breakdown in popray/tools/bench_roofline.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from popray.io.storage import LOCAL_FILES
from popray.records import MediaItem


def _sample_media(input_dir: Path) -> tuple[list[MediaItem], list[MediaItem]]:
    """Readable images and videos of an export (planted corrupt files left out)."""
    import json

    from popray.ingest import ingest

    truth_file = input_dir / "sample_truth.json"
    corrupt = (
        set(json.loads(truth_file.read_text())["corrupt_media"]) if truth_file.exists() else set()
    )
    media = [
        m for m in ingest(input_dir).tables["media"].to_pylist() if m["media_id"] not in corrupt
    ]
    items = [  # absolute paths: Ray workers run elsewhere; no thumbnails
        MediaItem.of_media(
            m | {"path": str(input_dir.resolve() / m["path"]), "thumbnail_path": None}
        )
        for m in media
    ]
    return [i for i in items if i.kind == "image"], [i for i in items if i.kind == "video"]


def _repeat(items: list[MediaItem], n: int) -> list[MediaItem]:
    return [replace(items[i % len(items)], media_id=f"b{i}") for i in range(n)]


def plain_loop_rate(images: list[MediaItem], cfg) -> float:
    """Images/s of a single-process loop: PIL decode + resize + forward, same batch size."""
    from popray.media import decode
    from popray.media.embedder import Embedder

    start = time.perf_counter()
    embedder = Embedder(cfg)
    for i in range(0, len(images), cfg.batch_size):
        chunk = images[i : i + cfg.batch_size]
        pixels = np.stack([decode.resize(decode.load_image(Path(it.path))) for it in chunk])
        embedder.embed_frames(pixels)
    return len(images) / (time.perf_counter() - start)


def pipeline_rate(images: list[MediaItem], cfg) -> float:
    """Images/s of popray's Ray Data pipeline (decode tasks + model actor pool)."""
    from popray.media.embed_pipeline import run_pipeline

    start = time.perf_counter()
    results = run_pipeline(images, cfg, LOCAL_FILES)
    assert all(not r.error for r in results), [r.error for r in results if r.error]
    return len(images) / (time.perf_counter() - start)


def video_sampling_seconds(videos: list[MediaItem], cfg) -> tuple[float, float, int]:
    """Seconds per video: popray's decode step (15 sampled frames) vs ray.data.read_videos
    (every frame), both as Ray Data jobs over the same files."""
    import ray

    from popray.media.embed_pipeline import decode_batch

    start = time.perf_counter()
    n = (
        ray.data.from_items([v.row() for v in videos], override_num_blocks=max(1, len(videos) // 2))
        .map_batches(decode_batch, fn_kwargs={"cfg": cfg, "export": LOCAL_FILES}, batch_size=2)
        .count()
    )
    popray_s = (time.perf_counter() - start) / len(videos)
    assert n == len(videos)
    start = time.perf_counter()
    frames = ray.data.read_videos([v.path for v in videos]).count()
    ray_s = (time.perf_counter() - start) / len(videos)
    return popray_s, ray_s, frames


def decode_rate_one_core(images: list[MediaItem]) -> float:
    """Images/s of decode + resize on one core (PIL)."""
    from popray.media import decode

    start = time.perf_counter()
    for it in images:
        decode.resize(decode.load_image(Path(it.path)))
    return len(images) / (time.perf_counter() - start)


def forward_rate(cfg, n: int = 2048) -> float:
    """Images/s of the backbone alone on already-decoded frames (host memory in, features out)."""
    from popray.media.embedder import Embedder

    embedder = Embedder(cfg)
    frames = np.random.default_rng(0).integers(0, 255, (n, 224, 224, 3), dtype=np.uint8)
    embedder.embed_frames(frames[: cfg.batch_size * 2])  # warm-up (cuDNN autotune, ...)
    start = time.perf_counter()
    embedder.embed_frames(frames)
    if embedder.device.type == "cuda":
        embedder.torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


PHONE_DURATIONS_S = (10, 20, 30, 45, 60, 90)


def realistic_videos(folder: Path, size: tuple[int, int] = (720, 1280)) -> list[MediaItem]:
    """Portrait H.264 videos like a phone's (720×1280, 30 fps), one per duration in
    PHONE_DURATIONS_S (feed videos and reels run 10-90 s), made once and kept."""
    from fractions import Fraction

    from popray.tools.sample_media import write_video

    folder = folder.resolve()  # absolute: the Ray workers run in other folders
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    items = []
    for seconds in PHONE_DURATIONS_S:
        path = folder / f"phone_{seconds:03d}s.mp4"
        if not path.exists():
            tmp = path.with_suffix(".tmp.mp4")
            write_video(tmp, rng, "coffee", float(seconds), Fraction(30), size)
            tmp.rename(path)
        items.append(MediaItem.of_file(f"v{seconds}", path, "video"))
    return items


def bench_embed(
    input_dir: Path,
    n_images: int,
    n_videos: int,
    cfg,
    video_dir: Path | None = None,
    photos: int = 0,
    photo_dir: Path = Path("bench-photos"),
) -> Iterator[dict]:
    """The embedding benchmarks, in one run on the same files (one dict each): the
    pipeline against a plain loop, videos against read_videos, the roofline (limit and
    per-step breakdown, popray/tools/bench_roofline.py), and `photos` 1080x1350 JPEGs."""
    import os

    from popray.cluster import ensure_ray

    images, videos = _sample_media(input_dir)
    images = _repeat(images, n_images)
    cfg0 = cfg.model_copy(update={"views": 0})
    ensure_ray()
    pipeline_rate(images[: 2 * cfg.batch_size], cfg0)  # start Ray Data's workers once
    plain = plain_loop_rate(images, cfg0)
    pipe = pipeline_rate(images, cfg0)
    yield (
        {
            "bench": "embed_images",
            "images": len(images),
            "batch_size": cfg.batch_size,
            "plain_loop_img_s": round(plain, 2),
            "pipeline_img_s": round(pipe, 2),
            "ratio": round(pipe / plain, 3),
        }
    )
    yield from _video_benches(videos, n_videos, video_dir, cfg0)
    from popray.tools.bench_roofline import bench_photos, breakdown, limit

    cores = os.cpu_count() or 1
    one_core = decode_rate_one_core(images[:200])
    fwd = forward_rate(cfg0)
    gpu = _device_name() != "cpu"
    bound = limit(one_core, fwd, cores, gpu)
    yield (
        {
            "bench": "bounds",
            "device": _device_name(),
            "cores": cores,
            "decode_img_s_one_core": round(one_core, 1),
            "decode_img_s_all_cores": round(one_core * cores, 1),
            "forward_only_img_s": round(fwd, 1),
            "pipeline_vs_lower_bound": round(pipe / min(fwd, one_core * cores), 3),
            "limit_img_s": round(bound, 1),  # decode and forward sharing the cores (CPU)
            "pipeline_vs_limit": round(pipe / bound, 3),
        }
        | breakdown(images[:64], cfg0)
    )
    if photos:
        yield from bench_photos(photo_dir, photos, cfg, fwd, cores, gpu)


def _video_benches(videos: list, n_videos: int, video_dir: Path | None, cfg0) -> Iterator[dict]:
    """popray's video sampling against Ray Data's read_videos: the sample's videos and,
    with `video_dir`, phone-like 720x1280 ones of 10 to 90 s."""
    video_sets = {"sample_videos": _repeat(videos, n_videos) if videos else []}
    if video_dir is not None:
        phone = realistic_videos(video_dir)
        video_sets["phone_720x1280_10-90s"] = phone
        for v in phone:
            video_sets[f"phone_720x1280_{v.media_id[1:]}s"] = [v] * 4
    for name, vids in video_sets.items():
        if not vids:
            continue
        popray_s, ray_s, frames = video_sampling_seconds(vids, cfg0)
        yield {
            "bench": "video_sampling",
            "videos": name,
            "n": len(vids),
            "popray_s_per_video": round(popray_s, 3),
            "read_videos_s_per_video": round(ray_s, 3),
            "read_videos_frames": frames,
            "speedup": round(ray_s / popray_s, 2),
        }


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
