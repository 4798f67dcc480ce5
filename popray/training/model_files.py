"""The final models on disk: each in its own folder under OUT/models/, named by its
snapshot, and listed in table `models`; how train saves and reuses them, and how predict
and explain load them.

    OUT/models/<model>-k<k>-<snapshot>/model.pt     the classifier's state dict
                                       model.json    profile, model, k, width, scheme, backbone,
                                                     epochs, optimiser, snapshot, metrics
                                       items.parquet the media (id, sha256, class) it saw

A folder is written under a temporary name and renamed into place; the `models` table
then points at the new folders, and folders it no longer names are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import nn

from popray.config import ModelName, Scheme, TrainConfig
from popray.errors import ConfigError, MissingError
from popray.io.tables import table_schema
from popray.records import ModelCard, SavedModel
from popray.training.dataset import TrainingSet
from popray.training.models import REGISTRY, create_model
from popray.training.units import FORMAT

MODELS_DIR = "models"
POOLED = "*"  # the profile_id of the cross-profile models (popray.training.pooled)


def saved(folder: Path, snapshot: str, train_cfg: TrainConfig) -> SavedModel | None:
    """The metadata of a model already saved from the same data and settings, if any."""
    meta_file = folder / "model.json"
    if not meta_file.exists():
        return None
    meta = SavedModel.from_json(meta_file.read_text())
    same = meta.snapshot == snapshot and meta.train == train_cfg.model_dump()
    return meta if same else None


def _save(folder: Path, net: nn.Module, meta: SavedModel, items: pa.Table) -> None:
    """Write a model folder under a temporary name, then rename it into place."""
    tmp = folder.parent / f".{folder.name}-{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    torch.save(net.state_dict(), tmp / "model.pt")
    (tmp / "model.json").write_text(meta.to_json())
    pq.write_table(items, tmp / "items.parquet")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def _items(ds: TrainingSet, model: ModelName) -> pa.Table:
    """The media a final model trains on, in the row order of `folds.all_data`."""
    parts = ["image"]
    if REGISTRY[model].validate_on == "video":
        parts = ["video"] + (parts if REGISTRY[model].train_extra != "none" else [])
    rows = [
        {"media_id": m, "media_type": t, "sha256": s, "label": int(y)}
        for t in parts
        for m, s, y in zip(ds.side(t).ids, ds.side(t).sha256, ds.side(t).y, strict=True)
    ]
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("media_id", pa.string()),
                ("media_type", pa.string()),
                ("sha256", pa.string()),
                ("label", pa.int32()),
            ]
        ),
    )


def identity(
    ds: TrainingSet, backbone: str, model: ModelName, profile: str
) -> tuple[pa.Table, str]:
    """(the items a final model of `profile` trains on, its snapshot: a hash of the
    training code's format, backbone, labels, features, profile and items, which names and
    reuses its folder)."""
    items = _items(ds, model)
    snapshot = hashlib.sha256(
        json.dumps(
            [FORMAT, backbone, ds.scheme, ds.context, profile, items.to_pylist()], sort_keys=True
        ).encode()
    ).hexdigest()
    return items, snapshot


def folder_name(model: ModelName, k: int, snapshot: str) -> str:
    return f"{model}-k{k}-{snapshot[:12]}"


def save_model(root: Path, net: nn.Module, items: pa.Table, meta: SavedModel) -> SavedModel:
    """Save a freshly trained final model (`meta`: what `model.json` records, less the
    time) under its snapshot's name; returns the full metadata."""
    meta = replace(meta, created_at=datetime.now(UTC).isoformat())
    _save(root / folder_name(meta.model, meta.k, meta.snapshot), net, meta, items)
    return meta


def model_row(meta: SavedModel, items: pa.Table, features: str) -> ModelCard:
    """The `models` row of a saved final model."""
    n = {c["values"]: c["counts"] for c in pc.value_counts(items["media_type"]).to_pylist()}
    return ModelCard(
        scheme=meta.scheme,
        backbone=meta.backbone,
        features=features,
        model=meta.model,
        k=meta.k,
        profile_id=meta.profile_id,
        epochs=meta.epochs,
        seed=meta.seed,
        n_images=n.get("image", 0),
        n_videos=n.get("video", 0),
        snapshot=meta.snapshot,
        path=f"{MODELS_DIR}/{folder_name(meta.model, meta.k, meta.snapshot)}",
        created_at=datetime.fromisoformat(meta.created_at or ""),
    )


def base_meta(
    ds: TrainingSet,
    backbone: str,
    model: ModelName,
    k: int,
    profile: str,
    snapshot: str,
    train_cfg: TrainConfig,
) -> SavedModel:
    """What every final model's `model.json` records (its width is added once trained)."""
    return SavedModel(
        profile_id=profile,
        context_features=ds.context,
        model=model,
        k=k,
        scheme=ds.scheme,
        backbone=backbone,
        epochs=train_cfg.epochs,
        seed=0,
        train=train_cfg.model_dump(),
        snapshot=snapshot,
    )


def models_table(cards: list[ModelCard]) -> pa.Table:
    """Final models as table `models`."""
    return pa.Table.from_pylist([asdict(c) for c in cards], schema=table_schema("models"))


def has_models(out: Path, profile: str | None = None) -> bool:
    """Whether OUT has final models (of `profile`, when given)."""
    from popray.io import store

    if not store.has_table(out, "models"):
        return False
    return profile is None or profile in store.read_table(out, "models")["profile_id"].to_pylist()


def saved_models(
    out: Path,
    profile: str | None = None,
    scheme: Scheme | None = None,
    every_profile: bool = False,
) -> list[ModelCard]:
    """The rows of `models` that can score a bare media file (embeddings only, no context
    features) for one profile (or, `every_profile`, all of them; the cross-profile models,
    profile POOLED, only when named) and one label scheme: the one there is, or the one
    named (an error lists the choices when there are several)."""
    from popray.io import store

    if not has_models(out):
        raise MissingError(f"{out}: no trained models; run `popray train` first")
    models = [  # the cross-profile models only when asked for by name
        card
        for card in map(ModelCard.from_row, store.read_table(out, "models").to_pylist())
        if card.features == "embedding" and (card.profile_id != POOLED or profile == POOLED)
    ]
    if not models:
        raise MissingError(
            f"{out}: only models trained with context features, which need a post's "
            "metadata; train without --context to score bare files"
        )
    choices = [("scheme", scheme, "--scheme")]
    if not every_profile:
        choices.append(("profile_id", profile, "--profile"))
    for field, wanted, flag in choices:
        present = sorted({getattr(m, field) for m in models})
        if wanted is None and len(present) > 1:
            raise ConfigError(f"{out}: models for several {field}s {present}: choose with {flag}")
        if wanted is not None and wanted not in present:
            raise MissingError(f"{out}: no models for {field} {wanted!r}; trained: {present}")
        models = [m for m in models if getattr(m, field) == (wanted or present[0])]
    return models


def prune(out: Path, models: pa.Table) -> None:
    """Remove model folders (and leftovers of interrupted writes) the table does not name."""
    keep = {Path(p).name for p in models["path"].to_pylist()}
    root = out / MODELS_DIR
    for folder in root.iterdir() if root.exists() else ():
        if folder.name not in keep:
            shutil.rmtree(folder)


def load_final(out: Path, folder: str) -> tuple[nn.Module, SavedModel]:
    """A saved final model (eval mode) and its metadata, from its `models.path`."""
    path = out / folder
    meta_file = path / "model.json"
    if not meta_file.exists():
        raise MissingError(f"{path}: no saved model here; run `popray train`")
    meta = SavedModel.from_json(meta_file.read_text())
    if meta.context_features:
        raise ConfigError(
            f"{path}: this model was trained with context features (grid.context_features); "
            "scoring a bare media file would need its post's metadata, which predict and "
            "explain do not take yet: train without context features for them"
        )
    net = create_model(meta.model, meta.k, meta.width)
    net.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    return net.eval(), meta
