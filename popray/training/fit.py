"""Training: one fold the paper's way (the function every grid trial calls, paper 4.2, 5.2),
and one model on all the data (the final models saved for prediction).

Adam (lr 1e-3), cross-entropy, 15 epochs; after each epoch the model is scored on the
validation fold and the weights of the epoch with the best validation accuracy (the
earliest, on ties) are kept, with their validation probabilities. For the image model
the training items carry several precomputed augmented views and each epoch samples
one view per item, so augmentation costs no backbone pass. The gradient-boosted
baselines (`gbdt`, `gbdt_video`) have no epochs: they are fitted once (every image view a
row) and report epoch 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from popray.config import ModelName, TrainConfig
from popray.training.models import REGISTRY, create_model

__all__ = ["FoldData", "FoldResult", "TrainConfig", "fit_all", "fit_fold"]


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


class _Trainer:
    """A fresh model, its optimiser and the epoch loop shared by fit_fold and fit_all."""

    def __init__(
        self, model_name: ModelName, k: int, width: int, cfg: TrainConfig, seed: int, device
    ):
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.device = torch.device(device)
        self.model = create_model(model_name, k, width).to(self.device)
        # fused: one kernel for every parameter's update; on a GRU trial's CPU step 0.78x
        # the time of the per-tensor loop, with the same updates to float rounding
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, fused=True)
        self.loss_fn = nn.CrossEntropyLoss()
        self.batch_size = cfg.batch_size

    def epoch(self, x: np.ndarray, y: torch.Tensor, views: bool) -> None:
        self.model.train()
        if views:  # one random view of each item this epoch
            pick = self.rng.integers(0, x.shape[1], len(x))
            x = x[np.arange(len(x)), pick]
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        order = torch.as_tensor(self.rng.permutation(len(x)), device=self.device)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            self.optimiser.zero_grad()
            self.loss_fn(self.model(x[batch]), y[batch]).backward()
            self.optimiser.step()

    def labels(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(y, dtype=torch.long, device=self.device)


def _fit_gbdt(
    model_name: ModelName, k: int, x: np.ndarray, y: np.ndarray, seed: int, views: bool
) -> nn.Module:
    """A gradient-boosted baseline fitted on every row (each image view its own row)."""
    if views:
        n, n_views = x.shape[:2]
        x, y = x.reshape(n * n_views, -1), np.repeat(y, n_views)
    return create_model(model_name, k, x.shape[-1]).fit(x, y, seed).eval()


def fit_fold(
    model_name: ModelName, k: int, data: FoldData, cfg: TrainConfig, seed: int, device: str = "cpu"
) -> FoldResult:
    """Train `model_name` on one fold and keep its best epoch (see the module docstring)."""
    if REGISTRY[model_name].learner == "gbdt":
        net = _fit_gbdt(model_name, k, data.x_train, data.y_train, seed, data.train_views)
        with torch.inference_mode():
            x_val = torch.as_tensor(data.x_val, dtype=torch.float32)
            proba = torch.softmax(net(x_val), dim=1).numpy()
        accuracy = float((proba.argmax(axis=1) == data.y_val).mean())
        return FoldResult(1, accuracy, proba, [accuracy], state_dict=net.state_dict())
    trainer = _Trainer(model_name, k, data.x_val.shape[-1], cfg, seed, device)
    y_train = trainer.labels(data.y_train)
    x_val = torch.as_tensor(data.x_val, dtype=torch.float32, device=trainer.device)
    best: FoldResult | None = None
    history = []
    for epoch in range(1, cfg.epochs + 1):
        trainer.epoch(data.x_train, y_train, data.train_views)
        trainer.model.eval()
        with torch.inference_mode():
            proba = torch.softmax(trainer.model(x_val), dim=1).float().cpu().numpy()
        accuracy = float((proba.argmax(axis=1) == data.y_val).mean())
        history.append(accuracy)
        if best is None or accuracy > best.val_accuracy:
            state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
            best = FoldResult(epoch, accuracy, proba, state_dict=state)
    best.history = history
    return best


def fit_all(
    model_name: ModelName,
    k: int,
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    train_views: bool = False,
    device: str = "cpu",
) -> nn.Module:
    """Train `model_name` on every item for `cfg.epochs` epochs (no validation left to
    pick an epoch: the caller passes the grid's typical best epoch); returns it in eval mode."""
    if REGISTRY[model_name].learner == "gbdt":
        return _fit_gbdt(model_name, k, x, y, seed, train_views)
    trainer = _Trainer(model_name, k, x.shape[-1], cfg, seed, device)
    y_t = trainer.labels(y)
    for _ in range(cfg.epochs):
        trainer.epoch(x, y_t, train_views)
    return trainer.model.eval().cpu()
