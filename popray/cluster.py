"""Joining the Ray cluster: the one place popray starts or joins Ray."""

from __future__ import annotations


def ensure_ray() -> None:
    """Join the Ray cluster in RAY_ADDRESS, or start Ray in-process when none is set;
    nothing when this process has already joined one (a test's session, a notebook)."""
    import ray

    if not ray.is_initialized():
        ray.init()
