"""Benchmark: does the per-profile cost stay flat as profiles are added?

    python -m jobs.benchmark profiles --profiles 1 10 50 [--posts 60]

For each profile count, an OUT is built from synthetic ingest tables (bench.synthetic_tables:
one media item per post, ~25% videos, weekly follower points) and synthetic embeddings
(Gaussian, with the post's log-likes planted along one direction, so the heads have
something to learn); then the real stages run on it: `run_label`, `run_dedup` and
`run_train` (the grid on Ray Tune, then the final models). Decoding and embedding are
left out: they are a map over media items (Ray Data), whose cost per item does not
depend on how many profiles the items belong to (see `jobs.benchmark embed`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from popray.config import DedupConfig, GridConfig, LabelConfig, TrainConfig
from popray.io import store
from popray.io.tables import N_FRAMES, embeddings_image_schema, embeddings_video_schema
from popray.tools.bench import synthetic_tables

BACKBONE = "synthetic"
WIDTH = 1280


def _video_rows(ids: list[str], shas: list[str], frames: np.ndarray) -> pa.Table:
    """Rows of `embeddings_video` for synthetic 15 s, 30 fps videos with `frames`."""
    n = len(ids)
    return pa.table(
        {
            "media_id": ids,
            "sha256": shas,
            "backbone": [BACKBONE] * n,
            "preprocess": ["synthetic"] * n,
            "duration_s": np.full(n, 15.0),
            "fps": np.full(n, 30.0),
            "n_frames_total": np.full(n, 450),
            "frame_times_s": _fixed(np.tile(np.arange(N_FRAMES, dtype=np.float32), (n, 1))),
            "frames": _fixed(frames),
            "pooled": _fixed(frames.max(axis=1)),
            "thumbnail": _fixed(frames[:, 0]),
            "thumbnail_source": ["first_frame"] * n,
        }
    ).cast(embeddings_video_schema(WIDTH))


def synthetic_out(out: Path, profiles: int, posts: int, views: int = 2, seed: int = 0) -> None:
    """Write ingest tables and embeddings of `profiles` synthetic profiles under `out`."""
    tables = synthetic_tables(profiles * posts, posts, seed)
    for name, table in tables.items():
        store.write_table(out, name, table)
    rng = np.random.default_rng(seed)
    direction = rng.normal(0, 1, WIDTH).astype(np.float32)
    media, posts_ = tables["media"], tables["posts"]
    likes = np.log1p(posts_["likes"].to_numpy().astype(np.float64))
    signal = ((likes - likes.mean()) / likes.std()).astype(np.float32)
    kinds = media["media_type"].to_pylist()
    shas = [f"{i:064x}" for i in range(media.num_rows)]
    image_rows = [i for i, kind in enumerate(kinds) if kind == "image"]
    video_rows = [i for i, kind in enumerate(kinds) if kind == "video"]

    def vectors(rows: list[int], extra: tuple[int, ...] = ()) -> np.ndarray:
        noise = rng.normal(0, 1, (len(rows), *extra, WIDTH)).astype(np.float32)
        shift = signal[rows].reshape(-1, *(1,) * len(extra), 1) * direction
        return noise + shift

    ids = media["media_id"].to_pylist()
    img = vectors(image_rows, (1 + views,))
    store.write_table(
        out,
        "embeddings_image",
        pa.table(
            {
                "media_id": [ids[i] for i in image_rows for _ in range(1 + views)],
                "sha256": [shas[i] for i in image_rows for _ in range(1 + views)],
                "backbone": [BACKBONE] * len(image_rows) * (1 + views),
                "preprocess": ["synthetic"] * len(image_rows) * (1 + views),
                "view": np.tile(np.arange(1 + views, dtype=np.int32), len(image_rows)),
                "embedding": _fixed(img.reshape(-1, WIDTH)),
            }
        ).cast(embeddings_image_schema(WIDTH)),
        part=BACKBONE,
    )
    frames = vectors(video_rows, (N_FRAMES,))
    videos = _video_rows([ids[i] for i in video_rows], [shas[i] for i in video_rows], frames)
    store.write_table(out, "embeddings_video", videos, part=BACKBONE)
    store.refresh_views(out)


def _fixed(values: np.ndarray) -> pa.Array:
    """A (rows, *dims) float32 array as nested fixed-size lists (no Python lists)."""
    array: pa.Array = pa.array(values.reshape(-1).astype(np.float32))
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def bench_profiles(
    counts: list[int], posts: int, seeds: int = 1, epochs: int = 15
) -> Iterator[dict]:
    """Wall time of label, dedup and train for each profile count, per profile, and the
    driver's peak memory, one row per count as it finishes. Each count runs in a fresh
    driver process (its own Ray start), on an OUT built beforehand by this one, so the
    peaks are the stages' own."""
    import json
    import subprocess
    import sys

    base = None
    for profiles in counts:
        with tempfile.TemporaryDirectory() as tmp:
            synthetic_out(Path(tmp), profiles, posts)
            command = [
                sys.executable,
                "-m",
                "popray.tools.bench_scale",
                tmp,
                str(profiles),
                str(posts),
            ]
            command += [str(seeds), str(epochs)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
        base = base or row["per_profile_s"]
        row["per_profile_vs_first"] = round(row["per_profile_s"] / base, 3)
        yield row


class PeakMemory:
    """This process's peak resident memory while in the `with` block, sampled every
    20 ms from /proc/self/status (Linux): `rss_mb` (VmRSS: everything mapped and
    resident, object-store pages the process touched included) and `anon_mb` (RssAnon:
    its own heap and arrays, the memory that grows if it holds the data)."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.every_s, self.rss_mb, self.anon_mb = every_s, 0.0, 0.0

    @staticmethod
    def now() -> dict[str, float]:
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
        return fields

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self._update()

    def _update(self) -> None:
        now = self.now()
        self.rss_mb = max(self.rss_mb, now["VmRSS"])
        self.anon_mb = max(self.anon_mb, now["RssAnon"])

    def __enter__(self) -> PeakMemory:
        import threading

        self._stop = threading.Event()
        self._update()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
        self.rss_mb = max(self.rss_mb, self.now()["VmHWM"])  # the kernel's own peak


def _driver(out: Path, profiles: int, posts: int, seeds: int, epochs: int) -> dict:
    """One count, in this process: Ray start, then label, dedup and train, timed."""
    import logging
    import os

    import ray

    from popray.dedup import run_dedup
    from popray.labels import run_label
    from popray.train import run_train

    logging.getLogger("ray.tune").setLevel(logging.WARNING)  # as `popray train` does
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    grid = GridConfig(seeds=list(range(seeds)), train=TrainConfig(epochs=epochs))
    labels = LabelConfig()
    times = {}
    with PeakMemory() as peak:
        start = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False)
        times["ray_start_s"] = time.perf_counter() - start
        start = time.perf_counter()
        run_label(out, labels)
        times["label_s"] = time.perf_counter() - start
        start = time.perf_counter()
        run_dedup(out, DedupConfig(threshold=1.0), BACKBONE)
        times["dedup_s"] = time.perf_counter() - start
        start = time.perf_counter()
        report = run_train(out, grid, labels, BACKBONE)
        times["train_s"] = time.perf_counter() - start
        ray.shutdown()
    total = sum(v for name, v in times.items() if name != "ray_start_s")
    # the trials' own training time by protocol: how the grid's cores split between them
    by = report.grid.trials.group_by("protocol").aggregate([("train_s", "sum")])
    trained = dict(zip(by["protocol"].to_pylist(), by["train_s_sum"].to_pylist(), strict=True))
    [mix] = store.query(out, store.sql_text("plan.run_mix")).to_pylist()
    items = mix["images"] + mix["videos"]  # the media files
    return {
        "bench": "profiles",
        "profiles": profiles,
        "posts_per_profile": posts,
        "seeds": seeds,
        "epochs": epochs,
        "tune_trials": len(set(report.grid.trials["trial"].to_pylist())),
        "profile_trials": report.grid.trials.num_rows,
        "final_models": 0 if report.models is None else report.models.num_rows,
        **{name: round(value, 2) for name, value in times.items()},
        "total_s": round(total, 2),
        "per_profile_s": round(total / profiles, 3),
        "train_s_per_profile_trial": round(times["train_s"] / report.grid.trials.num_rows, 3),
        "train_phases_s": {name: round(v, 2) for name, v in report.phases.items()},
        "trial_core_s_by_protocol": {name: round(v, 1) for name, v in sorted(trained.items())},
        "items": items,
        "driver_peak_rss_mb": round(peak.rss_mb),
        "driver_peak_anon_mb": round(peak.anon_mb),
    }


if __name__ == "__main__":  # the driver of one count (see bench_profiles)
    import json
    import sys

    folder, n, per, seeds_, epochs_ = sys.argv[1:6]
    print(json.dumps(_driver(Path(folder), int(n), int(per), int(seeds_), int(epochs_))))
