"""Training one fold: the single function every grid trial calls (paper 4.2, 5.2).

Adam (lr 1e-3), cross-entropy, 15 epochs; after each epoch the model is scored on the
validation fold and the weights of the epoch with the best validation accuracy (the
earliest, on ties) are kept, with their validation probabilities. For the image model
the training items carry several precomputed augmented views and each epoch samples
one view per item, so augmentation costs no backbone pass.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from popray.models import create_model


class TrainConfig(BaseModel):
    """Optimiser settings (the paper's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=15, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=32, ge=1)


@dataclass
class FoldData:
    """One fold. x_train is (n, width), (n, views, width) when `train_views`, or
    (n, 15, width) for the sequence models; x_val has no views axis."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    train_views: bool = False


@dataclass
class FoldResult:
    best_epoch: int  # 1-based
    val_accuracy: float
    val_proba: np.ndarray  # (n_val, k), from the kept weights
    history: list[float] = field(default_factory=list)  # validation accuracy per epoch
    state_dict: dict | None = None


def fit_fold(model_name: str, k: int, data: FoldData, cfg: TrainConfig, seed: int) -> FoldResult:
    """Train `model_name` on one fold and keep its best epoch (see the module docstring)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    width = data.x_val.shape[-1]
    model = create_model(model_name, k, width)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss()
    y_train = torch.as_tensor(data.y_train, dtype=torch.long)
    x_val = torch.as_tensor(data.x_val, dtype=torch.float32)
    best: FoldResult | None = None
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        x_epoch = data.x_train
        if data.train_views:  # one random view of each item this epoch
            views = rng.integers(0, data.x_train.shape[1], len(data.x_train))
            x_epoch = data.x_train[np.arange(len(data.x_train)), views]
        x_epoch = torch.as_tensor(x_epoch, dtype=torch.float32)
        order = torch.as_tensor(rng.permutation(len(x_epoch)))
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            optimiser.zero_grad()
            loss_fn(model(x_epoch[batch]), y_train[batch]).backward()
            optimiser.step()
        model.eval()
        with torch.inference_mode():
            proba = torch.softmax(model(x_val), dim=1).numpy()
        accuracy = float((proba.argmax(axis=1) == data.y_val).mean())
        history.append(accuracy)
        if best is None or accuracy > best.val_accuracy:
            best = FoldResult(epoch, accuracy, proba, state_dict=copy.deepcopy(model.state_dict()))
    best.history = history
    return best
