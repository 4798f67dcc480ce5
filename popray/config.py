"""Configuration objects, validated once at the edge (CLI flags or a TOML/YAML file).

Unknown keys are errors; defaults follow the paper (Viola et al. 2021).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    field_validator,
    model_validator,
)

from popray.errors import ConfigError
from popray.io.storage import Location


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Scheme = Literal["por_rolling", "por_global", "residual", "ratio_threshold", "likes_moving_average"]
SCHEMES: tuple[str, ...] = get_args(Scheme)


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
    scheme: Scheme = Field(
        default="por_rolling",
        description="the classes the models learn: por_rolling (paper), por_global, "
        "residual (Merrick et al.), ratio_threshold (PicMe), likes_moving_average (Carta et al.)",
    )
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


class TrainConfig(_Config):
    """Optimiser settings of every training (the paper's defaults)."""

    epochs: int = Field(default=15, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=32, ge=1)


ModelName = Literal["image", "video", "image_to_video", "video_to_image", "gbdt", "gbdt_video"]
Protocol = Literal["stratified_kfold", "walk_forward"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)
KFOLD, WALK_FORWARD = PROTOCOLS


class WalkForwardConfig(_Config):
    """Forward-in-time validation (beside the paper's folds): for each cut, train on what
    was published, and known, before the cut; evaluate on the window that follows."""

    cuts: int = Field(
        default=6, ge=1, le=100, description="windows per profile, the last ones of its history"
    )
    horizon_days: PositiveFloat = Field(
        default=56.0, description="length of each evaluation window (8 weeks)"
    )
    min_train_per_class: int = Field(
        default=5, ge=1, description="a cut is used when every class has this many training items"
    )
    inner_val_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=0.5,
        description="the latest fraction of a cut's training items picks the epoch count",
    )


class GridConfig(_Config):
    """The paper's validation grid (model x k x seed x fold) on Ray Tune, and final models."""

    models: list[ModelName] = Field(
        default=["image", "video", "image_to_video", "video_to_image"],
        min_length=1,
        description="the paper's four models by default; add gbdt / gbdt_video for the "
        "gradient-boosted baselines on the same folds and windows",
    )
    k: list[Annotated[int, Field(ge=2, le=10)]] | None = Field(
        default=None, description="class counts to train (default: every k of `label.k`)"
    )
    pooled: list[ModelName] = Field(
        default=["image", "video"],
        description="the cross-profile models, trained on every profile's items for "
        "profiles without history (needs 5 profiles; [] = none): validated on profiles "
        "they never saw, compared with each profile's own model by history length",
    )
    pooled_max_items: int | None = Field(
        default=50_000,
        ge=100,
        description="at most this many training items per cross-profile fit (and as many "
        "of the other media type for mixed models), spread evenly over the profiles, each "
        "profile's picked by a hash of the media id; validation still scores every item "
        "of the held-out profiles (null = every item: at 10,000 profiles the fits would "
        "train on millions of items, see `popray plan`)",
    )
    pooled_refresh_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="keep the published cross-profile models while at most this share of "
        "the items they were trained on changed (their profile's unit changed, or the "
        "profile is new or gone); above it they are trained again (0: whenever anything "
        "changed)",
    )
    pooled_refresh_days: float = Field(
        default=7,
        ge=0,
        description="and train them again once they are older than this, whatever changed",
    )
    seeds: list[int] = Field(default=[0, 1, 2], min_length=1)
    folds: int = Field(default=5, ge=2, le=20, description="StratifiedKFold splits")
    protocols: list[Protocol] = Field(
        default=["stratified_kfold", "walk_forward"],
        min_length=1,
        description="stratified_kfold: the paper's folds; walk_forward: train before a cut "
        "date, evaluate on the next window (see walk_forward)",
    )
    walk_forward: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    engine: Literal["in_process", "ray_train"] = Field(
        default="in_process",
        description="in_process: each Tune trial trains in its own process (tiny heads); "
        "ray_train: each trial launches a Ray Train TorchTrainer (GPU workers)",
    )
    context_features: bool = Field(
        default=False,
        description="append the post's context (time of day, weekday, post type, carousel "
        "size, caption length, hashtags, video duration, the profile's PoR trend from "
        "earlier posts) to every embedding the models see",
    )
    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    profiles_per_trial: int | None = Field(
        default=None,
        ge=1,
        description="profiles one Tune trial trains (each with its own folds and model); "
        "default: 1, or as many as keep the grid at 480 trials when there are many profiles",
    )
    max_concurrent: int | None = Field(
        default=None, ge=1, description="trials at once (default: as resources allow)"
    )
    final_models: bool = Field(
        default=True, description="after the grid, train each (model, k) on all data and save it"
    )


class StageConfig(_Config):
    """Each stage's options, and the storage the cluster shares: what a stage command
    needs (`popray embed`, `popray train`, ...), without the run's folders."""

    storage: str | None = Field(
        default=None,
        description="where the cluster's workers write what the driver then reads (new "
        "embedding rows, the grid's Tune experiment and trial results): a URI every node "
        "reaches (s3://bucket/prefix, ...), needed on a multi-node cluster, e.g. "
        "<publish_to>/work. Default: <work_dir>/work, else out_dir (one machine)",
    )
    label: LabelConfig = Field(default_factory=LabelConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    grid: GridConfig = Field(default_factory=GridConfig)

    @field_validator("storage")
    @classmethod
    def _a_storage_uri(cls, value: str | None, info) -> str | None:
        return _a_uri(value, info.field_name)

    def storage_location(self) -> Location | None:
        """The run's shared storage (None: out_dir, on this machine)."""
        return Location.parse(self.storage) if self.storage else None


def _a_uri(value: str | None, field: str) -> str | None:
    if value is not None and "://" not in value:
        raise ValueError(f"{field} {value!r}: give a URI such as s3://bucket/prefix")
    return value


class RunConfig(StageConfig):
    """One end-to-end run: where the export is, where outputs go, and each stage's options."""

    input_dir: str = Field(
        description="profile export (posts, media, followers, ...): a folder on this machine, "
        "or a URI every node of a cluster reaches (s3://bucket/prefix, gs://..., file:///mnt/...)"
    )
    out_dir: Path = Field(default=Path("out"), description="output folder (tables, DuckDB, ...)")
    publish_to: str | None = Field(
        default=None,
        description="object storage the published run is uploaded to (s3://bucket/prefix, "
        "gs://bucket/prefix, file:///path): CURRENT names the run, written last; out_dir "
        "stays the local work folder, filled from there on a fresh machine",
    )
    work_dir: str | None = Field(
        default=None,
        description="the run's work folder on object storage (s3://bucket/prefix; "
        "`popray run --out s3://...` sets it): the published runs and CURRENT "
        "(publish_to), what the workers write (storage = <work_dir>/work) and the writer "
        "lease (<work_dir>/LOCK). out_dir is then only the driver's scratch copy (default "
        "$POPRAY_SCRATCH or ~/.cache/popray/work/<hash>), refilled from work_dir on a "
        "fresh head",
    )

    @field_validator("input_dir", mode="before")
    @classmethod
    def _a_location(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    @field_validator("publish_to", "work_dir")
    @classmethod
    def _a_run_uri(cls, value: str | None, info) -> str | None:
        return _a_uri(value, info.field_name)

    @model_validator(mode="after")
    def _on_work_dir(self) -> RunConfig:
        """A work folder on storage publishes there, keeps the workers' files below it,
        and leaves the driver a local scratch copy (unless out_dir names one)."""
        if self.work_dir is None:
            return self
        if self.publish_to not in (None, self.work_dir):
            raise ValueError(
                f"publish_to {self.publish_to!r} with work_dir {self.work_dir!r}: a run with a "
                "work folder on storage is published there; leave publish_to out"
            )
        work = Location.parse(self.work_dir)
        derived = {"publish_to": self.work_dir, "storage": self.storage or work.child("work").uri}
        if "out_dir" not in self.model_fields_set:
            derived["out_dir"] = scratch_for(work)
        for name, value in derived.items():  # frozen model: filled once, while validating
            object.__setattr__(self, name, value)
        return self


def scratch_for(work: Location) -> Path:
    """The driver's local copy of a work folder on storage: one folder per work folder
    under $POPRAY_SCRATCH (default ~/.cache/popray/work); losing it costs one download."""
    root = Path(os.environ.get("POPRAY_SCRATCH") or Path.home() / ".cache" / "popray" / "work")
    return root / hashlib.sha256(work.display().encode()).hexdigest()[:16]
