"""Configuration objects, validated once at the edge (CLI flags or a TOML/YAML file).

Unknown keys are errors; defaults follow the paper (Viola et al. 2021). `RunConfig` is a
whole run (folders, storage and every stage's options); `StageConfig` what one stage
command needs. Each stage's options: `data` (labels, embedding, dedup), `grid` (training).
"""

from popray.config.base import (
    KFOLD,
    PROTOCOLS,
    SCHEME_HELP,
    SCHEMES,
    WALK_FORWARD,
    ModelName,
    Protocol,
    Scheme,
)
from popray.config.data import AugmentConfig, DedupConfig, EmbedConfig, LabelConfig
from popray.config.grid import GridConfig, TrainConfig, WalkForwardConfig
from popray.config.run import RunConfig, StageConfig, scratch_for

__all__ = [
    "KFOLD",
    "PROTOCOLS",
    "SCHEMES",
    "SCHEME_HELP",
    "WALK_FORWARD",
    "AugmentConfig",
    "DedupConfig",
    "EmbedConfig",
    "GridConfig",
    "LabelConfig",
    "ModelName",
    "Protocol",
    "RunConfig",
    "Scheme",
    "StageConfig",
    "TrainConfig",
    "WalkForwardConfig",
    "scratch_for",
]
