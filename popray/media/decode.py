"""Decoding: media files to 224×224 RGB pixels (images, augmented views, video frames).

Images: an explicit format allow-list, a pixel-count guard against decompression bombs,
EXIF orientation applied, transparency composited on white, RGB, resized (squashed, as
the paper's Keras pipeline does) to 224×224; a JPEG is decoded at the smallest DCT
scale that keeps 448 pixels each way (`DRAFT`), and the views are made from the 224
image. A truncated file is an error, never a
silently grey-padded image.

Videos (decord): one frame per second over the first 15 s; a video shorter than 15 s
gets 15 frames evenly spaced over its length (spacing duration / 15). decord can spin
for ever inside native code holding the GIL, or abort the process, on some broken
files, so videos are decoded in a child process that is killed when one takes longer
than a time limit (`BoundedWorker`: one child decodes video after video, and is
replaced only when it is killed or dies).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFile, ImageOps

from popray.config import AugmentConfig
from popray.errors import DecodeError
from popray.io.tables import N_FRAMES
from popray.media.bounded_worker import BoundedWorker

ALLOWED_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")
SIZE = 224
# JPEGs decode at a reduced DCT scale (1/2, 1/4, 1/8) that still leaves at least this
# many pixels each way: a 1080x1350 photo decodes at 540x675, ~3x faster, and the 224
# resize after it differs by a fraction of a grey level (tests/test_decode.py)
DRAFT = 2 * SIZE
SECONDS = 15.0


def load_image(
    source: Path | bytes, max_pixels: int = 50_000_000, draft: int | None = None
) -> Image.Image:
    """Open an image (a file, or its bytes as read from storage; allow-listed formats
    only), apply EXIF orientation, return RGB. `draft`: a JPEG may decode at a reduced
    scale, no smaller than draft x draft (libjpeg's DCT scaling, `Image.draft`)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # some library flipped the global: refuse
        raise DecodeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; refusing to decode")
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with Image.open(fp, formats=ALLOWED_IMAGE_FORMATS) as img:
            if img.width * img.height > max_pixels:
                raise DecodeError(
                    f"{img.width}x{img.height} pixels exceeds the limit of {max_pixels:,} "
                    "(possible decompression bomb)"
                )
            if draft and img.format == "JPEG":  # square: whatever the EXIF rotation
                img.draft("RGB", (draft, draft))
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            return img.convert("RGB")
    except DecodeError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise DecodeError(f"not an image of an allowed format {ALLOWED_IMAGE_FORMATS}") from exc
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncation as OSError
        raise DecodeError(f"cannot decode image: {exc}") from exc


EOI = b"\xff\xd9"  # JPEG end-of-image marker: a truncated file lacks it
ORIENTATION = 0x0112  # EXIF tag


def device_decodable(data: bytes, max_pixels: int) -> bool:
    """Whether the model actor may decode these bytes on its device
    (`popray.media.decode_device`): a JPEG in RGB or greyscale, not rotated by EXIF, ending in
    its end-of-image marker, within the pixel limit. Reads the header only; anything
    else (and anything odd) goes through `load_image`, which explains what is wrong."""
    if not data.rstrip(b"\0").endswith(EOI):
        return False
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
            return (
                img.mode in ("RGB", "L")
                and img.width * img.height <= max_pixels
                and img.getexif().get(ORIENTATION, 1) == 1
            )
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        # load_image decodes it, or gives the reason
        return False


def resize(img: Image.Image, size: int = SIZE) -> np.ndarray:
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


@dataclass(frozen=True)
class View:
    """One augmented view's random draws (`view_params`), applied by `augmented_view`
    here and by `popray.media.decode_device.views` on a batch in the model actor."""

    flip: bool
    zoom: float  # > 1 zooms in
    dx: float  # pixels
    dy: float
    brightness: float
    contrast: float
    saturation: float


def view_params(rng: np.random.Generator, aug: AugmentConfig) -> View:
    """The draws of one view, in a fixed order (the cached embeddings depend on it)."""
    flip = bool(aug.flip and rng.random() < 0.5)
    z = 1.0 + rng.uniform(-aug.zoom, aug.zoom)
    dx, dy = rng.uniform(-aug.translate, aug.translate, 2) * SIZE
    return View(
        flip,
        z,
        dx,
        dy,
        1 + rng.uniform(-aug.brightness, aug.brightness),
        1 + rng.uniform(-aug.contrast, aug.contrast),
        1 + rng.uniform(-aug.saturation, aug.saturation),
    )


def view_rng(seed: int, sha256: str, view: int) -> np.random.Generator:
    """The generator of an image's view `view` (1, 2, ...): fixed by the seed and the file."""
    return np.random.default_rng([seed, int(sha256[:15], 16), view])


def augmented_view(base: np.ndarray, p: View) -> np.ndarray:
    """One view of a 224×224 image: flip, translate, zoom (reflect padding), and
    brightness / contrast / saturation jitter."""
    size = base.shape[0]
    pad = size // 4
    img = Image.fromarray(np.pad(base, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))
    if p.flip:
        img = ImageOps.mirror(img)
    side = size / p.zoom
    cx, cy = pad + size / 2 - p.dx, pad + size / 2 - p.dy
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    img = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    img = ImageEnhance.Brightness(img).enhance(p.brightness)
    img = ImageEnhance.Contrast(img).enhance(p.contrast)
    img = ImageEnhance.Color(img).enhance(p.saturation)
    return np.asarray(img, dtype=np.uint8)


def image_views(
    source: Path | bytes, n_views: int, seed: int, sha256: str, aug: AugmentConfig, max_pixels: int
) -> np.ndarray:
    """(1 + n_views, 224, 224, 3) uint8: the image, then its seeded augmented views."""
    base = resize(load_image(source, max_pixels, draft=DRAFT))
    views = [base]
    for v in range(1, n_views + 1):
        views.append(augmented_view(base, view_params(view_rng(seed, sha256, v), aug)))
    return np.stack(views)


def frame_times(duration_s: float, n: int = N_FRAMES, seconds: float = SECONDS) -> np.ndarray:
    """The paper's sampling: 1 frame/s over the first `seconds`; shorter videos get n frames
    evenly spaced over their length (so 15 s gives 0, 1, ..., 14 either way)."""
    step = 1.0 if duration_s >= seconds else duration_s / n
    return np.arange(n, dtype=np.float64) * step


def frame_indices(times: np.ndarray, fps: float, n_frames_total: int) -> np.ndarray:
    return np.clip(np.floor(times * fps + 0.5).astype(np.int64), 0, max(0, n_frames_total - 1))


def _decode_video(source: str | bytes, size: int) -> dict:
    """Runs in the decoder process: sample and decode the frames of a file (or of its
    bytes, as read from storage)."""
    import decord

    # Native size, then the same PIL resize as images: frames, thumbnails and images must
    # be comparable (dedup compares a thumbnail file with a first frame; the mixed models
    # put images and frames side by side).
    vr = decord.VideoReader(
        io.BytesIO(source) if isinstance(source, bytes) else source, num_threads=1
    )
    n_total = len(vr)
    fps = float(vr.get_avg_fps())
    if n_total <= 0 or not np.isfinite(fps) or fps <= 0:
        raise DecodeError(f"container reports {n_total} frames at {fps} fps")
    duration = n_total / fps
    times = frame_times(duration)
    idx = frame_indices(times, fps, n_total)
    native = vr.get_batch(idx.tolist()).asnumpy()
    if native.ndim != 4 or len(native) != len(idx) or native.shape[-1] != 3:
        raise DecodeError(f"decoded frames have shape {native.shape}")
    return {
        "frames": np.stack([resize(Image.fromarray(f), size) for f in native]),
        "fps": fps,
        "n_frames_total": n_total,
        "duration_s": duration,
        "frame_times_s": times,
    }


@functools.cache
def _video_worker() -> BoundedWorker:
    """This process's video decoder (a Ray worker keeps it from task to task)."""
    return BoundedWorker(_decode_video, preload=("numpy", "decord", "popray.media.decode"))


def video_frames(source: Path | bytes, timeout_s: float, size: int = SIZE) -> dict:
    """Sampled frames and metadata of a video (a file, or its bytes), decoded in a
    bounded child process."""
    arg = source if isinstance(source, bytes) else str(source)
    status, payload = _video_worker().call((arg, size), timeout_s)
    if status != "ok":
        raise DecodeError(payload)
    return payload


def describe(exc: BaseException) -> str:
    """A one-line reason for quarantine."""
    if isinstance(exc, DecodeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
