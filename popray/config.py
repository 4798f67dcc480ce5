"""Configuration objects, validated once at the edge (CLI flags or a TOML/YAML file).

Unknown keys are errors; defaults follow the paper (Viola et al. 2021).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelConfig(_Config):
    """How followers at post time, Popularity Rate and popularity classes are computed."""

    k: list[Annotated[int, Field(ge=2, le=10)]] = Field(
        default=[2, 3], min_length=1, description="numbers of popularity classes (2 = median split)"
    )
    window_days: PositiveFloat = Field(
        default=56.0, description="width of the centred rolling window (paper: several weeks)"
    )
    extrapolation_window_days: PositiveFloat = Field(
        default=120.0,
        description="outside the known follower range, the log-linear trend is fitted "
        "(Theil-Sen) on the known points within this many days of that end",
    )

    @field_validator("k")
    @classmethod
    def _unique_sorted(cls, value: list[int]) -> list[int]:
        return sorted(set(value))


class RunConfig(_Config):
    """One end-to-end run: where the export is, where outputs go, and each stage's options."""

    input_dir: Path = Field(description="profile export folder (posts, media, followers, ...)")
    out_dir: Path = Field(default=Path("out"), description="output folder (tables, DuckDB, ...)")
    label: LabelConfig = Field(default_factory=LabelConfig)


def load_config(path: Path) -> RunConfig:
    """Read a run configuration from a TOML or YAML file; relative paths are relative to it."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"{path}: configuration must be .toml, .yaml or .yml")
    config = RunConfig.model_validate(data)
    base = path.parent
    return config.model_copy(
        update={
            "input_dir": base / config.input_dir,
            "out_dir": base / config.out_dir,
        }
    )
