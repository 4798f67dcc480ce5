"""The benchmarks' command line (`python -m jobs.benchmark WHAT ...`): one JSON line per
measurement. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.benchmark")
    sub = parser.add_subparsers(dest="what", required=True)
    for add in (_stage_benches, _scale_benches, _run_benches):
        add(sub)
    args = parser.parse_args(argv)
    for row in RUNS[args.what](args):
        print(row if isinstance(row, str) else json.dumps(row), flush=True)
    return 0


def _stage_benches(sub) -> None:
    """One stage at a time, on generated data or a sample export."""
    lab = sub.add_parser("labels", help="time the labelling SQL")
    lab.add_argument("--posts", type=int, default=1_000_000)
    lab.add_argument("--per-profile", type=int, default=1_000)
    lab.add_argument("--out", type=Path, help="also time labelling this ingested OUT")
    emb = sub.add_parser("embed", help="time the embedding pipeline against baselines")
    emb.add_argument("--input", type=Path, required=True, help="a sample export (popray sample)")
    emb.add_argument("--images", type=int, default=512)
    emb.add_argument("--videos", type=int, default=24)
    emb.add_argument("--batch-size", type=int, default=64)
    emb.add_argument("--device", default="auto")
    emb.add_argument(
        "--decode-jpeg-on",
        choices=["auto", "tasks", "actor"],
        default="auto",
        help="where JPEGs are decoded (auto: on the actors' GPU when they have one)",
    )
    emb.add_argument("--video-dir", type=Path, help="phone-like 720x1280 videos (made if missing)")
    emb.add_argument("--photos", type=int, default=0, help="1080x1350 JPEG photos to time too")
    emb.add_argument("--photo-dir", type=Path, default=Path("bench-photos"), help="made if missing")
    ded = sub.add_parser("dedup", help="time near-duplicate search")
    ded.add_argument("--items", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    tra = sub.add_parser("train", help="time the grid on Ray Tune against a plain loop")
    tra.add_argument("--out", type=Path, default=Path("out"), help="labelled, embedded OUT")


def _scale_benches(sub) -> None:
    """How the cost per profile grows, and the training step."""
    pro = sub.add_parser("profiles", help="per-profile cost of label, dedup, grid vs profiles")
    pro.add_argument("--profiles", type=int, nargs="+", default=[1, 10, 100, 1000])
    pro.add_argument("--posts", type=int, default=40, help="posts per profile")
    pro.add_argument("--seeds", type=int, default=1, help="grid seeds (paper: 3)")
    stp = sub.add_parser("step", help="one training step of each paper model (one core)")
    stp.add_argument("--repeats", type=int, default=5)
    stp.add_argument("--steps", type=int, default=100)
    drv = sub.add_parser("driver", help="the train stage's own phases in the driver")
    drv.add_argument("--profiles", type=int, default=1000)
    drv.add_argument("--posts", type=int, default=40, help="posts per profile")
    drv.add_argument("--seeds", type=int, default=3, help="grid seeds (paper: 3)")
    drv.add_argument("--repeats", type=int, default=3)
    drv.add_argument("--work", type=Path, default=Path("/tmp/popray-driver"), help="OUTs kept")


def _run_benches(sub) -> None:
    """On a finished run, or a run made for the purpose."""
    nig = sub.add_parser("nightly", help="a rerun after new posts on one profile vs the first")
    nig.add_argument("--profiles", type=int, default=100)
    nig.add_argument("--posts", type=int, default=40, help="posts per profile")
    nig.add_argument("--work", type=Path, default=Path("/tmp/popray-nightly"))
    pub = sub.add_parser("publish", help="what a nightly run rewrites and uploads (S3: moto)")
    pub.add_argument("--out", type=Path, required=True, help="a finished run's output folder")
    pub.add_argument("--work", type=Path, default=Path("/tmp/popray-publish"))
    asm = sub.add_parser(
        "assemble", help="the cost of assembling staged embeddings into their parts (tasks, driver)"
    )
    asm.add_argument("--items", type=int, default=20_000)
    asm.add_argument("--profiles", type=int, default=100)
    asm.add_argument("--like", type=Path, help="a finished run's OUT: its image vectors")
    asm.add_argument("--work", type=Path, default=Path("/tmp/popray-assemble"))
    asm.add_argument("--tasks", action="store_true", help="Ray tasks, as on a cluster")
    snd = sub.add_parser("send", help="the driver sending OUT's embedding files to read tasks")
    snd.add_argument("--out", type=Path, required=True, help="a finished run's output folder")
    cos = sub.add_parser("costs", help="unit costs of a finished popray run (for popray plan)")
    cos.add_argument("--out", type=Path, default=Path("out"))
    cos.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    cos.add_argument("--save", type=Path, help="write them here (popray plan --costs FILE)")
    mem = sub.add_parser("memory", help="the embed stage's driver peak RSS vs number of media")
    mem.add_argument("--images", type=int, nargs="+", default=[2_000, 20_000])
    mem.add_argument("--root", type=Path, default=Path("bench-memory"), help="exports, outs")
    mem.add_argument("--code", type=Path, help="another checkout's popray (a baseline)")
    gbd = sub.add_parser("gbdt", help="the gbdt baseline on a PCA vs the raw embedding")
    gbd.add_argument("--out", type=Path, default=Path("out"), help="a finished run's OUT")
    gbd.add_argument("--backbone", default="efficientnet_lite0")
    gbd.add_argument("--k", type=int, default=2)
    gbd.add_argument("--model", default="gbdt", choices=["gbdt", "gbdt_video"])


def _gbdt(args) -> Iterable:
    from popray.tools.bench_gbdt import bench_gbdt

    return bench_gbdt(args.out, args.backbone, args.k, model=args.model)


def _memory(args) -> Iterable:
    from popray.tools.bench_memory import driver_memory, memory_text

    rows = driver_memory(args.images, args.root.resolve(), checkout=args.code)
    return [{"bench": "memory"} | row for row in rows] + [memory_text(rows)]


def _costs(args) -> Iterable:
    from dataclasses import asdict

    from popray.tools.plan_costs import costs_from_run

    costs = costs_from_run(args.out, args.cpus)
    if args.save:
        costs.save(args.save)
    return [{"bench": "costs"} | asdict(costs)]


def _profiles(args) -> Iterable:
    from popray.tools.bench_scale import bench_profiles

    return bench_profiles(args.profiles, args.posts, args.seeds)


def _step(args) -> Iterable:
    from popray.tools.bench_step import bench_step

    return bench_step(args.repeats, args.steps)


def _driver(args) -> Iterable:
    from popray.tools.bench_driver import bench_train_driver

    return [bench_train_driver(args.profiles, args.posts, args.seeds, args.repeats, args.work)]


def _nightly(args) -> Iterable:
    from popray.tools.bench_nightly import bench_nightly

    return [bench_nightly(args.work, args.profiles, args.posts)]


def _publish(args) -> Iterable:
    from popray.tools.bench_publish import bench_publish

    return [bench_publish(args.out, args.work)]


def _assemble(args) -> Iterable:
    from popray.tools.bench_publish import bench_assemble

    return [bench_assemble(args.work, args.items, args.profiles, args.like, args.tasks)]


def _send(args) -> Iterable:
    from popray.tools.bench_publish import bench_send

    return [bench_send(args.out)]


def _train(args) -> Iterable:
    from popray.tools.bench import bench_train

    return bench_train(args.out)


def _dedup(args) -> Iterable:
    from popray.tools.bench import bench_dedup

    return (bench_dedup(n) for n in args.items)


def _embed(args) -> Iterable:
    from popray.config import EmbedConfig
    from popray.tools.bench_embed import bench_embed

    cfg = EmbedConfig(
        batch_size=args.batch_size, device=args.device, decode_jpeg_on=args.decode_jpeg_on
    )
    return bench_embed(
        args.input, args.images, args.videos, cfg, args.video_dir, args.photos, args.photo_dir
    )


def _labels(args) -> Iterable:
    from popray.tools.bench import bench_labels, bench_labels_out

    yield {"bench": "labels_synthetic"} | bench_labels(args.posts, args.per_profile)
    if args.out:
        yield {"bench": "labels_out", "out": str(args.out)} | bench_labels_out(args.out)


RUNS: dict[str, Callable[[argparse.Namespace], Iterable]] = {
    "labels": _labels,
    "embed": _embed,
    "dedup": _dedup,
    "train": _train,
    "profiles": _profiles,
    "step": _step,
    "driver": _driver,
    "nightly": _nightly,
    "publish": _publish,
    "assemble": _assemble,
    "send": _send,
    "costs": _costs,
    "memory": _memory,
    "gbdt": _gbdt,
}
