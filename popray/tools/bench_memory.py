"""Driver memory of the embed stage against the number of media (`jobs.benchmark memory`).

    python -m jobs.benchmark memory --images 2000 20000

For each count: a synthetic export of that many small JPEGs (one profile, one image per
post), ingested in one process, then embedded in a fresh one whose peak RSS
(`ru_maxrss`) is the driver's: with Ray started in-process, decoding and the forward pass
run in worker processes, so what the driver holds is what the stage brings back to it.
A random-weight backbone keeps the forward pass cheap (the benchmark is about memory);
`--code DIR` runs another checkout's popray (a baseline commit) on the same exports.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

BACKBONE = "mobilenetv3_small_050"  # a small timm CNN: the pipeline, not the model, is measured

_EMBED = """
import json, resource, sys, time
import popray
from pathlib import Path
from popray.config import EmbedConfig
from popray.embed import run_embed
cfg = EmbedConfig(backbone=sys.argv[2], weights="random", views=0)
start = time.perf_counter()
report = run_embed(Path(sys.argv[1]), cfg)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
row = {"embedded": report.embedded, "seconds": seconds, "peak_mib": peak}
print("RESULT " + json.dumps(row | {"code": popray.__file__}))
"""


def synthetic_export(root: Path, n: int, seed: int = 0) -> Path:
    """`n` distinct 48x48 JPEGs, one per post, with a year of follower counts."""
    rng = np.random.default_rng(seed)
    (root / "media").mkdir(parents=True, exist_ok=True)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    step = timedelta(days=365) / n
    with (
        (root / "posts.csv").open("w", newline="") as posts,
        (root / "media.csv").open("w", newline="") as media,
    ):
        p, m = csv.writer(posts), csv.writer(media)
        p.writerow(["profile_id", "post_id", "published_at", "likes", "comments", "post_type"])
        m.writerow(["media_id", "post_id", "position", "media_type", "path", "thumbnail_path"])
        for i in range(n):
            pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "media" / f"i{i}.jpg", quality=85)
            at = (t0 + i * step).isoformat()
            p.writerow(["bench", f"p{i}", at, int(rng.integers(50, 500)), 0, "image"])
            m.writerow([f"m{i}", f"p{i}", 0, "image", f"media/i{i}.jpg", ""])
    days = [t0 + timedelta(days=d) for d in range(0, 366, 7)]
    with (root / "followers.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["profile_id", "at", "followers"])
        w.writerows(["bench", d.date().isoformat(), 10_000 + 10 * k] for k, d in enumerate(days))
    return root


def _python(code: str, args: list[str], checkout: Path | None) -> str:
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    run = subprocess.run(  # `-c` puts the working folder first on sys.path: run in checkout
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    return run.stdout


def driver_memory(
    counts: list[int], root: Path, backbone: str = BACKBONE, checkout: Path | None = None
) -> list[dict]:
    """Peak RSS of the embed stage's driver, one row per count of images."""
    rows = []
    for n in counts:
        export, out = root / f"export-{n}", root / f"out-{n}"
        if not (export / "media.csv").exists():
            synthetic_export(export, n)
        ingest = "import sys, pathlib; from popray.ingest import run_ingest; "
        ingest += "run_ingest(sys.argv[1], pathlib.Path(sys.argv[2]))"
        _python(ingest, [str(export), str(out)], checkout)
        for table in ("embeddings_image", "embeddings_video", "quarantine"):
            for part in (out / "tables" / table).glob(f"*{backbone}*.parquet"):
                part.unlink()  # each count embeds from scratch
        line = next(
            x
            for x in _python(_EMBED, [str(out), backbone], checkout).splitlines()
            if x.startswith("RESULT ")
        )
        rows.append({"images": n} | json.loads(line.removeprefix("RESULT ")))
    return rows


def memory_text(rows: list[dict]) -> str:
    lines = [f"{'images':>8} {'embedded':>9} {'seconds':>8} {'driver peak RSS':>16}"]
    for r in rows:
        lines.append(
            f"{r['images']:>8} {r['embedded']:>9} {r['seconds']:>8.1f} {r['peak_mib']:>12.0f} MiB"
        )
    return "\n".join(lines)
