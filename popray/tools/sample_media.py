"""Pixels for the sample profiles: photo compositions and H.264 videos.

Each media item shows one *subject*, a public-domain photo shipped inside scikit-image
(a cat, a cup of coffee, an astronaut, ...), cropped, scaled, flipped and placed on a
textured or gradient background, so that no two posts look alike but an ImageNet CNN
still sees what they show. Videos pan and zoom over such compositions, with cuts
between scenes, and are written as H.264 MP4 with PyAV.

Colour conversion between RGB and the encoder's YUV 4:2:0 is done here, in integer
numpy (BT.601, limited range, as FFmpeg's default), never by libswscale: swscale's SIMD
kernels can read memory they never initialised (process-dependent bytes) at widths that
are not a multiple of 32, so the same seed gave different MP4 bytes within one process
on some machines. The encoder and decoder only ever see and give yuv420p planes.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import numpy as np
import skimage.data
from PIL import Image, ImageEnhance, ImageOps

# Subject name -> file inside skimage.data (bundled with the wheel, nothing is downloaded).
SUBJECT_FILES = {
    "cat": "chelsea.png",
    "coffee": "coffee.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
    "horse": "horse.png",
    "coins": "coins.png",
    "text": "text.png",
}
EXTRA_FILES = {"logo": "logo.png", "product_sheet": "page.png"}
TEXTURES = ("brick.png", "grass.png", "gravel.png")


@cache
def _photo(filename: str) -> Image.Image:
    """A bundled scikit-image photo as RGB (alpha composited on white)."""
    img = Image.open(Path(skimage.data.__file__).parent / filename)
    img.load()
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return img.convert("RGB")


def subject_photo(name: str) -> Image.Image:
    return _photo(SUBJECT_FILES.get(name) or EXTRA_FILES[name])


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    if rng.random() < 0.5:
        tex = _photo(str(rng.choice(TEXTURES))).convert("L")
        scale = rng.uniform(0.6, 1.4)
        tex = tex.resize((max(8, int(tex.width * scale)), max(8, int(tex.height * scale))))
        tex = tex.crop((0, 0, min(w, tex.width), min(h, tex.height))).resize(size)
        tint = tuple(int(c) for c in rng.integers(40, 255, 3))
        return ImageOps.colorize(tex, black=(0, 0, 0), white=tint)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, h if rng.random() < 0.5 else w)
    grad = a[None, :] * (1 - ramp[:, None]) + b[None, :] * ramp[:, None]
    if len(ramp) == h:
        arr = np.repeat(grad[:, None, :], w, axis=1)
    else:
        arr = np.repeat(grad[None, :, :], h, axis=0)
    return Image.fromarray(arr.astype(np.uint8))


def compose(rng: np.random.Generator, subject: str, size: tuple[int, int]) -> Image.Image:
    """One photo of `subject` on a random background, `size` = (width, height)."""
    canvas = _background(rng, size)
    photo = subject_photo(subject)
    # A random crop keeping 55-100% of each side of the subject photo.
    fw, fh = rng.uniform(0.55, 1.0, 2)
    cw, ch = int(photo.width * fw), int(photo.height * fh)
    x0 = int(rng.integers(0, photo.width - cw + 1))
    y0 = int(rng.integers(0, photo.height - ch + 1))
    crop = photo.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        crop = ImageOps.mirror(crop)
    # Scaled to cover 45-90% of the canvas' shorter side, at a random place.
    target = rng.uniform(0.45, 0.9) * min(size)
    scale = target / max(crop.size)
    crop = crop.resize((max(8, int(crop.width * scale)), max(8, int(crop.height * scale))))
    crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.8, 1.2))
    crop = ImageEnhance.Color(crop).enhance(rng.uniform(0.7, 1.3))
    px = int(rng.integers(0, max(1, size[0] - crop.width + 1)))
    py = int(rng.integers(0, max(1, size[1] - crop.height + 1)))
    canvas.paste(crop, (px, py))
    return canvas


def save_image(img: Image.Image, path: Path, fmt: str, exif_rotate: bool = False) -> None:
    """Save as JPEG, PNG or WEBP; `exif_rotate` stores the pixels turned 90° with an EXIF
    Orientation tag (6) that turns them back, as phone cameras do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "JPEG":
        if exif_rotate:
            exif = Image.Exif()
            exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
            img.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=90, exif=exif)
        else:
            img.save(path, "JPEG", quality=90)
    elif fmt == "PNG":
        img.save(path, "PNG", optimize=False)
    elif fmt == "WEBP":
        img.save(path, "WEBP", quality=85, method=4)
    else:
        raise ValueError(f"unsupported sample image format {fmt!r}")


# Full-range (JPEG) Y and Cb/Cr to the limited range an H.264 yuv420p stream declares.
_LIMITED_Y = [16 + (219 * i + 127) // 255 for i in range(256)]
_LIMITED_C = [16 + (224 * i + 127) // 255 for i in range(256)]


def rgb_to_yuv420p(img: Image.Image) -> np.ndarray:
    """An RGB image -> (3h/2, w) uint8 yuv420p planes (Y, then U, then V, as PyAV's
    `VideoFrame.from_ndarray(..., format="yuv420p")` takes them).

    PIL's integer BT.601 YCbCr (full range), mapped to limited range by a table; chroma
    is the mean of each 2x2 block (`Image.reduce`). Integer arithmetic in plain C: the
    same pixels give the same planes on every machine, in every process."""
    w, h = img.size
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {w}x{h}")
    y, cb, cr = img.convert("RGB").convert("YCbCr").split()
    planes = (y.point(_LIMITED_Y), cb.reduce(2).point(_LIMITED_C), cr.reduce(2).point(_LIMITED_C))
    return np.concatenate([np.asarray(p).reshape(-1) for p in planes]).reshape(h * 3 // 2, w)


def yuv420p_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """(3h/2, w) uint8 yuv420p planes -> (h, w, 3) uint8 RGB (BT.601 limited range, in
    8.8 fixed point; chroma repeated over its 2x2 block): the inverse of `rgb_to_yuv420p`."""
    h, w = yuv.shape[0] * 2 // 3, yuv.shape[1]
    flat = yuv.reshape(-1).astype(np.int32)
    y = flat[: h * w].reshape(h, w) - 16
    u = flat[h * w : h * w * 5 // 4].reshape(h // 2, w // 2) - 128
    v = flat[h * w * 5 // 4 :].reshape(h // 2, w // 2) - 128
    u = u.repeat(2, axis=0).repeat(2, axis=1)
    v = v.repeat(2, axis=0).repeat(2, axis=1)
    r = (298 * y + 409 * v + 128) >> 8
    g = (298 * y - 100 * u - 208 * v + 128) >> 8
    b = (298 * y + 516 * u + 128) >> 8
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def _encoder(container, fps: Fraction, size: tuple[int, int], crf: int):
    """An H.264 stream whose bytes depend on its input alone: one encoder thread, and
    x264's `cpu-independent` (on AVX-512 machines its default assembly gave different
    bytes for the same frames from one encode to the next)."""
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.thread_count = 1
    stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": "cpu-independent=1"}
    return stream


def _encode(container, stream, yuv: np.ndarray | None) -> None:
    """Encode one frame of yuv420p planes (None: flush the encoder)."""
    frame = None if yuv is None else av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    for packet in stream.encode(frame):
        container.mux(packet)


def _decoded_yuv(path: Path):
    """Every frame of a video as yuv420p planes, as the decoder gives them (no conversion)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.format.name != "yuv420p":
                raise ValueError(f"{path}: frames are {frame.format.name}, not yuv420p")
            yield frame.to_ndarray(format="yuv420p")


def _scene_frames(
    rng: np.random.Generator, subject: str, size: tuple[int, int], n: int
) -> list[Image.Image]:
    """n frames panning and zooming over one composition (a Ken Burns shot)."""
    w, h = size
    big = compose(rng, subject, (int(w * 1.5), int(h * 1.5)))
    z0, z1 = rng.uniform(1.0, 1.4, 2)
    cx0, cy0, cx1, cy1 = rng.uniform(0.35, 0.65, 4)
    frames = []
    for i in range(n):
        u = i / max(1, n - 1)
        zoom = z0 + (z1 - z0) * u
        cw, ch = big.width / zoom / 1.0, big.height / zoom / 1.0
        cx = (cx0 + (cx1 - cx0) * u) * big.width
        cy = (cy0 + (cy1 - cy0) * u) * big.height
        left = min(max(0.0, cx - cw / 2), big.width - cw)
        top = min(max(0.0, cy - ch / 2), big.height - ch)
        box = (left, top, left + cw, top + ch)
        frames.append(big.resize(size, Image.Resampling.BILINEAR, box=box))
    return frames


def write_video(
    path: Path,
    rng: np.random.Generator,
    subject: str,
    duration_s: float,
    fps: Fraction,
    size: tuple[int, int],
    crf: int = 26,
    faststart: bool = False,
) -> None:
    """Write an H.264 MP4 of `subject` (1-3 scenes)."""
    n_frames = max(1, round(duration_s * float(fps)))
    n_scenes = int(rng.integers(1, 4))
    cuts = (
        sorted(
            rng.choice(
                np.arange(1, n_frames), size=min(n_scenes - 1, n_frames - 1), replace=False
            ).tolist()
        )
        if n_frames > 1
        else []
    )
    bounds = [0, *cuts, n_frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = _encoder(container, fps, size, crf)
        for a, b in itertools.pairwise(bounds):
            for img in _scene_frames(rng, subject, size, b - a):
                _encode(container, stream, rgb_to_yuv420p(img))
        _encode(container, stream, None)


def first_frame(path: Path) -> np.ndarray:
    """The first decoded frame (RGB): what a platform's automatic cover image shows."""
    return yuv420p_to_rgb(next(_decoded_yuv(path)))


def reencode_video(src: Path, dst: Path, crf: int) -> None:
    """Decode `src` and encode it again at another quality (same frames, rate and size)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as inp:
        ctx = inp.streams.video[0].codec_context
        rate, size = inp.streams.video[0].average_rate, (ctx.width, ctx.height)
    with av.open(str(dst), mode="w") as out:
        stream = _encoder(out, rate, size, crf)
        for yuv in _decoded_yuv(src):
            _encode(out, stream, yuv)
        _encode(out, stream, None)
