"""Faults: a model actor killed mid-run, and hostile input rows."""

import collections
import csv
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from popray.ingest import run_ingest
from popray.io import store


def _processes_named(text: str) -> list[int]:
    """PIDs whose command line (Ray sets it to the actor's name) contains `text`."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return pids


@pytest.mark.slow
def test_an_embedding_actor_killed_mid_run_still_embeds_everything_once(
    ray_session, tiny_input, embed_cfg, tmp_path
):
    from popray.embed import run_embed

    out = tmp_path / "out"
    run_ingest(tiny_input, out)
    result = {}
    worker = threading.Thread(target=lambda: result.update(report=run_embed(out, embed_cfg)))
    worker.start()
    killed_while_running = False
    deadline = time.time() + 120
    while not killed_while_running and time.time() < deadline and worker.is_alive():
        for pid in _processes_named("MapBatches(Embedder)"):
            time.sleep(1)  # the actor is embedding batches now
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # it finished its work and left first: look again
                break
            killed_while_running = worker.is_alive()
            break
        time.sleep(0.2)
    worker.join(timeout=600)
    assert killed_while_running, "the actor was not found while the run was going"
    report = result["report"]
    views = store.read_table(out, "embeddings_image").select(["media_id", "view"]).to_pylist()
    counts = collections.Counter((r["media_id"], r["view"]) for r in views)
    videos = store.read_table(out, "embeddings_video")["media_id"].to_pylist()
    assert max(counts.values()) == 1 and len(videos) == len(set(videos))  # exactly once
    media = store.read_table(out, "media")["media_id"].to_pylist()
    quarantined = {
        r["media_id"]
        for r in store.read_table(out, "quarantine").to_pylist()
        if r["stage"] == "embed"
    }
    embedded = {m for m, _ in counts} | set(videos)
    assert embedded | quarantined == set(media) and not embedded & quarantined  # nothing lost
    assert report.embedded == len(embedded)


def test_injection_attempts_in_ids_are_quarantined_and_touch_nothing(tiny_input, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(tiny_input, inp, symlinks=True)
    with (inp / "posts.csv").open(newline="") as fh:
        posts = list(csv.DictReader(fh))
    hostile = "x'); DROP TABLE posts; --"
    posts[2]["profile_id"] = hostile
    posts[3]["post_id"] = "p' OR '1'='1"
    # free text is valid input: it must reach the tables verbatim, through every query
    kept = posts[5]["post_id"]
    posts[5]["caption"] = "it's $1 '); DELETE FROM labels; -- \\'"
    with (inp / "posts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(posts[0]))
        writer.writeheader()
        writer.writerows(posts)
    run_ingest(inp, out)
    con = store.connect(out)
    try:
        bad = con.sql(
            "SELECT source, row, field, value FROM quarantine WHERE value LIKE $v OR value LIKE $w",
            params={"v": "%DROP TABLE%", "w": "%OR '1'%"},
        ).fetchall()
        n_posts = con.sql("SELECT count(*) FROM posts").fetchall()[0][0]
    finally:
        con.close()
    assert {(r[0], r[1], r[2]) for r in bad} == {
        ("posts.csv", 3, "profile_id"),
        ("posts.csv", 4, "post_id"),
    }
    assert n_posts == len(posts) - 2 - 3  # the two hostile rows, and the sample's 3 bad post rows
    from popray.config import LabelConfig
    from popray.labels import run_label

    labels = run_label(out, LabelConfig())
    con = store.connect(out)
    try:
        caption = con.sql(
            "SELECT caption FROM posts WHERE post_id = $p", params={"p": kept}
        ).fetchall()
        labelled = con.sql("SELECT count(DISTINCT post_id) FROM labels").fetchall()[0][0]
    finally:
        con.close()
    assert caption == [(posts[5]["caption"],)]
    assert labels.num_rows > 0 and labelled == n_posts  # every valid post, the captioned one too
