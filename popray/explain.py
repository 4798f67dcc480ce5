"""Grad-CAM for the image model (paper 5.3): where in a photo the prediction comes from.

    popray explain --out out [--k 2] [--per-class 3] [--extremes 3] [--media PATH ...]

The image model is a head over frozen backbone features, so the full network is rebuilt
(backbone -> pooled features -> the saved final head) and Grad-CAM (captum's
`LayerGradCam`) is taken for the top class on the backbone's last convolutional feature
map, upsampled and laid over the original photo. Explained: a few labelled images of
each class, each profile's highest- and lowest-scored images (their out-of-fold score,
for the report's "what works"), and any file given. Heatmaps go to
`OUT/explain/k<k>/<name>.png`, and table `explanations` lists them.

The work runs on a pool of Ray actors (`GradCam`, one per CPU or GPU of the cluster),
each of which builds the backbone once and takes one profile at a time; the driver only
hands out heads and writes the PNGs that come back. A profile whose model, picked images
and weights are unchanged since the last run keeps its rows and heatmaps (its `unit`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
from ray.util import ActorPool

from popray.config import Scheme
from popray.errors import ConfigError, MissingError
from popray.io import store
from popray.io.storage import Location
from popray.io.tables import table_schema
from popray.media.gradcam import GradCam
from popray.records import ExplainJob, Heatmap, ModelCard
from popray.training.model_files import load_final

EXPLAIN_DIR = "explain"
FORMAT = 1  # of a profile's explain unit: bumped when what a heatmap shows changes


def _image_models(
    out: Path, k: int | None, profile: str | None, scheme: Scheme | None
) -> list[ModelCard]:
    """The saved image models to explain (the smallest k, or k): of `profile`, or of
    every profile."""
    from popray.training.model_files import saved_models

    models = saved_models(out, profile, scheme, every_profile=profile is None)
    images = [m for m in models if m.model == "image" and k in (None, m.k)]
    picked = {}
    for m in sorted(images, key=lambda m: -m.k):  # the smallest k wins
        picked[m.profile_id] = m
    if not picked:
        raise MissingError(
            f"{out}: no saved image model{'' if k is None else f' for k={k}'}; run `popray train`"
        )
    return [picked[p] for p in sorted(picked)]


def _samples(
    out: Path, profile: str, scheme: Scheme, k: int, per_class: int, seed: int = 0
) -> list[ExplainJob]:
    """`per_class` labelled images of each class (of the model's profile and scheme),
    drawn with a fixed seed, as explain jobs."""
    sql = store.sql_text("explain.class_samples")
    rows = store.query(out, sql, k=k, scheme=scheme, profile=profile).to_pylist()
    rng = np.random.default_rng(seed)
    picked = []
    for label in range(k):
        mine = [r for r in rows if r["label"] == label]
        picked += [mine[i] for i in sorted(rng.permutation(len(mine))[:per_class])]
    return [ExplainJob(r["media_id"], r["label"], r["path"], "class_sample") for r in picked]


def _extremes(out: Path, card: ModelCard, n: int) -> list[ExplainJob]:
    """The profile's `n` highest- and `n` lowest-scored validated images (out-of-fold
    scores of its image model, popray/io/sql/scored_images.sql), as explain jobs."""
    from popray.io.store import sql_text

    if n <= 0 or not store.has_table(out, "predictions"):
        return []
    params = {"profile": card.profile_id, "scheme": card.scheme, "k": card.k}
    rows = store.query(out, sql_text("scored_images"), **params, backbone=card.backbone)
    rows = rows.to_pylist()
    n = min(n, len(rows) // 2)  # the two ends never share an image
    ends = [("top", r) for r in rows[:n]] + [("bottom", r) for r in rows[len(rows) - n :]]
    return [
        ExplainJob(r["media_id"], r["label"], r["path"], picked, r["score"])  # type: ignore[arg-type]
        for picked, r in ends
    ]


def explained_lines(table: pa.Table, out: Path) -> Iterator[str]:
    """One line per row of table `explanations`: the item, its class and prediction and
    where its heatmap is, or why it has none."""
    for row in table.to_pylist():
        what = row["media_id"] or row["file"]
        if row["error"]:
            yield f"  {what}: error: {row['error']}"
            continue
        proba = " ".join(f"{p:.2f}" for p in row["proba"])
        label = "" if row["label"] is None else f"class {row['label']}, "
        yield f"  {what}: {label}predicted {row['pred']} ({proba}) -> {out / row['path']}"


def run_explain(
    out: Path,
    k: int | None = None,
    per_class: int = 3,
    media: list[Path] | None = None,
    weights: str | None = None,
    profile: str | None = None,
    scheme: Scheme | None = None,
    extremes: int = 3,
    echo: Callable[[str], None] | None = None,
) -> pa.Table:
    """Heatmaps for a sample of each class of each profile (or of `profile`) and for its
    `extremes` highest- and lowest-scored images (out of fold), from the export, and for
    every `media` file; writes them and table `explanations`. A file that cannot be read
    gets its error in the table instead of a heatmap.

    Per profile: its rows are taken over from the last run while its unit (the saved
    model, the images picked and the weights) is unchanged and its heatmaps are there;
    the other profiles go to a pool of Grad-CAM actors (`GradCam`), each of which builds
    the backbone once."""
    from popray.io.store import input_dir_of

    cards = _image_models(out, k, profile, scheme)
    if media and len(cards) > 1:
        raise ConfigError(f"{out}: models of {len(cards)} profiles; choose one with --profile")
    k = cards[0].k
    folder = out / EXPLAIN_DIR / f"k{k}"
    folder.mkdir(parents=True, exist_ok=True)
    before = _last_rows(out, f"k{k}")
    files = [_file_job(Path(p)) for p in media or []]  # read here: the driver's own files
    kept: dict[str, list[dict]] = {}
    todo = []
    for card in cards:
        jobs = _samples(out, card.profile_id, card.scheme, k, per_class)
        jobs += _extremes(out, card, extremes)
        unit = None if files else _unit(card, weights, jobs)
        old = before.get(card.profile_id, [])
        if unit and old and all(_still_there(out, r, unit) for r in old):
            kept[card.profile_id] = old
        else:
            todo.append(_Profile(card, jobs + files, unit))
    done = _explain_all(out, todo, weights, folder, input_dir_of(out))
    rows = [r for card in cards for r in (kept | done)[card.profile_id]]
    table = pa.Table.from_pylist(rows, schema=table_schema("explanations"))
    store.write_table(out, "explanations", table, part=f"k{k}")
    store.refresh_views(out)
    listed = {out / r["path"] for r in rows if r["path"]}
    for png in folder.glob("*.png"):  # heatmaps of the last run that no row lists now
        if png not in listed:
            png.unlink()
    if echo:
        echo(f"explain: profiles: {len(todo)} recomputed, {len(kept)} reused")
    return table


@dataclass
class _Profile:
    """One profile's Grad-CAM work: its saved image model, the images, and its unit."""

    card: ModelCard
    jobs: list[ExplainJob]
    unit: str | None  # None: never taken over (--media files)


def _file_job(path: Path) -> ExplainJob:
    """A --media file as a job: its bytes (read here, where the file is), or why not."""
    try:
        return ExplainJob(None, None, str(path), "file", data=path.read_bytes())
    except OSError as exc:
        return ExplainJob(None, None, str(path), "file", error=str(exc))


def _unit(card: ModelCard, weights: str | None, jobs: list[ExplainJob]) -> str:
    """What a profile's heatmaps depend on: its model (path and creation time), the
    backbone weights and the images picked."""
    picked = [job.key() for job in jobs]
    text = json.dumps([FORMAT, card.path, str(card.created_at), weights, picked], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _last_rows(out: Path, part: str) -> dict[str, list[dict]]:
    """The last run's `explanations` rows of one k, by profile."""
    if not store.has_table(out, "explanations", part):
        return {}
    table = store.read_table(out, "explanations", part)
    if "unit" not in table.column_names:
        return {}
    by_profile: dict[str, list[dict]] = {}
    for row in table.cast(table_schema("explanations")).to_pylist():
        by_profile.setdefault(row["profile_id"], []).append(row)
    return by_profile


def _still_there(out: Path, row: dict, unit: str) -> bool:
    return row["unit"] == unit and (row["path"] is None or (out / row["path"]).exists())


def _explain_all(
    out: Path, todo: list[_Profile], weights: str | None, folder: Path, export: Location
) -> dict[str, list[dict]]:
    """Grad-CAM for every profile in `todo` on a pool of actors (one per backbone in
    use); the driver loads each head as its profile is handed out and writes the
    heatmaps that come back."""
    from popray.cluster import ensure_ray

    if not todo:
        return {}
    ensure_ray()
    done = {}
    for backbone in sorted({p.card.backbone for p in todo}):
        mine = [p for p in todo if p.card.backbone == backbone]
        pool = ActorPool(_actors(backbone, weights, len(mine)))

        def submit(actor, work: _Profile):
            head, _ = load_final(out, work.card.path)
            return actor.explain.remote(head, work.card.k, work.jobs, export)

        for work, results in zip(mine, pool.map(submit, mine), strict=True):
            done[work.card.profile_id] = [
                _row(out, work, job, result, folder, export)
                for job, result in zip(work.jobs, results, strict=True)
            ]
    return done


def _actors(backbone: str, weights: str | None, n_profiles: int) -> list:
    """Grad-CAM actors for the cluster as it is: one per GPU, else one per CPU, never more
    than there are profiles. Each computes with one torch thread: a CPU convolution's
    float sums depend on how many threads split it, so a profile's heatmaps and
    probabilities would otherwise change with how many profiles a run explains (a
    nightly run that explains one profile, against a fresh run that explains them all)."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    n = max(1, min(n_profiles, gpus or cpus))
    actor = GradCam.options(num_cpus=1, num_gpus=1 if gpus else 0)
    return [actor.remote(backbone, weights, "cuda" if gpus else "cpu") for _ in range(n)]


def _row(
    out: Path, work: _Profile, job: ExplainJob, result: Heatmap, folder: Path, export: Location
) -> dict:
    """One row of `explanations`: its heatmap written, or the error that prevented it."""
    card = work.card
    row = {"k": card.k, "model_path": card.path, "profile_id": card.profile_id}
    row |= job.key() | {"unit": work.unit}
    if job.picked != "file":  # a path inside the export
        row["file"] = export.display(job.file)
    if result.error is not None:
        return row | {"pred": None, "proba": None, "path": None, "error": result.error}
    name = job.media_id or _file_name(Path(job.file))
    target = folder / f"{name}.png"
    target.write_bytes(result.png)
    return row | {
        "pred": int(result.proba.argmax()),
        "proba": result.proba.astype(np.float32).tolist(),
        "path": str(target.relative_to(out)),
        "error": None,
    }


def _file_name(path: Path) -> str:
    """A file's heatmap name: its stem plus a short hash of its full path (unique)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem)[:60]
    return f"file-{stem}-{digest}"
