"""The embedding pipeline: Ray Data decodes media in parallel tasks (`decode_batch`) and a
pool of model actors (`Embedder`, popray/media/embedder.py) turns the pixels into
backbone embeddings (GPU when present); `run_pipeline` runs it over `MediaItem`s and
returns an `Embedded` per item (the embed stage, `popray.embed`, and `popray predict`
call it).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import numpy as np

from popray.cluster import ensure_ray
from popray.config import EmbedConfig
from popray.errors import DecodeError
from popray.io.storage import Location, sha256_bytes
from popray.media import decode
from popray.media.embed_write import (
    STATUS,
    write_block,
)
from popray.media.embedder import Embedder, objects
from popray.records import Embedded, MediaItem

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
# 2: video frames resized with PIL, like images; 3: JPEGs (images, thumbnails) decoded at
# a reduced DCT scale (decode.DRAFT)
PREPROCESS_VERSION = 3
ITEMS_PER_BLOCK = 16  # media per decode task: amortises task overhead, keeps streaming


def image_key(cfg: EmbedConfig) -> str:
    return f"img-v{PREPROCESS_VERSION}-{decode.SIZE}px-{cfg.views}views-seed{cfg.seed}-" + (
        cfg.augment.key()
    )


def video_key(cfg: EmbedConfig) -> str:
    return f"vid-v{PREPROCESS_VERSION}-{decode.SIZE}px-{decode.N_FRAMES}f-{decode.SECONDS:g}s"


def decode_batch(
    batch: dict[str, np.ndarray], cfg: EmbedConfig, export: Location, jpeg_to_actor: bool = False
) -> dict[str, np.ndarray]:
    """Ray Data task: decode each item to a (n, 224, 224, 3) uint8 stack, or an error.

    The task reads each file's bytes from `export` itself (on object storage from its
    own node), checks them against ingest's sha256 and decodes from memory. Images give
    1 + views frames; videos 15 sampled frames plus the thumbnail file's, if any. Nothing
    raises for a bad file: the reason travels on in column `error`. With `jpeg_to_actor`,
    a JPEG the device can decode (`decode.device_decodable`) is passed on as its bytes,
    in column `jpeg`, with no pixels: the model actor decodes it.
    """
    empty = np.zeros((0, decode.SIZE, decode.SIZE, 3), np.uint8)
    no_bytes = np.zeros(0, np.uint8)
    pixels, meta, errors, jpegs = [], [], [], []
    for kind, path, thumb, sha in zip(
        batch["kind"], batch["path"], batch["thumb"], batch["sha256"], strict=True
    ):
        try:
            stack, info, jpeg = _decode_one(kind, path, thumb, sha, cfg, export, jpeg_to_actor)
            pixels.append(stack)
            jpegs.append(jpeg)
            meta.append(json.dumps(info))
            errors.append("")
        except (DecodeError, OSError) as exc:  # a bad file is data: to quarantine
            pixels.append(empty)
            jpegs.append(no_bytes)
            meta.append("{}")
            errors.append(decode.describe(exc))
    out = {k: batch[k] for k in ("media_id", "sha256", "kind", "path", "part") if k in batch}
    return out | {
        "pixels": objects(pixels),
        "jpeg": objects(jpegs),
        "meta": np.array(meta),
        "error": np.array(errors),
    }


def _decode_one(
    kind: str, path, thumb, sha: str, cfg: EmbedConfig, export: Location, jpeg_to_actor: bool
) -> tuple[np.ndarray, dict, np.ndarray]:
    """One item of `decode_batch`: (its frames, what the sampling found, its JPEG bytes
    when the actor decodes it); a bad file raises DecodeError or OSError."""
    empty = np.zeros((0, decode.SIZE, decode.SIZE, 3), np.uint8)
    try:
        data = export.read_bytes(str(path))
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    if sha256_bytes(data) != sha:
        raise DecodeError("file changed since ingest (sha256); re-run ingest")
    if kind == "image" and jpeg_to_actor and decode.device_decodable(data, cfg.max_image_pixels):
        return empty, {}, np.frombuffer(data, np.uint8)
    no_bytes = np.zeros(0, np.uint8)
    if kind == "image":
        stack = decode.image_views(
            data, cfg.views, cfg.seed, sha, cfg.augment, cfg.max_image_pixels
        )
        return stack, {}, no_bytes
    video = decode.video_frames(data, cfg.video_timeout_s)
    stack = video.pop("frames")
    info = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in video.items()}
    info["thumbnail_source"] = "first_frame"
    if thumb:
        try:
            thumb_px = decode.resize(
                decode.load_image(export.read_bytes(str(thumb)), cfg.max_image_pixels, decode.DRAFT)
            )
        except (DecodeError, FileNotFoundError) as exc:
            raise DecodeError(f"thumbnail: {decode.describe(exc)}") from exc
        stack = np.concatenate([stack, thumb_px[None]])
        info["thumbnail_source"] = "file"
    return stack, info, no_bytes


TRANSIENT = ("file not found", "decoding took longer", "decoder process died")


def pool_size(cfg: EmbedConfig, cluster_gpus: int, cluster_cpus: int) -> tuple[bool, int]:
    """(GPU actors?, how many) for the cluster as it is now.

    `gpus` (or `device=cuda`) asks for GPU actors whatever the cluster has at the start:
    an autoscaling cluster launches its GPU workers only for resources someone requests.
    Several actors share a GPU so that batch preparation (Python, one core each) keeps up
    with the forward pass; on CPU one actor uses every core through torch threads. Sized
    from the cluster's own GPUs, each actor holds a CPU: leave at least half of them to
    the decode tasks, or the pool would starve its own input."""
    use_gpu = bool(cfg.gpus) or cfg.device == "cuda" or (cfg.device == "auto" and cluster_gpus > 0)
    if cfg.actors:
        return use_gpu, cfg.actors
    if cfg.gpus:
        return True, cfg.gpus * cfg.actors_per_gpu
    if use_gpu:
        return True, min(max(1, cluster_gpus) * cfg.actors_per_gpu, max(1, cluster_cpus // 2))
    return False, 1


def run_pipeline(
    items: list[MediaItem],
    cfg: EmbedConfig,
    export: Location,
    staging: Location | None = None,
    keys: dict[str, str] | None = None,
) -> list[dict]:
    """Decode and embed `items` (paths relative to `export`) on Ray Data.

    Returns one `Embedded` per item, with its embeddings; with `staging`, the embedding
    rows (preprocessing `keys`) are written there by the cluster
    (`embed_write.write_block`) and only the status comes back (no meta, no vectors).
    """
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    ensure_ray()
    resources = ray.cluster_resources()
    use_gpu, actors = pool_size(cfg, int(resources.get("GPU", 0)), int(resources.get("CPU", 1)))
    # An actor call should carry about `batch_size` frames: images bring 1 + views each,
    # videos 15-16, so the number of media per call follows the mix.
    frames = sum(1 + cfg.views if i.kind == "image" else decode.N_FRAMES + 1 for i in items)
    rows_per_call = max(1, round(cfg.batch_size * len(items) / max(1, frames)))
    n_blocks = max(1, min(-(-len(items) // ITEMS_PER_BLOCK), 2_000))
    ds = ray.data.from_items([i.row() for i in items], override_num_blocks=n_blocks)
    # Decode tasks ask for less CPU than the model actor: besides packing two light decode
    # tasks on a core, equal requests would let Ray Data fuse decoding into the actor,
    # serialising decode and forward pass on CPU-only machines.
    decode_cpus = cfg.decode_cpus or (1.0 if use_gpu else 0.5)
    jpeg_to_actor = cfg.decode_jpeg_on == "actor" or (cfg.decode_jpeg_on == "auto" and use_gpu)
    ds = ds.map_batches(
        decode_batch,
        fn_kwargs={"cfg": cfg, "export": export, "jpeg_to_actor": jpeg_to_actor},
        batch_size=ITEMS_PER_BLOCK,  # one call per block: small batches cost 2x in overhead
        num_cpus=decode_cpus,
        compute=TaskPoolStrategy(size=cfg.decode_concurrency) if cfg.decode_concurrency else None,
    )
    ds = ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"cfg": cfg},
        compute=ActorPoolStrategy(size=actors),
        batch_size=rows_per_call,
        num_gpus=1 / cfg.actors_per_gpu if use_gpu else 0,
        num_cpus=1,
    )
    columns = ("media_id", "sha256", "kind", "meta", "error", "device", "embeddings")
    if staging is not None:
        ds = ds.map_batches(
            write_block,
            fn_kwargs={"cfg": cfg, "keys": keys, "staging": staging},
            batch_size=None,
            num_cpus=decode_cpus / 2,
        )
        columns = STATUS
    results = []
    for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
        for i in range(len(batch["media_id"])):
            results.append(Embedded.from_row({k: batch[k][i] for k in columns}))
    return results
