"""Final models: after the grid, each (model, k) trained once on all its data and saved
for prediction, with everything needed to trust and reuse it.

    OUT/models/<model>-k<k>-<snapshot>/model.pt     the classifier's state dict
                                       model.json    model, k, width, scheme, backbone,
                                                     epochs, optimiser, snapshot, metrics
                                       items.parquet the media (id, sha256, class) it saw

No data are left to pick an epoch, so a final model trains for the median best epoch of
its grid trials. A folder is written under a temporary name and renamed into place; the
`models` table then points at the new folders, and folders it no longer names are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import nn

from popray.config import GridConfig
from popray.dataset import Dataset
from popray.folds import all_data
from popray.models import REGISTRY, create_model
from popray.tables import MODELS
from popray.train import fit_all

MODELS_DIR = "models"


def _items(ds: Dataset, model: str) -> pa.Table:
    """The media a final model trains on, in the row order of `folds.all_data`."""
    parts = [("image", ds.image_ids, ds.image_sha256, ds.image_y)]
    video = ("video", ds.video_ids, ds.video_sha256, ds.video_y)
    if REGISTRY[model].validate_on == "video":
        parts = [video] + (parts if REGISTRY[model].train_extra != "none" else [])
    rows = [
        {"media_id": m, "media_type": t, "sha256": s, "label": int(y)}
        for t, ids, shas, ys in parts
        for m, s, y in zip(ids, shas, ys, strict=True)
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


def _epochs(trials: pa.Table, model: str, k: int) -> int:
    mine = trials.filter(pc.and_(pc.equal(trials["model"], model), pc.equal(trials["k"], k)))
    return max(1, round(float(np.median(mine["best_epoch"].to_numpy()))))


def _saved(folder: Path, snapshot: str, train_cfg) -> dict | None:
    """The metadata of a model already saved from the same data and settings, if any."""
    meta_file = folder / "model.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    same = meta["snapshot"] == snapshot and meta["train"] == train_cfg.model_dump()
    return meta if same else None


def _save(folder: Path, net: nn.Module, meta: dict, items: pa.Table) -> None:
    """Write a model folder under a temporary name, then rename it into place."""
    tmp = folder.parent / f".{folder.name}-{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    torch.save(net.state_dict(), tmp / "model.pt")
    (tmp / "model.json").write_text(json.dumps(meta, indent=2))
    pq.write_table(items, tmp / "items.parquet")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def _final_model(
    root: Path,
    ds: Dataset,
    cfg: GridConfig,
    backbone: str,
    model: str,
    k: int,
    epochs: int,
    accuracy: float | None,
) -> dict:
    """Train (or reuse) and save one final model; its row of the `models` table."""
    items = _items(ds, model)
    snapshot = hashlib.sha256(
        json.dumps([backbone, ds.scheme, items.to_pylist()], sort_keys=True).encode()
    ).hexdigest()
    train_cfg = cfg.train.model_copy(update={"epochs": epochs})
    name = f"{model}-k{k}-{snapshot[:12]}"
    meta = _saved(root / name, snapshot, train_cfg)
    if meta is None:  # not saved yet from the same data and settings
        x, y, views = all_data(ds, model)
        net = fit_all(model, k, x, y, train_cfg, seed=0, train_views=views)
        meta = {
            "model": model,
            "k": k,
            "width": int(x.shape[-1]),
            "scheme": ds.scheme,
            "backbone": backbone,
            "epochs": epochs,
            "seed": 0,
            "train": train_cfg.model_dump(),
            "snapshot": snapshot,
            "grid_accuracy_mean": accuracy,
            "created_at": datetime.now(UTC).isoformat(),
        }
        _save(root / name, net, meta, items)
    n = {c["values"]: c["counts"] for c in pc.value_counts(items["media_type"]).to_pylist()}
    return {
        "scheme": ds.scheme,
        "backbone": backbone,
        "model": model,
        "k": k,
        "epochs": epochs,
        "seed": 0,
        "n_images": n.get("image", 0),
        "n_videos": n.get("video", 0),
        "snapshot": snapshot,
        "path": f"{MODELS_DIR}/{name}",
        "created_at": datetime.fromisoformat(meta["created_at"]),
    }


def train_final(
    out: Path,
    datasets: dict[int, Dataset],
    cfg: GridConfig,
    trials: pa.Table,
    metrics: pa.Table,
    backbone: str,
    cells: list[tuple[str, int]] | None = None,
) -> pa.Table:
    """Train, save and list (table `models`) one final model per (model, k); a model
    already saved from the same items, labels and settings is reused."""
    root = out / MODELS_DIR
    root.mkdir(parents=True, exist_ok=True)
    accuracy = {(r["model"], r["k"]): r["accuracy_mean"] for r in metrics.to_pylist()}
    rows = [
        _final_model(
            root, ds, cfg, backbone, model, k, _epochs(trials, model, k), accuracy.get((model, k))
        )
        for model, k in cells or [(m, k) for m in cfg.models for k in sorted(datasets)]
        for ds in [datasets[k]]
    ]
    return pa.Table.from_pylist(rows, schema=MODELS)


def prune(out: Path, models: pa.Table) -> None:
    """Remove model folders (and leftovers of interrupted writes) the table does not name."""
    keep = {Path(p).name for p in models["path"].to_pylist()}
    root = out / MODELS_DIR
    for folder in root.iterdir() if root.exists() else ():
        if folder.name not in keep:
            shutil.rmtree(folder)


def load_final(out: Path, folder: str) -> tuple[nn.Module, dict]:
    """A saved final model (eval mode) and its metadata, from its `models.path`."""
    path = out / folder
    meta_file = path / "model.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{path}: no saved model here; run `popray train`")
    meta = json.loads(meta_file.read_text())
    net = create_model(meta["model"], meta["k"], meta["width"])
    net.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    return net.eval(), meta
