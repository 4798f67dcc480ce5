"""The options of the train stage: the validation grid, walk-forward, optimiser."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat

from popray.config.base import ModelName, Protocol, _Config


class TrainConfig(_Config):
    """Optimiser settings of every training (the paper's defaults)."""

    epochs: int = Field(default=15, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=32, ge=1)


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
