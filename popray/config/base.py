"""What every configuration object shares, and the names the stages agree on."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Scheme = Literal["por_rolling", "por_global", "residual", "ratio_threshold", "likes_moving_average"]
SCHEMES: tuple[str, ...] = get_args(Scheme)
# what `label.scheme` (and the commands' --scheme) chooses, and the choices
SCHEME_HELP = (
    "the classes the models learn: por_rolling (paper), por_global, "
    "residual (Merrick et al.), ratio_threshold (PicMe), likes_moving_average (Carta et al.)"
)

ModelName = Literal["image", "video", "image_to_video", "video_to_image", "gbdt", "gbdt_video"]
Protocol = Literal["stratified_kfold", "walk_forward"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)
KFOLD, WALK_FORWARD = PROTOCOLS
