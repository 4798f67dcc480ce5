"""Grad-CAM for the image model (paper 5.3): where in a photo the prediction comes from.

    popray explain --out out [--k 2] [--per-class 3] [--extremes 3] [--media PATH ...]

The image model is a head over frozen backbone features, so the full network is rebuilt
(backbone -> pooled features -> the saved final head) and Grad-CAM (captum's
`LayerGradCam`) is taken for the top class on the backbone's last convolutional feature
map, upsampled and laid over the original photo. Explained: a few labelled images of
each class, each profile's highest- and lowest-scored images (their out-of-fold score,
for the report's "what works"), and any file given. Heatmaps go to
`OUT/explain/k<k>/<name>.png`, and table `explanations` lists them.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from matplotlib import colormaps
from PIL import Image
from torch import nn

from popray import decode, store
from popray.backbones import Backbone, create_backbone
from popray.final import load_final
from popray.tables import EXPLANATIONS

EXPLAIN_DIR = "explain"
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
        if meta["model"] != "image":
            raise ValueError(f"Grad-CAM needs the image model, not {meta['model']!r}")
        backbone = create_backbone(meta["backbone"], weights)
        network = FullNetwork(backbone, head).eval()
        return cls(network, *backbone.pixel_stats(), meta["k"])

    def tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 at 224 x 224 -> normalised (1, 3, 224, 224)."""
        x = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1)[None].float()
        return (x - self.mean) / self.std

    def explain(self, source: Path | bytes) -> tuple[np.ndarray, np.ndarray, Image.Image]:
        """Class probabilities, the Grad-CAM map of the top class in [0, 1] (h x w of the
        feature map) and the original image, for one image (a file, or its bytes)."""
        from captum.attr import LayerGradCam

        image = decode.load_image(source, draft=decode.DRAFT)  # as embedded
        x = self.tensor(decode.resize(image))
        with torch.no_grad():
            proba = torch.softmax(self.network(x), dim=1)[0].numpy()
        top = int(proba.argmax())
        cam = LayerGradCam(self.network, self.network.feature_map)
        heat = cam.attribute(x, target=top, relu_attributions=True)[0, 0].detach().numpy()
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


def _image_models(out: Path, k: int | None, profile: str | None, scheme: str | None) -> list:
    """The saved image models to explain (the smallest k, or k): of `profile`, or of
    every profile."""
    from popray.final import saved_models

    models = saved_models(out, profile, scheme, every_profile=profile is None)
    images = [m for m in models if m["model"] == "image" and k in (None, m["k"])]
    picked = {}
    for m in sorted(images, key=lambda m: -m["k"]):  # the smallest k wins
        picked[m["profile_id"]] = m
    if not picked:
        raise FileNotFoundError(
            f"{out}: no saved image model{'' if k is None else f' for k={k}'}; run `popray train`"
        )
    return [picked[p] for p in sorted(picked)]


def _samples(
    out: Path, profile: str, scheme: str, k: int, per_class: int, seed: int = 0
) -> list[dict]:
    """`per_class` labelled images of each class (of the model's profile and scheme),
    drawn with a fixed seed."""
    con = store.connect(out)
    try:
        rows = (
            con.sql(
                "SELECT l.media_id, l.class AS label, m.path FROM labels l "
                "JOIN media m USING (media_id) WHERE l.k = $k AND l.scheme = $scheme "
                "AND l.profile_id = $profile AND l.media_type = 'image' "
                "AND l.class IS NOT NULL ORDER BY l.media_id",
                params={"k": k, "scheme": scheme, "profile": profile},
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    rng = np.random.default_rng(seed)
    picked = []
    for label in range(k):
        mine = [r for r in rows if r["label"] == label]
        picked += [mine[i] for i in sorted(rng.permutation(len(mine))[:per_class])]
    return picked


def _extremes(out: Path, spec: dict, n: int) -> list[dict]:
    """The profile's `n` highest- and `n` lowest-scored validated images (out-of-fold
    scores of its image model, schemas/sql/scored_images.sql), as explain jobs."""
    from popray.labels import sql_text

    if n <= 0 or not store.has_table(out, "predictions"):
        return []
    params = {"profile": spec["profile_id"], "scheme": spec["scheme"], "k": spec["k"]}
    con = store.connect(out)
    try:
        sql = con.sql(sql_text("scored_images"), params=params | {"backbone": spec["backbone"]})
        rows = sql.to_arrow_table().to_pylist()
    finally:
        con.close()
    n = min(n, len(rows) // 2)  # the two ends never share an image
    ends = [("top", r) for r in rows[:n]] + [("bottom", r) for r in rows[len(rows) - n :]]
    return [
        {"media_id": r["media_id"], "label": r["label"], "file": r["path"], "picked": picked}
        | {"score": r["score"]}
        for picked, r in ends
    ]


def run_explain(
    out: Path,
    k: int | None = None,
    per_class: int = 3,
    media: list[Path] | None = None,
    weights: str | None = None,
    profile: str | None = None,
    scheme: str | None = None,
    extremes: int = 3,
) -> pa.Table:
    """Heatmaps for a sample of each class of each profile (or of `profile`) and for its
    `extremes` highest- and lowest-scored images (out of fold), from the export, and for
    every `media` file; writes them and table `explanations`. A file that cannot be read
    gets its error in the table instead of a heatmap."""
    from popray.ingest import input_dir_of

    specs = _image_models(out, k, profile, scheme)
    if media and len(specs) > 1:
        raise ValueError(f"{out}: models of {len(specs)} profiles; choose one with --profile")
    k = specs[0]["k"]
    folder = out / EXPLAIN_DIR / f"k{k}"
    if folder.exists():  # the table is replaced below: so are the heatmaps it lists
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rows = []
    export = input_dir_of(out)
    for spec in specs:
        explainer = Explainer.load(out, spec["path"], weights)
        jobs = [  # export media are read through the export's storage; --media files locally
            {"media_id": r["media_id"], "label": r["label"], "file": r["path"]}
            | {"picked": "class_sample", "score": None}
            for r in _samples(out, spec["profile_id"], spec["scheme"], k, per_class)
        ]
        jobs += _extremes(out, spec, extremes)
        jobs += [
            {"media_id": None, "label": None, "file": Path(p), "picked": "file", "score": None}
            for p in media or []
        ]
        rows += [_explain_one(out, explainer, spec, job, folder, export) for job in jobs]
    table = pa.Table.from_pylist(rows, schema=EXPLANATIONS)
    store.write_table(out, "explanations", table, part=f"k{k}")
    store.refresh_views(out)
    return table


def _explain_one(
    out: Path, explainer: Explainer, spec: dict, job: dict, folder: Path, export
) -> dict:
    """One heatmap (or the error that prevented it): a row of `explanations`."""
    in_export = isinstance(job["file"], str)
    shown = export.display(job["file"]) if in_export else str(job["file"])
    row = {"k": explainer.k, "model_path": spec["path"], "profile_id": spec["profile_id"]}
    row |= job | {"file": shown}
    try:
        source = export.read_bytes(job["file"]) if in_export else job["file"]
        proba, heat, image = explainer.explain(source)
    except (decode.DecodeError, OSError) as exc:
        return row | {"pred": None, "proba": None, "path": None, "error": str(exc)}
    name = job["media_id"] or _file_name(Path(job["file"]))
    target = folder / f"{name}.png"
    overlay(image, heat).save(target)
    return row | {
        "pred": int(proba.argmax()),
        "proba": proba.astype(np.float32).tolist(),
        "path": str(target.relative_to(out)),
        "error": None,
    }


def _file_name(path: Path) -> str:
    """A file's heatmap name: its stem plus a short hash of its full path (unique)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem)[:60]
    return f"file-{stem}-{digest}"
