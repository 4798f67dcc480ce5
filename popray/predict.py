"""Rank new media: "which of these photos and videos should we post?"

    popray predict --out out --media candidates/ [--media clip.mp4 ...] [--k 3]

The candidate files (no metadata needed) go through the same decoding and embedding as
the profile's media (Ray Data, the backbone the models were trained on); the final image
model scores images, the best video model for that k (by `metrics`) scores videos. Each
file gets its predicted class, the class probabilities and an expected class score
(sum of p_c * c / (k - 1): 0 = surely the least popular class, 1 = surely the most), a
Grad-CAM heatmap per image, and its rank by score. Classes are relative to the profile's
own media of the same type, as in training. A file that cannot be read gets its error
and the rest are still ranked. Table `predictions_new` holds the latest ranking. A
profile with no models of its own (`--profile NEW`) is ranked by the cross-profile
models (`popray.training.pooled`), and its rows say so (profile_id "*").
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from popray.config import KFOLD, EmbedConfig, ModelName, Scheme
from popray.errors import MissingError
from popray.io import store
from popray.io.storage import LOCAL_FILES
from popray.io.tables import table_schema
from popray.records import MediaItem, ModelCard
from popray.training.model_files import POOLED, has_models, load_final, saved_models
from popray.training.models import REGISTRY, model_input

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
PREDICT_DIR = "predict"


def candidate_files(paths: list[Path]) -> list[Path]:
    """The files named, and every non-hidden file inside the folders named (sorted)."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        else:
            found.append(path)
    return found


def choose_models(
    out: Path, k: int | None, profile: str | None = None, scheme: Scheme | None = None
) -> tuple[ModelCard, ModelCard | None]:
    """The profile's best final image model and its best video model (highest accuracy
    in the stratified folds, the protocol the final models' epochs come from) for k
    (default: the largest k with a saved image model). A profile with no model of its own
    gets the cross-profile models (profile_id POOLED), when there are some."""
    if profile not in (None, POOLED) and not has_models(out, profile) and has_models(out, POOLED):
        profile = POOLED  # a profile without history: the cross-profile models
    models = saved_models(out, profile, scheme)
    ks = sorted({m.k for m in models if REGISTRY[m.model].validate_on == "image"})
    if not ks or (k is not None and k not in ks):
        raise MissingError(f"{out}: no saved image model for k={k or 'any'}; trained: {ks}")
    k = k if k is not None else ks[-1]
    mine = [m for m in models if m.k == k]
    first = next(m for m in mine if REGISTRY[m.model].validate_on == "image")
    metrics = store.read_table(out, "metrics").to_pylist()
    accuracy = {
        m["model"]: m["accuracy_mean"]
        for m in metrics
        if (m["k"], m["profile_id"], m["scheme"], m["backbone"], m["features"], m["protocol"])
        == (k, first.profile_id, first.scheme, first.backbone, "embedding", KFOLD)
    }

    def best(media_type: str) -> ModelCard | None:
        of_type = [m for m in mine if REGISTRY[m.model].validate_on == media_type]
        return max(of_type, key=lambda m: accuracy.get(m.model, -1.0), default=None)

    image, video = best("image"), best("video")
    return image, video


def _score(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        x = torch.tensor(np.array(x[None], dtype=np.float32))  # a writable copy
        return torch.softmax(net(x), 1)[0].numpy()


def _model_input(model: ModelName, embeddings: np.ndarray) -> np.ndarray:
    """What a model eats from one decoded item's embeddings, as when it was validated."""
    spec = REGISTRY[model]
    return model_input(spec.scores_as, spec.validate_on, embeddings[None])[0]


def run_predict(
    out: Path,
    paths: list[Path],
    k: int | None = None,
    weights: str | None = None,
    profile: str | None = None,
    scheme: Scheme | None = None,
) -> pa.Table:
    """Score, explain and rank candidate media files with the models of one profile (and
    label scheme); writes table `predictions_new`. `weights`: the backbone weights the
    profile was embedded with (default source if None)."""
    from popray.media.embed_pipeline import run_pipeline
    from popray.media.gradcam import Explainer, overlay

    image_card, video_card = choose_models(out, k, profile, scheme)
    nets = {}
    for card in (image_card, video_card):
        if card is not None:
            nets[card.model] = load_final(out, card.path)[0]
    items, rows = _candidates(candidate_files(paths), image_card, video_card)
    cfg = EmbedConfig(backbone=image_card.backbone, weights=weights, views=0)
    results = {r.media_id: r for r in run_pipeline(items, cfg, LOCAL_FILES)} if items else {}
    explainer = (  # the gradient-boosted baseline has no gradients: no Grad-CAM
        Explainer.load(out, image_card.path, weights)
        if any(i.kind == "image" for i in items) and REGISTRY[image_card.model].learner == "torch"
        else None
    )
    folder = out / PREDICT_DIR  # may be a link into the published run: empty it, keep it
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():  # the table is replaced below: so are the heatmaps it lists
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    for item in items:
        row = rows[int(item.media_id)]
        result = results[item.media_id]
        if result.error:
            row["error"] = result.error
            continue
        card = image_card if item.kind == "image" else video_card
        proba = _score(nets[card.model], _model_input(card.model, np.asarray(result.embeddings)))
        row |= {
            "profile_id": card.profile_id,
            "for_profile": profile or card.profile_id,
            "model": card.model,
            "k": card.k,
            "pred": int(proba.argmax()),
            "proba": proba.astype(np.float32).tolist(),
            "score": float(proba @ np.arange(card.k) / (card.k - 1)),
        }
        if item.kind == "image" and explainer is not None:
            _, heat, image = explainer.explain(Path(item.path))
            target = folder / f"{int(item.media_id):04d}-{Path(item.path).stem[:60]}.png"
            overlay(image, heat).save(target)
            row["gradcam"] = str(target.relative_to(out))
    table = _ranked(rows)
    store.write_table(out, "predictions_new", table)
    store.refresh_views(out)
    return table


def _candidates(
    files: list[Path], image_card: ModelCard, video_card: ModelCard | None
) -> tuple[list[MediaItem], list[dict]]:
    """(the files to embed, one `predictions_new` row per file): a file that cannot be
    scored keeps its row, with the reason in `error`."""
    items, rows = [], []
    for i, path in enumerate(files):
        suffix = path.suffix.lower()
        kind = (
            "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None
        )
        row = {"file": str(path), "media_type": kind, "error": None}
        if kind is None:
            row["error"] = f"not an image ({sorted(IMAGE_SUFFIXES)}) or a video file"
        elif kind == "video" and video_card is None:
            row["error"] = f"no video model was trained for k={image_card.k}"
        elif not path.is_file():
            row["error"] = "file not found"
        else:
            items.append(MediaItem.of_file(str(i), path, kind))
        rows.append(row)
    return items, rows


def _ranked(rows: list[dict]) -> pa.Table:
    """The rows as table `predictions_new`, ranked by score (1 = the best; files that
    could not be scored last, without a rank)."""
    order = sorted(
        (i for i, r in enumerate(rows) if r.get("score") is not None),
        key=lambda i: -rows[i]["score"],
    )
    for rank, i in enumerate(order, start=1):
        rows[i]["rank"] = rank
    now = datetime.now(UTC)
    return pa.Table.from_pylist(
        [r | {"predicted_at": now} for r in rows], schema=table_schema("predictions_new")
    ).sort_by([("rank", "ascending")])
