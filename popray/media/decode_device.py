"""JPEG decoding in the model actor, on its device: nvJPEG on a GPU, so that the CPU
decode tasks only read bytes (`embed.decode_jpeg_on`).

Which files: `decode.device_decodable` admits a JPEG in RGB or greyscale, with no EXIF
rotation, that ends in its end-of-image marker and is within the pixel limit. Everything
else (PNG, WebP, rotated, CMYK, truncated) and anything the decoder refuses takes the CPU
path of `popray.media.decode`, so a bad file is quarantined with the same reason either way.

The result is the CPU path's, to a fraction of a grey level (tests/test_decode_device.py):
- resize: bilinear with antialiasing, which is what PIL's BILINEAR does when it shrinks.
  It starts from the full-size image, as nvJPEG has no reduced-scale (DCT) decoding;
- views: the same seeded draws (`decode.view_params`) as PIL's, made for the whole batch
  at once: reflect padding, flip, the zoom and shift as PIL's own resampling weights
  (two matrix products per view), then the brightness, contrast and saturation blends,
  rounded and truncated to whole grey levels where PIL does.

torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec; they are
what the pinned versions have, and `decode_resized` is the one place that calls them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from popray.media import decode


def decode_resized(datas: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """Each JPEG as a (3, 224, 224) float tensor of whole grey levels on `device`; None
    where the decoder refuses the file (it goes the CPU way). One batched call, and one
    call per file only when the batch fails."""
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    try:
        images: list[torch.Tensor | None] = list(
            decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        )
    except RuntimeError:
        images = []
        for data in encoded:
            try:
                images.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                images.append(None)
    return [None if img is None else resize(img) for img in images]


def resize(img: torch.Tensor, size: int = decode.SIZE) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, size, size) float, rounded to whole grey levels like the
    uint8 image PIL gives."""
    x = F.interpolate(
        img[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return x[0].round_().clamp_(0, 255)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Image.blend: degenerate + factor * (x - degenerate), truncated, clipped."""
    return (degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)).clamp_(0, 255).floor_()


def _grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's convert("L"): ITU-R 601-2 luma, rounded, (N, 1, H, W)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True).round_()


def pil_weights(in_size: int, out_size: int, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """PIL's BILINEAR resampling of the span [lo, hi) of `in_size` pixels onto
    `out_size`, one span per view, as (views, out_size, in_size) weights: a triangle
    filter widened by the scale when it shrinks (antialiasing), cut where PIL cuts it, and
    normalised (Pillow's Resample.c, precompute_coeffs)."""
    scale = ((hi - lo) / out_size)[:, None, None]
    widen = scale.clamp(min=1.0)  # the filter's support, in input pixels
    centre = lo[:, None, None] + (torch.arange(out_size, device=lo.device)[:, None] + 0.5) * scale
    x = torch.arange(in_size, device=lo.device, dtype=torch.float32)[None, None, :]
    first = (centre - widen + 0.5).trunc().clamp(min=0)
    last = (centre + widen + 0.5).trunc().clamp(max=in_size)
    w = (1 - ((x - centre + 0.5) / widen).abs()).clamp(min=0) * ((x >= first) & (x < last))
    return w / w.sum(-1, keepdim=True)


def views(base: torch.Tensor, params: list[decode.View]) -> torch.Tensor:
    """(N, 3, S, S) float images (whole grey levels) and one View each -> their views."""
    size = base.shape[-1]
    pad = size // 4
    padded = F.pad(base, (pad, pad, pad, pad), mode="reflect")
    flip = torch.tensor([p.flip for p in params], device=base.device)
    padded = torch.where(flip.view(-1, 1, 1, 1), padded.flip(-1), padded)

    x_type = base.dtype

    def values(name: str) -> torch.Tensor:
        return torch.tensor([getattr(p, name) for p in params], device=base.device, dtype=x_type)

    side = size / values("zoom")
    x0 = pad + size / 2 - values("dx") - side / 2
    y0 = pad + size / 2 - values("dy") - side / 2
    wide = size + 2 * pad
    across = pil_weights(wide, size, x0, x0 + side)  # (N, S, wide)
    down = pil_weights(wide, size, y0, y0 + side)
    # horizontal pass, then vertical, each rounded to whole levels (PIL's order)
    x = (padded @ across.transpose(1, 2)[:, None]).round_().clamp_(0, 255)
    x = (down[:, None] @ x).round_().clamp_(0, 255)
    x = _blend(torch.zeros_like(x), x, values("brightness"))
    mean = (_grey(x).mean(dim=(1, 2, 3), keepdim=True) + 0.5).floor_()
    x = _blend(mean.expand_as(x), x, values("contrast"))
    return _blend(_grey(x).expand_as(x), x, values("saturation"))


def image_views(
    bases: list[torch.Tensor], shas: list[str], n_views: int, seed: int, aug
) -> torch.Tensor:
    """((1 + n_views) * N, 3, 224, 224): each image, then its seeded views (as
    decode.image_views gives them on the CPU)."""
    stacked = torch.stack(bases)
    if not n_views:
        return stacked
    params = [
        decode.view_params(decode.view_rng(seed, sha, v), aug)
        for sha in shas
        for v in range(1, n_views + 1)
    ]
    made = views(stacked.repeat_interleave(n_views, dim=0), params)
    made = made.view(len(bases), n_views, *stacked.shape[1:])
    return torch.cat([stacked[:, None], made], dim=1).flatten(0, 1)


def to_hwc_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float -> (N, H, W, 3) uint8 on the host (tests, comparisons)."""
    return x.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()
