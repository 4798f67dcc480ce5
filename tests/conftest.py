"""Shared fixtures: one tiny sample profile (generated once per session) and its outputs."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

# Fixtures import popray lazily, so that a subset of tests (the GPU ones on a bare GPU
# machine) runs without every dependency of the others.


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (links: their target's name)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = f"-> {p.readlink()}"
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _unchanged(root: Path) -> Iterator[Path]:
    """Hand `root` to the session's tests and check, at the end, that none changed it:
    a test that writes into a shared fixture makes later tests depend on the order."""
    before = _digest(root)
    yield root
    after = _digest(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a test changed the shared fixture {root}: {changed[:10]}"


@pytest.fixture(scope="session")
def tiny_input(tmp_path_factory) -> Iterator[Path]:
    """A tiny sample export (36 posts, real images and H.264 videos, planted faults)."""
    from popray.tools.sample import generate, spec_for

    root = tmp_path_factory.mktemp("tiny_input")
    generate(root, spec_for("tiny", seed=0))
    yield from _unchanged(root)


@pytest.fixture(scope="session")
def tiny_truth(tiny_input) -> dict:
    return json.loads((tiny_input / "sample_truth.json").read_text())


@pytest.fixture(scope="session")
def tiny_out(tiny_input, tmp_path_factory) -> Iterator[Path]:
    """The tiny sample ingested and labelled (read-only for tests: copy before changing)."""
    from popray.config import LabelConfig
    from popray.ingest import run_ingest
    from popray.labels import run_label

    out = tmp_path_factory.mktemp("tiny_out")
    run_ingest(tiny_input, out)
    run_label(out, LabelConfig())
    yield from _unchanged(out)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs) shared by every test that needs Ray."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _system_config={
                "num_workers_soft_limit": 6,
                "idle_worker_killing_time_threshold_ms": 600_000,
            },
        )
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    """GPU tests skip themselves on machines without CUDA (CI, laptops)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def embed_cfg():
    """Embedding options for tests: 2 views keep the suite fast (the default is 4)."""
    from popray.config import EmbedConfig

    return EmbedConfig(views=2, video_timeout_s=30, device="cpu")


@pytest.fixture(scope="session")
def embedded(ray_session, tiny_input, embed_cfg, tmp_path_factory):
    """The tiny sample ingested and embedded once with the default (lite0) backbone."""
    import shutil

    from popray import embed
    from popray.ingest import run_ingest

    root = tmp_path_factory.mktemp("embed")
    inp = root / "input"
    shutil.copytree(tiny_input, inp, symlinks=True)
    out = root / "out"
    run_ingest(inp, out)
    report = embed.run_embed(out, embed_cfg)
    for _ in _unchanged(root):
        yield inp, out, report


@pytest.fixture(scope="session")
def trained(embedded, tmp_path_factory) -> Iterator[Path]:
    """The tiny sample embedded, labelled, de-duplicated, and its image model trained
    (one seed, 3 epochs: fast; for tests of what comes after training)."""
    import shutil

    from popray.config import DedupConfig, GridConfig, LabelConfig, TrainConfig
    from popray.dedup import run_dedup
    from popray.labels import run_label
    from popray.train import run_train

    out = tmp_path_factory.mktemp("trained") / "out"
    shutil.copytree(embedded[1], out)
    run_label(out, LabelConfig())
    run_dedup(out, DedupConfig(), "efficientnet_lite0")
    cfg = GridConfig(models=["image"], seeds=[0], train=TrainConfig(epochs=3))
    run_train(out, cfg, LabelConfig(), "efficientnet_lite0")
    yield from _unchanged(out)


@pytest.fixture(scope="session")
def s3_uri():
    """`s3://` URI (a function of the key prefix) of a bucket on a local S3 server: moto's,
    on loopback, with test credentials in the environment for the session."""
    from moto.server import ThreadedMotoServer

    from popray.io import storage

    with pytest.MonkeyPatch.context() as env:
        for name, value in (
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ):
            env.setenv(name, value)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        fs, _ = storage.resolve(f"s3://popray-test?{query}&allow_bucket_creation=true")
        fs.create_dir("popray-test")
        try:
            yield lambda prefix: f"s3://popray-test/{prefix}?{query}"
        finally:
            server.stop()


@pytest.fixture
def trained_copy(trained, tmp_path) -> Path:
    """A private copy of `trained` for a test that writes into it (explain, predict)."""
    import shutil

    out = tmp_path / "trained"
    shutil.copytree(trained, out)
    return out
