"""Scheduled reruns (issue 6): what a nightly run on a changed export reuses and redoes."""

import csv
import shutil

import pytest
from PIL import Image

from popray.config import DedupConfig, GridConfig, LabelConfig, TrainConfig
from popray.dedup import run_dedup
from popray.embed import run_embed
from popray.ingest import run_ingest
from popray.io import store
from popray.labels import run_label
from popray.train import run_train

TABLES_BY_MEDIA = (
    "media",
    "labels",
    "embeddings_image",
    "embeddings_video",
    "nn_distances",
    "predictions",
)


def _job(inp, out, embed_cfg):
    run_ingest(inp, out)
    run_label(out, LabelConfig(k=[2]))
    report = run_embed(out, embed_cfg)
    run_dedup(out, DedupConfig(), "efficientnet_lite0")
    grid = GridConfig(models=["image"], seeds=[0], train=TrainConfig(epochs=2))
    return report, run_train(out, grid, LabelConfig(k=[2]), "efficientnet_lite0")


def _rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path, rows):
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _ids(out, table):
    con = store.connect(out)
    try:
        return {r[0] for r in con.sql(f'SELECT media_id FROM "{table}"').fetchall()}
    finally:
        con.close()


@pytest.mark.slow
def test_a_nightly_rerun_reuses_what_it_can_and_follows_the_export(
    ray_session, tiny_input, tiny_truth, embed_cfg, tmp_path
):
    inp, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(tiny_input, inp, symlinks=True)
    first, trained = _job(inp, out, embed_cfg)
    assert first.embedded > 0

    # 1. the same export again: no decoding, no forward pass, no training
    again, retrained = _job(inp, out, embed_cfg)
    assert again.embedded == 0 and again.reused == first.embedded + first.quarantined
    # every Tune trial reused (a walk-forward trial has a row per window)
    assert retrained.grid.reused == len(set(retrained.grid.trials["trial"].to_pylist()))

    # 2. the export changes: one post deleted, one post's likes changed, one post added
    posts, media = _rows(inp / "posts.csv"), _rows(inp / "media.csv")
    corrupt = set(tiny_truth["corrupt_media"])
    rows_of = {}
    for m in media:
        rows_of.setdefault(m["post_id"], []).append(m["media_id"])
    # single-image posts whose one media row is a good file
    singles = [
        p
        for p in posts
        if p["post_type"] == "image"
        and len(rows_of.get(p["post_id"], [])) == 1
        and rows_of[p["post_id"]][0] not in corrupt
    ]
    gone, changed, template = singles[3], singles[5], singles[7]
    gone_media = {m["media_id"] for m in media if m["post_id"] == gone["post_id"]}
    changed_media = next(m["media_id"] for m in media if m["post_id"] == changed["post_id"])
    posts = [p for p in posts if p is not gone]
    media = [m for m in media if m["post_id"] != gone["post_id"]]
    changed["likes"] = str(int(changed["likes"]) * 5 + 1000)
    posts.append(template | {"post_id": "pnew", "published_at": "2019-12-30T12:00:00+00:00"})
    Image.new("RGB", (320, 240), (30, 90, 200)).save(inp / "media" / "new.jpg", quality=90)
    media.append(
        {
            "media_id": "mnew",
            "post_id": "pnew",
            "position": "0",
            "media_type": "image",
            "path": "media/new.jpg",
            "thumbnail_path": "",
        }
    )
    _write(inp / "posts.csv", posts)
    _write(inp / "media.csv", media)
    labels_before = {r["media_id"]: r["por"] for r in store.read_table(out, "labels").to_pylist()}
    emb_before = store.read_table(out, "embeddings_image").to_pylist()

    third, regrid = _job(inp, out, embed_cfg)
    # only the new media item is decoded and embedded
    assert third.embedded == 1
    assert third.reused == first.embedded + first.quarantined - len(gone_media)
    # the deleted post's media are gone from every table
    for table in TABLES_BY_MEDIA:
        assert not gone_media & _ids(out, table), table
    assert "mnew" in _ids(out, "labels") and "mnew" in _ids(out, "embeddings_image")
    # changed likes: a new PoR, the same embedding
    labels_after = {r["media_id"]: r["por"] for r in store.read_table(out, "labels").to_pylist()}
    assert labels_after[changed_media] > labels_before[changed_media]
    emb_after = store.read_table(out, "embeddings_image").to_pylist()
    key = lambda rows: {(r["media_id"], r["view"]): r["embedding"] for r in rows}  # noqa: E731
    assert key(emb_after)[(changed_media, 0)] == key(emb_before)[(changed_media, 0)]
    # new data, new grid: trained again, on the new items
    assert regrid.grid.reused == 0 and regrid.grid.experiment != trained.grid.experiment
    assert "mnew" in _ids(out, "predictions")  # validated in some fold
