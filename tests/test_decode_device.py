"""JPEG decoding in the model actor (popray.media.decode_device), run here with the CPU as the
device (libjpeg through torchvision), against popray's CPU path (PIL in the decode
tasks). tests/test_gpu.py runs the same comparison with nvJPEG where CUDA exists."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from popray.config import AugmentConfig, EmbedConfig
from popray.io.storage import LOCAL_FILES, sha256_bytes
from popray.media import decode, decode_device
from popray.media.embed_pipeline import decode_batch, run_pipeline
from popray.records import MediaItem

PHOTOS = ("chelsea", "coffee", "astronaut")
LIMIT = 50_000_000


def _jpeg_bytes(name: str, size=(1080, 1350), mode: str = "RGB", **save) -> bytes:
    photo = Image.fromarray(getattr(skimage.data, name)()[..., :3]).resize(size).convert(mode)
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def _rotated(name: str) -> bytes:
    exif = Image.Exif()
    exif[decode.ORIENTATION] = 6  # shown turned by 90 degrees
    return _jpeg_bytes(name, exif=exif.tobytes())


def test_which_files_the_device_may_decode():
    plain = _jpeg_bytes("coffee")
    assert decode.device_decodable(plain, LIMIT)
    assert decode.device_decodable(_jpeg_bytes("coffee", mode="L"), LIMIT)
    png = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(png, "PNG")
    refused = {
        "png": png.getvalue(),
        "truncated": plain[: len(plain) // 2],
        "rotated": _rotated("coffee"),
        "cmyk": _jpeg_bytes("coffee", mode="CMYK"),
    }
    for why, data in refused.items():
        assert not decode.device_decodable(data, LIMIT), why
    assert not decode.device_decodable(plain, 1080 * 1350 - 1)  # over the pixel limit


def test_the_device_path_gives_the_cpu_paths_pixels():
    aug = AugmentConfig()
    for name in PHOTOS:
        data = _jpeg_bytes(name)
        sha = sha256_bytes(data)
        cpu = decode.image_views(data, 4, 0, sha, aug, LIMIT).astype(np.int16)
        # the views alone, from the same 224 image: PIL's resampling and blends, exactly
        # but for a rare rounding tie
        same = decode_device.image_views([_chw(cpu[0])], [sha], 4, 0, aug)
        diff = np.abs(decode_device.to_hwc_uint8(same).astype(np.int16) - cpu)
        assert diff.mean() < 0.01 and diff.max() <= 2, (name, diff.mean(), diff.max())
        # end to end: a full-size decode (the device has no DCT scaling) against the CPU
        # path's reduced-scale one, a fraction of a grey level (measured 0.12-0.23)
        [base] = decode_device.decode_resized([data], torch.device("cpu"))
        dev = decode_device.image_views([base], [sha], 4, 0, aug)
        dev = decode_device.to_hwc_uint8(dev).astype(np.int16)
        assert dev.shape == cpu.shape == (5, 224, 224, 3)
        diff = np.abs(dev - cpu)
        assert diff.mean(axis=(1, 2, 3)).max() < 0.5, (name, diff.mean(axis=(1, 2, 3)))
        assert np.quantile(diff, 0.99) <= 2, name
        # a view that went another way (flip, shift) would differ by tens of levels
        assert np.abs(dev[1:] - cpu[:1]).mean() > 5


def _chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1).float()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("device_decode")
    png = io.BytesIO()
    Image.fromarray(skimage.data.rocket()).save(png, "PNG")
    plain = _jpeg_bytes("astronaut")
    contents = {
        "chelsea": _jpeg_bytes("chelsea"),
        "coffee": _jpeg_bytes("coffee"),
        "rocket_png": png.getvalue(),
        "rotated": _rotated("chelsea"),
        "truncated": plain[: len(plain) // 2],
        # passes the header check, refused by libjpeg: the actor falls back to PIL
        "lossless_sof": plain.replace(b"\xff\xc0", b"\xff\xc3", 1),
    }
    paths = {}
    for name, data in contents.items():
        paths[name] = folder / f"{name}.bin"
        paths[name].write_bytes(data)
    return paths


def _items(files: dict[str, Path]) -> list[MediaItem]:
    return [MediaItem.of_file(n, p) for n, p in files.items()]


def test_decode_tasks_pass_device_jpegs_on_as_bytes(files):
    items = _items(files)
    batch = {k: np.array([i.row()[k] for i in items]) for k in items[0].row()}
    cfg = EmbedConfig(views=2)
    out = decode_batch(batch, cfg, LOCAL_FILES, jpeg_to_actor=True)
    got = {
        m: (len(p), len(j), e)
        for m, p, j, e in zip(
            out["media_id"], out["pixels"], out["jpeg"], out["error"], strict=True
        )
    }
    for name in ("chelsea", "coffee", "lossless_sof"):
        assert got[name] == (0, files[name].stat().st_size, ""), name  # bytes, no pixels
    for name in ("rocket_png", "rotated"):
        assert got[name] == (3, 0, ""), name  # decoded by the task
    assert got["truncated"][:2] == (0, 0) and got["truncated"][2].startswith("cannot decode")
    tasks = decode_batch(batch, cfg, LOCAL_FILES)
    assert all(len(j) == 0 for j in tasks["jpeg"])


def test_the_pipeline_embeds_the_same_with_jpegs_decoded_in_the_actor(ray_session, files):
    items = _items(files)
    runs = {
        where: {
            r.media_id: r
            for r in run_pipeline(
                items, EmbedConfig(views=2, device="cpu", decode_jpeg_on=where), LOCAL_FILES
            )
        }
        for where in ("tasks", "actor")
    }
    tasks, actor = runs["tasks"], runs["actor"]
    assert set(tasks) == set(actor) == set(files)  # every item, once
    for name in files:
        assert tasks[name].error == actor[name].error, name
    assert actor["truncated"].error.startswith("cannot decode")
    assert actor["lossless_sof"].error.startswith("cannot decode")
    for name in ("chelsea", "coffee", "rocket_png", "rotated"):
        a, b = np.asarray(tasks[name].embeddings), np.asarray(actor[name].embeddings)
        assert a.shape == b.shape == (3, 1280), name
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= 0.99, (name, cosine)
