import shutil

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from popray import embed
from popray.ingest import run_ingest
from popray.io import store
from popray.media import embed_pipeline
from popray.media.embed_write import parts_of


def test_every_media_embedded_or_quarantined_exactly_once(embedded, tiny_truth):
    _, out, report = embedded
    media = store.read_table(out, "media").to_pylist()
    excluded = set(store.read_table(out, "excluded")["media_id"].to_pylist())
    images = store.read_table(out, "embeddings_image")
    videos = store.read_table(out, "embeddings_video")
    q = [r for r in store.read_table(out, "quarantine").to_pylist() if r["stage"] == "embed"]
    view0 = [
        m
        for m, v in zip(images["media_id"].to_pylist(), images["view"].to_pylist(), strict=True)
        if v == 0
    ]
    places = view0 + videos["media_id"].to_pylist() + [r["media_id"] for r in q]
    assert len(places) == len(set(places)), "an item landed twice"
    assert set(places) == {m["media_id"] for m in media} - excluded
    assert {r["media_id"] for r in q} == set(tiny_truth["corrupt_media"])
    assert report.quarantined == 4 and report.embedded == len(places) - 4
    assert all(r["reason"] and r["path"] for r in q)


def test_image_rows_have_every_view_and_real_embeddings(embedded):
    _, out, _ = embedded
    images = store.read_table(out, "embeddings_image")
    per_media = {}
    for m, v in zip(images["media_id"].to_pylist(), images["view"].to_pylist(), strict=True):
        per_media.setdefault(m, []).append(v)
    assert all(sorted(v) == [0, 1, 2] for v in per_media.values())
    emb = np.stack(images["embedding"].to_numpy(zero_copy_only=False))
    assert emb.shape[1] == 1280 and np.isfinite(emb).all() and emb.std() > 0
    [part] = parts_of(out, "embeddings_image", "efficientnet_lite0").values()  # one profile
    assert pq.read_schema(part).field("embedding").type.list_size == 1280


def test_video_rows_follow_the_frame_rule(embedded, tiny_input):
    _, out, _ = embedded
    videos = store.read_table(out, "embeddings_video").to_pylist()
    media = {m["media_id"]: m for m in store.read_table(out, "media").to_pylist()}
    assert videos
    for v in videos:
        frames = np.array(v["frames"], dtype=np.float32)
        assert frames.shape == (15, 1280)
        assert np.allclose(v["pooled"], frames.max(axis=0))
        step = 1.0 if v["duration_s"] >= 15 else v["duration_s"] / 15
        assert np.allclose(v["frame_times_s"], np.arange(15) * step, atol=1e-5)
        has_thumb = media[v["media_id"]]["thumbnail_path"] is not None
        assert v["thumbnail_source"] == ("file" if has_thumb else "first_frame")
        if not has_thumb:
            assert np.allclose(v["thumbnail"], frames[0])


def test_rerun_with_nothing_new_does_no_work(embedded, embed_cfg, monkeypatch, tmp_path):
    out = tmp_path / "out"  # a copy: the rerun rewrites popray.duckdb
    shutil.copytree(embedded[1], out)
    before = {n: store.read_table(out, n) for n in ("embeddings_image", "embeddings_video")}

    def no_pipeline(*args, **kwargs):
        raise AssertionError("a rerun with nothing new must not decode or embed")

    monkeypatch.setattr(embed, "run_pipeline", no_pipeline)
    report = embed.run_embed(out, embed_cfg)
    assert report.embedded == 0 and report.quarantined == 0 and report.reused > 0
    assert "nothing new" in report.line()
    for name, table in before.items():
        assert store.read_table(out, name).equals(table)


def test_new_media_only_are_embedded_and_changed_files_are_caught(
    embedded, embed_cfg, tmp_path, monkeypatch
):
    inp, out, _ = embedded
    inp2, out2 = tmp_path / "in", tmp_path / "out"
    shutil.copytree(inp, inp2, symlinks=True)
    shutil.copytree(out, out2)
    media_csv = (inp2 / "media.csv").read_text().splitlines()
    posts_csv = (inp2 / "posts.csv").read_text().splitlines()
    donor = next(line for line in media_csv if line.startswith("m0") and ".jpg" in line)
    mid, post_id, _, _, path, _ = donor.split(",")
    shutil.copy(inp2 / path, inp2 / "media/new.jpg")
    with (inp2 / "media/new.jpg").open("ab") as fh:  # new bytes, so a new sha256
        fh.write(b"\0")
    post = next(line for line in posts_csv if f",{post_id}," in line).split(",")
    post[1], post[2] = "pnew", "2019-06-01T10:00:00+00:00"
    (inp2 / "posts.csv").write_text("\n".join([*posts_csv, ",".join(post)]) + "\n")
    (inp2 / "media.csv").write_text(
        "\n".join([*media_csv, "mnew,pnew,0,image,media/new.jpg,"]) + "\n"
    )
    run_ingest(inp2, out2)
    seen = []
    real = embed.run_pipeline
    monkeypatch.setattr(
        embed, "run_pipeline", lambda items, *rest: seen.extend(items) or real(items, *rest)
    )
    report = embed.run_embed(out2, embed_cfg)
    assert [i.media_id for i in seen] == ["mnew"] and report.embedded == 1
    # a file edited after ingest is caught by its hash, not embedded under the old key
    (inp2 / path).write_bytes((inp2 / path).read_bytes() + b"x")
    for part, path in parts_of(out2, "embeddings_image", "efficientnet_lite0").items():
        rows = pq.read_table(path)
        keep = pc.not_equal(rows["media_id"], mid)
        store.write_table(out2, "embeddings_image", rows.filter(keep), part, rows.schema)
    report = embed.run_embed(out2, embed_cfg)
    assert "changed since ingest" in report.new_reasons[mid]
    assert report.text().splitlines()[1:] == [f"  quarantined {mid}: {report.new_reasons[mid]}"]


def test_gpu_actors_are_requested_before_any_gpu_node_exists():
    """An autoscaling cluster starts with no GPU: `gpus` (or device=cuda) still asks for
    GPU actors, so the autoscaler launches GPU workers; `auto` follows what is there."""
    import pydantic

    from popray.config import EmbedConfig

    assert embed_pipeline.pool_size(EmbedConfig(), cluster_gpus=0, cluster_cpus=8) == (False, 1)
    assert embed_pipeline.pool_size(EmbedConfig(), cluster_gpus=2, cluster_cpus=16) == (True, 8)
    assert embed_pipeline.pool_size(EmbedConfig(gpus=2), cluster_gpus=0, cluster_cpus=8) == (
        True,
        8,
    )
    cuda = EmbedConfig(device="cuda", actors_per_gpu=2)
    assert embed_pipeline.pool_size(cuda, cluster_gpus=0, cluster_cpus=8) == (True, 2)
    assert embed_pipeline.pool_size(EmbedConfig(gpus=1, actors=3), 0, 8) == (True, 3)
    with pytest.raises(pydantic.ValidationError, match="device is cpu"):
        EmbedConfig(gpus=1, device="cpu")


def test_the_cluster_writes_the_rows_and_only_statuses_reach_the_driver(
    embedded, embed_cfg, tiny_truth, tmp_path
):
    """With a staging folder the pipeline's last tasks write the embedding rows as
    Parquet; the driver gets back (media_id, sha256, kind, error) per item, no vectors."""
    from popray.io.storage import Location
    from popray.io.store import input_dir_of
    from popray.records import MediaItem

    _, out, _ = embedded
    media = store.read_table(out, "media").to_pylist()
    images = [m for m in media if m["media_type"] == "image"][:3]
    videos = [m for m in media if m["media_type"] == "video"]
    video = next(m for m in videos if m["media_id"] not in tiny_truth["corrupt_media"])
    corrupt = next(m for m in videos if m["media_id"] in tiny_truth["corrupt_media"])
    chosen = [*images, video, corrupt]
    items = [MediaItem.of_media(m) for m in chosen]
    keys = {
        "image": embed_pipeline.image_key(embed_cfg),
        "video": embed_pipeline.video_key(embed_cfg),
    }
    staging = Location.parse(tmp_path / "staging")
    results = embed_pipeline.run_pipeline(items, embed_cfg, input_dir_of(out), staging, keys)
    assert all(r.meta is None and r.embeddings is None for r in results)  # no vectors back
    assert {r.device for r in results} == {"cpu"}  # the forward passes' device, reported
    errors = {r.media_id: r.error for r in results}
    assert set(errors) == {m["media_id"] for m in chosen}
    assert [i for i, e in errors.items() if e] == [corrupt["media_id"]]
    for kind, name, col in (
        ("image", "embeddings_image", "embedding"),
        ("video", "embeddings_video", "pooled"),
    ):
        folder = staging.child(kind)
        staged = pq.read_table([folder.path(f) for f in folder.files()])
        want = store.read_table(out, name)
        ids = [m["media_id"] for m in chosen if m["media_type"] == kind and m is not corrupt]
        assert sorted(set(staged["media_id"].to_pylist())) == sorted(ids)
        assert staged.num_rows == len(ids) * (1 + embed_cfg.views if kind == "image" else 1)
        for row in staged.to_pylist():
            same = [
                r
                for r in want.to_pylist()
                if r["media_id"] == row["media_id"] and r.get("view") == row.get("view")
            ]
            assert np.allclose(same[0][col], row[col], atol=1e-4)


def test_embedding_tables_keep_each_vector_in_its_row():
    """The columnar row builders: views in order, frames in order, the max over time,
    the thumbnail file's vector or the first frame's."""
    import json

    from popray.config import EmbedConfig
    from popray.media.embed_write import image_table, video_table

    cfg, rng = EmbedConfig(views=2), np.random.default_rng(0)
    images = [
        {"media_id": f"i{k}", "sha256": f"s{k}", "embeddings": rng.normal(size=(3, 4))}
        for k in range(2)
    ]
    table = image_table(images, cfg, "key", width=4).to_pylist()
    assert [(r["media_id"], r["view"]) for r in table] == [
        (m, v) for m in ("i0", "i1") for v in range(3)
    ]
    for r in table:
        emb = images[int(r["media_id"][1])]["embeddings"][r["view"]]
        assert np.allclose(r["embedding"], emb) and r["preprocess"] == "key"
    meta = {"duration_s": 3.0, "fps": 5.0, "n_frames_total": 15, "frame_times_s": [0.2] * 15}
    videos = [
        {
            "media_id": f"v{k}",
            "sha256": f"t{k}",
            "meta": json.dumps(meta | {"thumbnail_source": source}),
            "embeddings": rng.normal(size=(16 if source == "file" else 15, 4)),
        }
        for k, source in enumerate(("file", "first_frame"))
    ]
    rows = video_table(videos, cfg, "vkey", width=4).to_pylist()
    for r, v in zip(rows, videos, strict=True):
        frames = v["embeddings"][:15]
        assert np.allclose(r["frames"], frames) and np.allclose(r["pooled"], frames.max(0))
        thumb = v["embeddings"][15] if r["thumbnail_source"] == "file" else frames[0]
        assert np.allclose(r["thumbnail"], thumb) and r["n_frames_total"] == 15
