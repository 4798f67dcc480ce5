"""The paper's four classifiers over frozen-backbone embeddings, from one registry.

    create_model("video", k=3)          # GRU(8, sequences) -> GRU(6) -> dense(8) -> head

- `image`: dropout 0.2 + dense head on an image embedding (B, width).
- `video`: CNN-RNN on the 15 frame embeddings (B, 15, width): GRU(8) returning
  sequences -> GRU(6) -> dropout 0.2 -> dense(8, ReLU) -> head; dropout 0.2 on each GRU's
  input as Keras' `dropout=` does it: one mask per sequence, the same at every timestep
  (`SequenceDropout`). The first GRU has 3·(8·width + 8·8 + 2·8) parameters:
  30,960 for width 1280, as in the paper.
- `image_to_video`: the `video` architecture; its training folds also hold static
  15-frame sequences made from images (the data differs, not the network).
- `video_to_image`: the `image` architecture on max-pooled frame embeddings; trained on
  images and videos.

Outputs are k logits (cross-entropy); for k = 2 that equals the paper's sigmoid unit.

Beside them, the field's usual recipe, frozen embeddings into gradient-boosted trees (the
SMP Challenge winners'), as a baseline the paper's heads can be measured against on the
same items, folds and windows:

- `gbdt`: scikit-learn's HistGradientBoostingClassifier on a PCA of the image embedding
  (every augmented view a training row), validated on images;
- `gbdt_video`: the same on a video's max-pooled frame embedding, validated on videos.

Context features, when on, are appended to the vectors as for the other models.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from popray.config import ModelName
from popray.errors import ConfigError
from popray.io.tables import N_FRAMES
from popray.training.gru import CpuTrainedGru

DROPOUT = 0.2


class DenseHead(nn.Module):
    """Dropout then one linear layer: the paper's head on a frozen backbone."""

    def __init__(self, width: int, k: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(DROPOUT)
        self.fc = nn.Linear(width, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))


class SequenceDropout(nn.Module):
    """Dropout on a (B, T, width) sequence with one mask per sequence, shared by its T
    timesteps: what Keras' recurrent layers do with `dropout=` (the paper's GRUs), and
    T times fewer random draws than `nn.Dropout` (which drew 44% of a GRU trial's time
    on CPU). torch's `dropout1d` with the width as its channels."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout1d(x.transpose(1, 2), self.p, self.training).transpose(1, 2)


class CnnRnn(nn.Module):
    """GRU(8, sequences) -> GRU(6) -> dense(8) -> head over (B, T, width) frame embeddings."""

    def __init__(self, width: int, k: int) -> None:
        super().__init__()
        self.in_dropout1 = SequenceDropout(DROPOUT)
        self.gru1 = CpuTrainedGru(width, 8)
        self.in_dropout2 = SequenceDropout(DROPOUT)
        self.gru2 = CpuTrainedGru(8, 6)
        self.dropout = nn.Dropout(DROPOUT)
        self.dense = nn.Linear(6, 8)
        self.head = nn.Linear(8, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.gru1(self.in_dropout1(x))
        _, last = self.gru2(self.in_dropout2(seq))
        hidden = torch.relu(self.dense(self.dropout(last[-1])))
        return self.head(hidden)


PCA_COMPONENTS = 32  # at most; fewer when a fold has fewer items


class GbdtModel(nn.Module):
    """PCA then HistGradientBoostingClassifier behind the module face that the grid, the
    final models, walk-forward and predict use: `fit` trains it (no epochs, no
    optimiser), `forward` returns log-probabilities, so a softmax gives its
    probabilities. The fitted pipeline travels in the state dict as pickled bytes (a
    uint8 tensor, `model.pt`): load only model folders popray wrote."""

    def __init__(self, width: int, k: int, pca: int | None = PCA_COMPONENTS) -> None:
        super().__init__()
        self.width, self.k, self.pca = width, k, pca  # pca None: the trees see every dim
        self.pipeline = None

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int) -> GbdtModel:
        from sklearn.decomposition import PCA
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.pipeline import make_pipeline

        # scikit-learn's default leaf of 20 rows leaves a profile's ~30 training videos
        # no split at all (a constant prediction): the leaf scales down with the data
        leaf = max(2, min(20, len(x) // 5))
        steps = [
            HistGradientBoostingClassifier(
                random_state=seed, early_stopping=False, min_samples_leaf=leaf
            )
        ]
        if self.pca:  # measured against the raw embedding: `python -m jobs.benchmark gbdt`
            components = max(1, min(self.pca, len(x) - 1, x.shape[1]))
            steps.insert(0, PCA(n_components=components, random_state=seed))
        self.pipeline = make_pipeline(*steps).fit(np.asarray(x, np.float32), np.asarray(y))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pipeline is None:
            raise RuntimeError("gbdt: fit the model (or load a saved one) before scoring")
        found = self.pipeline.predict_proba(x.detach().cpu().numpy().astype(np.float32))
        proba = np.full((len(found), self.k), 1e-6)  # a class absent from training
        proba[:, self.pipeline.classes_] = np.maximum(found, 1e-6)
        proba /= proba.sum(axis=1, keepdims=True)
        return torch.log(torch.as_tensor(proba, dtype=torch.float32, device=x.device))

    def get_extra_state(self) -> torch.Tensor:
        return torch.frombuffer(bytearray(pickle.dumps(self.pipeline)), dtype=torch.uint8)

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.pipeline = pickle.loads(state.numpy().tobytes())  # popray's own model files


@dataclass(frozen=True)
class ModelSpec:
    """What a model eats, what it is trained and validated on, and how it learns."""

    name: ModelName
    input: Literal["vector", "sequence"]
    validate_on: Literal["image", "video"]
    train_extra: Literal["none", "images_as_static_videos", "images"]
    learner: Literal["torch", "gbdt"] = "torch"  # gbdt: fitted once, no epochs

    @property
    def trains_on(self) -> tuple[InputKind, InputKind]:
        """How it sees its own media type in training (an image model: every augmented
        view), and the other type's extra items (`train_extra`)."""
        if self.input == "sequence":
            return "sequence", "sequence"
        return ("views" if self.validate_on == "image" else "vector"), "vector"

    @property
    def scores_as(self) -> InputKind:
        """How it sees an item it scores: an image by its own embedding (view 0)."""
        own = self.trains_on[0]
        return "vector" if own == "views" else own


InputKind = Literal["views", "vector", "sequence"]


def model_input(kind: InputKind, media_type: str, embeddings: np.ndarray) -> np.ndarray:
    """A batch of items as a model eats them (`ModelSpec.trains_on`, `scores_as`), from
    their embeddings: images (n, views, width), view 0 the photo itself; videos
    (n, frames, width), the N_FRAMES sampled frames first (a thumbnail may follow).

    - `views`: every view of an image (training rows);
    - `vector`: an image's own embedding; a video's frames max-pooled over time;
    - `sequence`: a video's N_FRAMES frames; an image as a static N_FRAMES sequence.

    Training, walk-forward, final models and predict all go through here (a video's
    `pooled` column is this function's `vector`, computed once when its row is written)."""
    if media_type == "image":
        if kind == "views":
            return embeddings
        if kind == "vector":
            return embeddings[:, 0]
        return np.repeat(embeddings[:, None, 0], N_FRAMES, axis=1)
    frames = embeddings[:, :N_FRAMES]
    if kind == "sequence":
        return frames
    if kind == "vector":
        return frames.max(axis=1)
    raise ValueError(f"a video has no {kind!r} input")


REGISTRY: dict[ModelName, ModelSpec] = {
    "image": ModelSpec("image", "vector", "image", "none"),
    "video": ModelSpec("video", "sequence", "video", "none"),
    "image_to_video": ModelSpec("image_to_video", "sequence", "video", "images_as_static_videos"),
    "video_to_image": ModelSpec("video_to_image", "vector", "video", "images"),
    "gbdt": ModelSpec("gbdt", "vector", "image", "none", "gbdt"),
    "gbdt_video": ModelSpec("gbdt_video", "vector", "video", "none", "gbdt"),
}
PAPER_MODELS = ("image", "video", "image_to_video", "video_to_image")


def create_model(name: ModelName, k: int, width: int = 1280) -> nn.Module:
    """A fresh, randomly initialised classifier `name` with k classes."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose from {sorted(REGISTRY)}")
    if k < 2:
        raise ConfigError(f"k must be at least 2, got {k}")
    if REGISTRY[name].learner == "gbdt":
        return GbdtModel(width, k)
    if REGISTRY[name].input == "sequence":
        return CnnRnn(width, k)
    return DenseHead(width, k)
