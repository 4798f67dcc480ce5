"""The embedding pipeline's model actor (`Embedder`): loads the frozen backbone once and
turns the decoded pixels of a batch of items into their embeddings, on a GPU when it has
one (popray/media/embed_pipeline.py runs a pool of them).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from popray.config import EmbedConfig
from popray.errors import DecodeError
from popray.media import decode

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def objects(arrays: list[np.ndarray]) -> np.ndarray:
    """A 1-d object array holding `arrays` (numpy would stack equal shapes)."""
    obj = np.empty(len(arrays), dtype=object)
    obj[:] = arrays
    return obj


class Embedder:
    """Ray Data actor: loads the backbone once, embeds every frame of a batch of items."""

    def __init__(self, cfg: EmbedConfig) -> None:
        import torch

        from popray.media.backbones import create_backbone

        self.torch = torch
        want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if want_cuda else "cpu")
        if not want_cuda:
            torch.set_num_threads(cfg.torch_threads or os.cpu_count() or 1)
        self.backbone = create_backbone(cfg.backbone, cfg.weights)
        self.model = self.backbone.model.to(self.device)
        if want_cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean, self.std = self.backbone.pixel_stats(self.device)
        self.batch_size = cfg.batch_size
        self.cfg = cfg

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) float pixels (0-255) on the device -> (B, width) float32."""
        torch = self.torch
        x = (x - self.mean) / self.std
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                feats = self.backbone.embed(x)
        else:
            feats = self.backbone.embed(x)
        return feats.float().cpu().numpy()

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, width) float32."""
        torch = self.torch
        if not frames.flags.writeable:  # torch wants writable memory to share it
            frames = frames.copy()
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                x = torch.from_numpy(frames[start : start + self.batch_size])
                out.append(
                    self._forward(x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float())
                )
        return np.concatenate(out) if out else np.zeros((0, self.backbone.width), np.float32)

    def embed_jpegs(self, jpegs: list[bytes], shas: list[str]) -> list[np.ndarray | str]:
        """Decode JPEGs on the device, make their views there, embed them: per file its
        (1 + views, width) embeddings, or the reason it could not be decoded (a file the
        device refuses is decoded on this actor's CPU, as the decode tasks would)."""
        from popray.media import decode_device

        cfg = self.cfg
        with self.torch.inference_mode():
            bases = decode_device.decode_resized(jpegs, self.device)
            done = [i for i, b in enumerate(bases) if b is not None]
            result: list[np.ndarray | str] = [""] * len(jpegs)
            if done:
                frames = decode_device.image_views(
                    [bases[i] for i in done],
                    [shas[i] for i in done],
                    cfg.views,
                    cfg.seed,
                    cfg.augment,
                )
                feats = np.concatenate(
                    [
                        self._forward(frames[s : s + self.batch_size])
                        for s in range(0, len(frames), self.batch_size)
                    ]
                )
                for i, emb in zip(done, np.split(feats, len(done)), strict=True):
                    result[i] = emb
        for i, base in enumerate(bases):
            if base is None:
                try:
                    stack = decode.image_views(
                        jpegs[i], cfg.views, cfg.seed, shas[i], cfg.augment, cfg.max_image_pixels
                    )
                    result[i] = self.embed_frames(stack)
                except DecodeError as exc:
                    result[i] = decode.describe(exc)
        return result

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stacks = list(batch.pop("pixels"))
        jpegs = list(batch.pop("jpeg"))
        sizes = [len(s) for s in stacks]
        # concatenate() gives a fresh, writable array (object-store batches are read-only)
        feats = self.embed_frames(np.concatenate([*stacks, stacks[0][:0]]))
        embeddings = np.split(feats, np.cumsum(sizes)[:-1])
        errors = list(batch["error"])
        on_device = [i for i, j in enumerate(jpegs) if len(j)]
        if on_device:
            made = self.embed_jpegs(
                [jpegs[i].tobytes() for i in on_device], [batch["sha256"][i] for i in on_device]
            )
            for i, got in zip(on_device, made, strict=True):
                if isinstance(got, str):
                    errors[i] = got
                else:
                    embeddings[i] = got
        device = np.array([self.device.type] * len(errors))  # what did the forward passes
        return batch | {
            "embeddings": objects(embeddings),
            "error": np.array(errors),
            "device": device,
        }


# Failures that may not repeat (a file put back, a loaded machine): not cached, retried.
