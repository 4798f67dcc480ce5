"""Benchmark: the nightly rerun, after new posts on 1% of the profiles.

    python -m jobs.benchmark nightly [--profiles 100] [--posts 40] [--work DIR]

1. `popray sample --profiles P --posts N` writes export A;
2. `popray run` on A into OUT (timed from a fresh process: Ray start included);
3. export B is A plus 3 new posts on one profile, with new media files (`add_posts`);
4. `popray run` on B into the same OUT: the nightly run, timed the same way;
5. `popray run` on B into a fresh OUT: the reference for the changed profile.

Then it compares, row for row, the per-profile tables (`PER_PROFILE`): those of the
unchanged profiles between runs 2 and 4 (they must be identical, every column), and those
of the changed profile between runs 4 and 5 (identical but for the columns that say when
or how long, or name a run: `VOLATILE`). The cross-profile models, trained on every
profile's items, are kept by the nightly run (1% of the items changed, popray/pooled_keep)
and trained on the new export by the fresh run: their rows are not compared.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image, ImageOps

# table -> the rows that belong to a profile (cross-profile rows left out)
PER_PROFILE = {
    "labels": "TRUE",
    "duplicates": "TRUE",
    "nn_distances": "TRUE",
    "dedup_units": "TRUE",
    "trials": "TRUE",
    "predictions": "protocol <> 'profile_grouped'",
    "metrics": "protocol <> 'profile_grouped'",
    "models": "TRUE",
    "explanations": "TRUE",
}
# what differs between two runs that computed the same thing: when, how long, which run
VOLATILE = {
    "trials": ["train_s", "finished_at", "trial", "grid"],
    "models": ["created_at"],
    "explanations": ["file", "unit"],
    "duplicates": ["group_id"],  # numbered across profiles, in profile order
}
NEW_POSTS = 3


def _popray(*args: str) -> float:
    """Run `popray ARGS` in a fresh process; its wall time (Ray start included)."""
    start = time.perf_counter()
    popray = Path(sys.executable).parent / "popray"  # the console script beside python
    done = subprocess.run([str(popray), *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(
            f"popray {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    return time.perf_counter() - start


def _read(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, header)
        writer.writeheader()
        writer.writerows(rows)


def add_posts(export: Path, profile: str, n: int = NEW_POSTS) -> list[str]:
    """Add `n` single-image posts to `profile` in `export`, a day apart after its last
    post, each with a new JPEG (an earlier image of the profile, mirrored and darkened,
    so its bytes and embedding are its own); returns the new post ids."""
    post_header, posts = _read(export / "posts.csv")
    media_header, media = _read(export / "media.csv")
    mine = [p for p in posts if p["profile_id"] == profile and _valid(p)]
    last = max(datetime.fromisoformat(p["published_at"]) for p in mine)
    post_ids = {p["post_id"] for p in mine}
    images = [
        m
        for m in media
        if m["post_id"] in post_ids
        and m["media_type"] == "image"
        and m["path"].endswith(".jpg")
        and (export / m["path"]).is_file()
    ]
    likes = sorted(int(p["likes"]) for p in mine)[len(mine) // 2]
    new_ids = []
    sources = iter(images[::-1])  # the latest first; the sample's broken files skipped
    for i in range(n):
        post_id, media_id = f"{profile}_new{i}", f"{profile}_mnew{i}"
        path = f"media/{media_id}.jpg"
        _derived(export, sources, export / path)
        when = last + timedelta(days=i + 1)
        row = dict.fromkeys(post_header, "")
        row |= {"profile_id": profile, "post_id": post_id, "published_at": when.isoformat()}
        row |= {"likes": str(likes + 10 * i), "comments": "3", "post_type": "image"}
        row |= {"caption": "new post #nightly"} if "caption" in row else {}
        posts.append(row)
        media_row = dict.fromkeys(media_header, "")
        media_row |= {"media_id": media_id, "post_id": post_id, "position": "0"}
        media_row |= {"media_type": "image", "path": path}
        media.append(media_row)
        new_ids.append(post_id)
    _write(export / "posts.csv", post_header, posts)
    _write(export / "media.csv", media_header, media)
    return new_ids


def _derived(export: Path, sources, target: Path) -> None:
    """Write `target`: the next readable image of `sources`, mirrored and darkened."""
    for source in sources:
        try:
            with Image.open(export / source["path"]) as img:
                rgb = img.convert("RGB")
        except OSError:
            continue
        ImageOps.mirror(rgb).point(lambda v: int(v * 0.8)).save(target, quality=90)
        return
    raise ValueError(f"{export}: no readable image left to derive {target.name} from")


def _valid(post: dict) -> bool:
    """A post row the sample did not break on purpose (its bad rows are quarantined)."""
    try:
        datetime.fromisoformat(post["published_at"])
        int(post["likes"])
    except (TypeError, ValueError):
        return False
    return True


def _rows(run: Path, table: str, profiles: list[str], drop: list[str]) -> list[tuple]:
    """The sorted rows of `table` in the published run folder `run` for `profiles`,
    without the columns `drop`."""
    import duckdb

    files = sorted((run / "tables" / table).rglob("*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    try:
        rel = con.read_parquet([str(f) for f in files], union_by_name=True)
        keep = [c for c in rel.columns if c not in drop]
        cols = ", ".join(f'"{c}"' for c in keep)
        sql = (
            f"SELECT {cols} FROM rel WHERE ({PER_PROFILE[table]}) "
            f"AND profile_id IN (SELECT unnest($profiles)) ORDER BY ALL"
        )
        return [_frozen(r) for r in con.execute(sql, {"profiles": profiles}).fetchall()]
    finally:
        con.close()


def _frozen(value):
    """A row with its lists (probabilities, frame times) as tuples, so rows can be hashed."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def compare(a: Path, b: Path, profiles: list[str], volatile: bool) -> dict[str, str]:
    """table -> 'identical (n rows)' or what differs, between run folders a and b."""
    found = {}
    for table in PER_PROFILE:
        drop = VOLATILE.get(table, []) if volatile else []
        left, right = _rows(a, table, profiles, drop), _rows(b, table, profiles, drop)
        if left == right:
            found[table] = f"identical ({len(left)} rows)"
        else:
            only = len(set(left) ^ set(right))
            found[table] = f"DIFFERENT: {len(left)} vs {len(right)} rows, {only} not in both"
    return found


def _runs(out: Path) -> list[Path]:
    return sorted((out / "runs").iterdir(), key=lambda p: p.stat().st_mtime)


def bench_nightly(work: Path, profiles: int = 100, posts: int = 40, seed: int = 0) -> dict:
    """The whole benchmark in `work` (emptied first); one result row."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    a, b = work / "export_a", work / "export_b"
    sample_s = _popray(
        "sample",
        "--out",
        str(a),
        "--profiles",
        str(profiles),
        "--posts",
        str(posts),
        "--seed",
        str(seed),
    )
    out, fresh = work / "out", work / "out_fresh"
    first_s = _popray("run", "--input", str(a), "--out", str(out))
    shutil.copytree(a, b, symlinks=True)  # the sample's escaping links stay links
    _, rows = _read(b / "posts.csv")
    names = sorted({r["profile_id"] for r in rows})
    changed = names[len(names) // 2]
    add_posts(b, changed)
    second_s = _popray("run", "--input", str(b), "--out", str(out))
    run_1, run_2 = _runs(out)[-2:]
    fresh_s = _popray("run", "--input", str(b), "--out", str(fresh))
    unchanged = [n for n in names if n != changed]
    return {
        "bench": "nightly",
        "profiles": profiles,
        "posts_per_profile": posts,
        "changed_profile": changed,
        "new_posts": NEW_POSTS,
        "sample_s": round(sample_s, 1),
        "first_run_s": round(first_s, 1),
        "nightly_run_s": round(second_s, 1),
        "nightly_vs_first": round(second_s / first_s, 3),
        "fresh_run_s": round(fresh_s, 1),
        "unchanged_profiles": compare(run_1, run_2, unchanged, volatile=False),
        "changed_profile_vs_fresh": compare(run_2, _runs(fresh)[-1], [changed], volatile=True),
    }
