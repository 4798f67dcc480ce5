"""The paper's four classifiers over frozen-backbone embeddings, from one registry.

    create_model("video", k=3)          # GRU(8, sequences) -> GRU(6) -> dense(8) -> head

- `image`: dropout 0.2 + dense head on an image embedding (B, width).
- `video`: CNN-RNN on the 15 frame embeddings (B, 15, width): GRU(8) returning
  sequences -> GRU(6) -> dropout 0.2 -> dense(8, ReLU) -> head; dropout 0.2 on each GRU's
  input (Keras' `dropout=`). The first GRU has 3·(8·width + 8·8 + 2·8) parameters:
  30,960 for width 1280, as in the paper.
- `image_to_video`: the `video` architecture; its training folds also hold static
  15-frame sequences made from images (the data differs, not the network).
- `video_to_image`: the `image` architecture on max-pooled frame embeddings; trained on
  images and videos.

Outputs are k logits (cross-entropy); for k = 2 that equals the paper's sigmoid unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

DROPOUT = 0.2


class DenseHead(nn.Module):
    """Dropout then one linear layer: the paper's head on a frozen backbone."""

    def __init__(self, width: int, k: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(DROPOUT)
        self.fc = nn.Linear(width, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))


class CnnRnn(nn.Module):
    """GRU(8, sequences) -> GRU(6) -> dense(8) -> head over (B, T, width) frame embeddings."""

    def __init__(self, width: int, k: int) -> None:
        super().__init__()
        self.in_dropout1 = nn.Dropout(DROPOUT)
        self.gru1 = nn.GRU(width, 8, batch_first=True)
        self.in_dropout2 = nn.Dropout(DROPOUT)
        self.gru2 = nn.GRU(8, 6, batch_first=True)
        self.dropout = nn.Dropout(DROPOUT)
        self.dense = nn.Linear(6, 8)
        self.head = nn.Linear(8, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.gru1(self.in_dropout1(x))
        _, last = self.gru2(self.in_dropout2(seq))
        hidden = torch.relu(self.dense(self.dropout(last[-1])))
        return self.head(hidden)


@dataclass(frozen=True)
class ModelSpec:
    """What a model eats and what it is trained and validated on."""

    name: str
    input: Literal["vector", "sequence"]
    validate_on: Literal["image", "video"]
    train_extra: Literal["none", "images_as_static_videos", "images"]


REGISTRY: dict[str, ModelSpec] = {
    "image": ModelSpec("image", "vector", "image", "none"),
    "video": ModelSpec("video", "sequence", "video", "none"),
    "image_to_video": ModelSpec("image_to_video", "sequence", "video", "images_as_static_videos"),
    "video_to_image": ModelSpec("video_to_image", "vector", "video", "images"),
}


def create_model(name: str, k: int, width: int = 1280) -> nn.Module:
    """A fresh, randomly initialised classifier `name` with k classes."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(REGISTRY)}")
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if REGISTRY[name].input == "sequence":
        return CnnRnn(width, k)
    return DenseHead(width, k)
