"""Grad-CAM of an image model (captum's `LayerGradCam`): the full network rebuilt from the
frozen backbone and a saved head, the heatmap of the top class over the photo, and
`GradCam`, the Ray actor that builds the backbone once and explains one profile's images
per call (popray.explain hands them out).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import torch
from matplotlib import colormaps
from PIL import Image
from torch import nn

from popray.errors import ConfigError, DecodeError
from popray.io.storage import Location
from popray.media import decode
from popray.media.backbones import Backbone, create_backbone
from popray.records import ExplainJob, Heatmap
from popray.training.model_files import load_final

OVERLAY_SIDE = 448  # longest side of a written heatmap


class FullNetwork(nn.Module):
    """Pixels (normalised, B x 3 x 224 x 224) -> backbone feature map -> pooled -> head.

    `feature_map` is an identity layer on the last convolutional feature map: the layer
    Grad-CAM attributes to, for any timm CNN."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone.model
        self.feature_map = nn.Identity()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.feature_map(self.backbone.forward_features(x))
        return self.head(self.backbone.forward_head(maps, pre_logits=True))


@dataclass
class Explainer:
    network: FullNetwork
    mean: torch.Tensor
    std: torch.Tensor
    k: int

    @classmethod
    def load(cls, out: Path, model_path: str, weights: str | None = None) -> Explainer:
        """The full network for the saved image model at `model_path` (a `models.path`)."""
        head, meta = load_final(out, model_path)
        if meta.model != "image":
            raise ConfigError(f"Grad-CAM needs the image model, not {meta.model!r}")
        backbone = create_backbone(meta.backbone, weights)
        network = FullNetwork(backbone, head).eval()
        return cls(network, *backbone.pixel_stats(), meta.k)

    def tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 at 224 x 224 -> normalised (1, 3, 224, 224)."""
        x = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1)[None].float()
        return (x.to(self.mean.device) - self.mean) / self.std

    def explain(self, source: Path | bytes) -> tuple[np.ndarray, np.ndarray, Image.Image]:
        """Class probabilities, the Grad-CAM map of the top class in [0, 1] (h x w of the
        feature map) and the original image, for one image (a file, or its bytes)."""
        from captum.attr import LayerGradCam

        image = decode.load_image(source, draft=decode.DRAFT)  # as embedded
        x = self.tensor(decode.resize(image))
        with torch.no_grad():
            proba = torch.softmax(self.network(x), dim=1)[0].cpu().numpy()
        top = int(proba.argmax())
        cam = LayerGradCam(self.network, self.network.feature_map)
        heat = cam.attribute(x, target=top, relu_attributions=True)[0, 0].detach().cpu().numpy()
        peak = heat.max()
        return proba, (heat / peak if peak > 0 else heat), image


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The heatmap (values in [0, 1]) upsampled over the image, jet colours."""
    image = image.copy()
    image.thumbnail((OVERLAY_SIDE, OVERLAY_SIDE))
    up = Image.fromarray((heat * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR)
    colours = colormaps["jet"](np.asarray(up) / 255.0)[..., :3]
    heat_rgb = Image.fromarray((colours * 255).astype(np.uint8))
    return Image.blend(image, heat_rgb, alpha)


@ray.remote
class GradCam:
    """A Ray actor: the backbone, built once; Grad-CAM for one profile's images per call
    (its head comes with the call). Reads export media through the export's storage and
    returns each heatmap as PNG bytes."""

    def __init__(self, backbone: str, weights: str | None, device: str) -> None:
        torch.set_num_threads(1)  # results independent of the actor count (see _actors)
        self.device = torch.device(device)
        self.backbone = create_backbone(backbone, weights)
        self.backbone.model.to(self.device)

    def explain(
        self, head: nn.Module, k: int, jobs: list[ExplainJob], export: Location
    ) -> list[Heatmap]:
        network = FullNetwork(self.backbone, head.to(self.device)).eval()
        explainer = Explainer(network, *self.backbone.pixel_stats(self.device), k)
        return [_heatmap(explainer, job, export) for job in jobs]


def _heatmap(explainer: Explainer, job: ExplainJob, export: Location) -> Heatmap:
    """One job's heatmap (in the actor), or why there is none."""
    if job.error is not None:  # a --media file the driver could not read
        return Heatmap(error=job.error)
    try:
        source = job.data if job.data is not None else export.read_bytes(job.file)
        proba, heat, image = explainer.explain(source)
    except (DecodeError, OSError) as exc:
        return Heatmap(error=str(exc))
    png = io.BytesIO()
    overlay(image, heat).save(png, format="PNG")
    return Heatmap(proba, png.getvalue())
