"""The options of the data stages: labels, embedding (and its augmentation), dedup."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, field_validator, model_validator

from popray.config.base import SCHEME_HELP, Scheme, _Config
from popray.errors import ConfigError


class LabelConfig(_Config):
    """How followers at post time, Popularity Rate and popularity classes are computed.

    Every scheme is computed into table `labels` (cheap, and an analyst can compare them);
    `scheme` is the one the models learn."""

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
    scheme: Scheme = Field(default="por_rolling", description=SCHEME_HELP)
    keep_extremes: float | None = Field(
        default=None,
        gt=0,
        lt=0.5,
        description="residual: keep only the top and bottom fraction (e.g. 0.1 = deciles) "
        "as classes 1 and 0, k = 2 only; None: classes from the quantiles j/k",
    )
    ratio_threshold: PositiveFloat = Field(
        default=0.35, description="ratio_threshold: likes / followers above this is class 1"
    )
    moving_average_posts: int = Field(
        default=10, ge=1, description="likes_moving_average: previous posts in the mean"
    )

    @field_validator("k")
    @classmethod
    def _unique_sorted(cls, value: list[int]) -> list[int]:
        return sorted(set(value))


class AugmentConfig(_Config):
    """The paper's augmentation for the image model (Keras-style ranges)."""

    flip: bool = True
    translate: float = Field(default=0.10, ge=0, le=0.5, description="fraction of the side")
    zoom: float = Field(default=0.10, ge=0, le=0.5)
    brightness: float = Field(default=0.2, ge=0, le=1)
    contrast: float = Field(default=0.2, ge=0, le=1)
    saturation: float = Field(default=0.2, ge=0, le=1)

    def key(self) -> str:
        return (
            f"f{int(self.flip)}t{self.translate}z{self.zoom}"
            f"b{self.brightness}c{self.contrast}s{self.saturation}"
        )


class EmbedConfig(_Config):
    """Decoding and the frozen backbone that turns pixels into embeddings."""

    backbone: str = Field(default="efficientnet_lite0", description="a timm model name")
    weights: str | None = Field(
        default=None,
        description="None: the backbone's default source; a checkpoint path; or 'random' "
        "(random init, tests only)",
    )
    views: int = Field(default=4, ge=0, le=32, description="augmented views per image")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    seed: int = Field(default=0, description="seed of the augmented views")
    batch_size: int = Field(default=64, ge=1, description="frames per forward pass")
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="auto: the GPUs the cluster has when the stage starts, else CPU (local "
        "runs); cuda: GPU actors, requested even before a GPU node exists",
    )
    gpus: int | None = Field(
        default=None,
        ge=1,
        description="GPUs the embedding pool asks for (gpus x actors_per_gpu actors, each "
        "1/actors_per_gpu GPU): on a cluster whose GPU workers start from zero this is "
        "what makes the autoscaler launch them; implies device=cuda",
    )
    actors: int | None = Field(
        default=None, ge=1, description="model actors (default: actors_per_gpu per GPU, else 1)"
    )
    actors_per_gpu: int = Field(
        default=4, ge=1, le=16, description="model actors sharing one GPU (each gets 1/n)"
    )
    decode_jpeg_on: Literal["auto", "tasks", "actor"] = Field(
        default="auto",
        description="where JPEGs are decoded: tasks (PIL, at a reduced DCT scale, in the "
        "CPU decode tasks); actor (in the model actor, on its device: nvJPEG on a GPU, "
        "libjpeg on a CPU); auto: actor when the actors have GPUs, else tasks",
    )
    decode_concurrency: int | None = Field(
        default=None, ge=1, description="max parallel decode tasks (default: Ray decides)"
    )
    decode_cpus: float | None = Field(
        default=None, gt=0, description="CPUs per decode task (default: 1 with GPUs, else 0.5)"
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="CPU threads per model actor (default: all cores)"
    )
    video_timeout_s: float = Field(
        default=60.0, gt=0, description="a video that takes longer to decode is quarantined"
    )
    max_image_pixels: int = Field(default=50_000_000, ge=1, description="decompression-bomb guard")

    @model_validator(mode="after")
    def _gpus_mean_cuda(self) -> EmbedConfig:
        if self.gpus and self.device == "cpu":
            raise ValueError(f"embed.gpus={self.gpus} asks for GPUs, but embed.device is cpu")
        return self


class DedupConfig(_Config):
    """Near-duplicate removal (paper 4.1): Euclidean distance below a threshold."""

    threshold: PositiveFloat | None = Field(
        default=None, description="override; default: per backbone (thresholds)"
    )
    thresholds: dict[str, PositiveFloat] = Field(
        default={"efficientnet_b0": 5.0, "efficientnet_lite0": 5.5},
        description="default threshold per backbone; read it off the nn_distances histogram",
    )
    duration_tol_s: float = Field(default=0.1, ge=0, description="videos: equal length within")
    fps_tol: float = Field(default=0.01, ge=0, description="videos: equal frame rate within")

    def threshold_for(self, backbone: str) -> float:
        if self.threshold is not None:
            return self.threshold
        if backbone not in self.thresholds:
            raise ConfigError(
                f"no duplicate threshold for backbone {backbone!r}: set dedup.threshold "
                "(--threshold); look at the nn_distances histogram"
            )
        return self.thresholds[backbone]
