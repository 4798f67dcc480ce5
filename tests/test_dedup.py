import shutil

import numpy as np
import pyarrow.compute as pc
import pytest

from popray.config import DedupConfig
from popray.dedup import run_dedup
from popray.io import store
from popray.media.neighbours import DedupItems, dedup_items

CFG = DedupConfig(threshold=1.5)


def _items(vectors, published, single, **video):
    return DedupItems(
        media_id=[f"m{i}" for i in range(len(vectors))],
        vectors=np.array(vectors, np.float32),
        published_us=np.array(published, np.int64),
        single=np.array(single),
        **video,
    )


def test_groups_are_transitive_and_the_keep_rule_holds():
    # m0-m1 and m1-m2 are within 1.5, m0-m2 is not: one group of three by transitivity.
    # m0 is the most recent but a carousel item; m1 is the most recent single -> kept.
    items = _items(
        [[0, 0], [1, 0], [2, 0], [10, 10]], [300, 200, 100, 50], [False, True, True, True]
    )
    dups, nns = dedup_items(items, 1.5, CFG)
    assert {d["media_id"] for d in dups} == {"m0", "m1", "m2"}
    assert {d["duplicate_of"] for d in dups} == {"m1"}
    assert [d["media_id"] for d in dups if d["kept"]] == ["m1"]
    assert {d["media_id"]: d["distance"] for d in dups}["m2"] == pytest.approx(1.0)
    nn = {r["media_id"]: (r["nn_media_id"], r["distance"]) for r in nns}
    assert nn["m3"][0] == "m2" and nn["m3"][1] == pytest.approx(np.hypot(8, 10))
    assert nn["m0"] == ("m1", pytest.approx(1.0))


def test_between_equals_the_most_recent_wins_and_exact_copies_work():
    items = _items([[0, 0], [0, 0], [0, 0]], [100, 300, 200], [True, True, True])
    dups, nns = dedup_items(items, 1.5, CFG)
    assert [d["media_id"] for d in dups if d["kept"]] == ["m1"]
    assert all(r["nn_media_id"] != r["media_id"] and r["distance"] == 0 for r in nns)


def test_threshold_is_strict_and_a_lone_item_has_no_neighbour():
    dups, _ = dedup_items(_items([[0, 0], [1.5, 0]], [1, 2], [True, True]), 1.5, CFG)
    assert dups == []
    _, nns = dedup_items(_items([[0, 0]], [1], [True]), 1.5, CFG)
    assert nns == [{"media_id": "m0", "nn_media_id": None, "distance": None}]


def test_videos_also_need_the_same_length_and_frame_rate():
    close = [[0, 0], [0.5, 0], [0.2, 0]]
    items = _items(
        close,
        [1, 2, 3],
        [True] * 3,
        duration_s=np.array([12.0, 12.05, 30.0]),
        fps=np.array([30.0, 30.0, 30.0]),
    )
    dups, _ = dedup_items(items, 1.5, CFG)
    assert {d["media_id"] for d in dups} == {"m0", "m1"}
    items.fps = np.array([30.0, 25.0, 30.0])
    assert dedup_items(items, 1.5, CFG)[0] == []


def test_planted_duplicates_are_found_and_no_unrelated_pair(embedded, tiny_truth, tmp_path):
    out = tmp_path / "out"  # a copy: dedup writes its tables into it
    shutil.copytree(embedded[1], out)
    found = run_dedup(out, DedupConfig(), "efficientnet_lite0")
    dups, nns = found.duplicates, found.nn_distances
    planted = [(t["media_id"], t["duplicate_of"]) for t in tiny_truth["duplicates"]]
    assert planted, "the sample should plant duplicates"
    group_of = {d["media_id"]: d["group_id"] for d in dups.to_pylist()}
    for a, b in planted:  # found: both in one group
        assert a in group_of and group_of.get(a) == group_of.get(b), f"missed: {a}, {b}"
    origin = {a: b for a, b in planted} | {b: b for _, b in planted}
    for group in set(group_of.values()):
        members = [m for m, g in group_of.items() if g == group]
        assert all(m in origin for m in members), f"unrelated items grouped: {members}"
        assert len({origin[m] for m in members}) == 1, f"two reposted posts merged: {members}"
    assert nns.num_rows == (
        store.read_table(out, "embeddings_image").num_rows // 3
        + store.read_table(out, "embeddings_video").num_rows
    )
    removed = len(group_of) - len(set(group_of.values()))  # all but one of each group
    assert found.line() == (
        f"{removed} near-duplicates in {len(set(group_of.values()))} groups (threshold 5.5); "
        f"{nns.num_rows} items compared"
    )


def test_unknown_backbone_needs_an_explicit_threshold():
    with pytest.raises(ValueError, match="no duplicate threshold"):
        DedupConfig().threshold_for("vit_small_patch16_224")
    assert DedupConfig(threshold=3.0).threshold_for("anything") == 3.0


@pytest.mark.parametrize("blocks", [(1024, 32768), (64, 160)])  # one tile; many tiles
def test_search_matches_brute_force(monkeypatch, blocks):
    """Against brute force: the same nearest neighbours and the same pairs."""
    from popray.media import neighbours as module
    from popray.media.neighbours import neighbours

    monkeypatch.setattr(module, "ROW_BLOCK", blocks[0])
    monkeypatch.setattr(module, "COL_BLOCK", blocks[1])

    rng = np.random.default_rng(1)
    centers = rng.normal(0, 1.0, (20, 32))
    x = centers[rng.integers(0, 20, 600)] + rng.normal(0, 0.25, (600, 32))
    x[7] = x[3]  # an exact copy
    x = x.astype(np.float32).astype(np.float64)  # embeddings are float32
    items = _items(x, np.arange(600), np.ones(600, bool))
    full = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    ranked = np.sort(full[np.isfinite(full)])
    cut = len(ranked) // 100
    threshold = float(ranked[cut] + ranked[cut + 1]) / 2  # between two distances, no tie
    nn_idx, nn_dist, pairs = neighbours(items, threshold)
    assert np.allclose(nn_dist, full.min(axis=1), atol=1e-4)
    assert np.allclose(full[np.arange(600), nn_idx], full.min(axis=1), atol=1e-4)
    want = {(i, j) for i, j in zip(*np.nonzero(full < threshold), strict=True) if i < j}
    assert {tuple(pr) for pr in pairs.tolist()} == want and len(want) > 100


def test_tasks_per_profile_and_media_type_keep_every_item_and_number_groups_apart(
    tmp_path, monkeypatch, ray_session
):
    """run_dedup sends one (profile, media type) at a time to Ray tasks, with its keys
    and its vectors in the object store: however the read chunks split the rows, every
    item comes out once, in its own profile, with its own vector, and group ids never
    repeat across profiles."""
    from popray.dedup import _units
    from popray.tools.bench_scale import BACKBONE, synthetic_out
    from popray.training import embedding_read

    synthetic_out(tmp_path, profiles=4, posts=12)
    whole = {(p, k): keys["media_id"].to_pylist() for p, k, keys, _ in _units(tmp_path, BACKBONE)}
    monkeypatch.setattr(embedding_read, "BATCH_ROWS", 5)
    units = list(_units(tmp_path, BACKBONE))
    small = {(p, k): keys["media_id"].to_pylist() for p, k, keys, _ in units}
    assert small == whole and len(whole) == 8  # 4 profiles x (images, videos)
    stored = {}
    for table, column in (("embeddings_image", "embedding"), ("embeddings_video", "thumbnail")):
        rows = store.read_table(tmp_path, table)
        if "view" in rows.column_names:
            rows = rows.filter(pc.equal(rows["view"], 0))
        vectors = np.stack(rows[column].to_numpy(zero_copy_only=False))
        stored |= dict(zip(rows["media_id"].to_pylist(), vectors, strict=True))
    for _, _, keys, vectors in units:  # each item's vector, gathered across chunks
        want = np.stack([stored[m] for m in keys["media_id"].to_pylist()])
        assert np.array_equal(vectors.array(), want)
    media = store.connect(tmp_path).sql("SELECT media_id, profile_id FROM media").fetchall()
    profile_of = dict(media)
    assert all(profile_of[m] == p for (p, _), ids in whole.items() for m in ids)
    assert sum(map(len, whole.values())) == len(media)

    # A threshold above every distance: each (profile, media type) of two or more items
    # is one group.
    found = run_dedup(tmp_path, DedupConfig(threshold=1e6), BACKBONE)
    dups, nns = found.duplicates, found.nn_distances
    assert nns.num_rows == len(media)
    rows = dups.to_pylist()
    expected = {key for key, ids in whole.items() if len(ids) >= 2}
    assert {(r["profile_id"], r["media_type"]) for r in rows} == expected
    assert len({r["group_id"] for r in rows}) == len(expected) >= 6
    for gid in {r["group_id"] for r in rows}:
        assert len({(r["profile_id"], r["media_type"]) for r in rows if r["group_id"] == gid}) == 1
    assert sum(r["kept"] for r in rows) == len(expected)


def test_a_rerun_recomputes_only_the_changed_units_and_equals_a_fresh_dedup(
    tmp_path, monkeypatch, ray_session
):
    """Each (profile, media type) is a unit: a rerun on unchanged data takes every unit's
    rows over without reading a vector; after one post moves, only its unit is read and
    recomputed, and the tables equal those of a dedup run from scratch."""
    import pyarrow as pa

    from popray import dedup
    from popray.tools.bench_scale import BACKBONE, synthetic_out

    out = tmp_path / "out"
    synthetic_out(out, profiles=4, posts=12)
    cfg = DedupConfig(threshold=1e6)  # every unit of two or more items is one group
    read: list[int] = []
    real = dedup.embedding_rows

    def counted(files, keys, column, remote=False):
        read.append(keys.num_rows)
        return real(files, keys, column, remote)

    monkeypatch.setattr(dedup, "embedding_rows", counted)
    lines: list[str] = []
    first = run_dedup(out, cfg, BACKBONE, lines.append)
    assert lines[-1] == "dedup: 8 (profile, media type) recomputed, 0 reused"
    read.clear()
    again = run_dedup(out, cfg, BACKBONE, lines.append)
    assert lines[-1] == "dedup: 0 (profile, media type) recomputed, 8 reused" and read == []
    assert _rows(again) == _rows(first)

    # prof1's first image post moves 9 years later: the most recent, it is kept now
    media = store.read_table(out, "media").to_pylist()
    posts = store.read_table(out, "posts")
    post_of = {m["media_id"]: m["post_id"] for m in media}
    kinds = {m["post_id"]: m["media_type"] for m in media}
    rows = posts.to_pylist()
    target = next(r for r in rows if r["profile_id"] == "prof1" and kinds[r["post_id"]] == "image")
    target["published_at"] = target["published_at"].replace(year=target["published_at"].year + 9)
    store.write_table(out, "posts", pa.Table.from_pylist(rows, schema=posts.schema))
    in_unit = sum(1 for m in media if m["profile_id"] == "prof1" and m["media_type"] == "image")
    read.clear()
    changed = run_dedup(out, cfg, BACKBONE, lines.append)
    assert lines[-1] == "dedup: 1 (profile, media type) recomputed, 7 reused"
    assert read == [in_unit]  # only the changed unit's vectors
    kept = {r["media_id"] for r in changed.duplicates.to_pylist() if r["kept"]}
    moved = [m for m, p in post_of.items() if p == target["post_id"]]
    assert moved[0] in kept and moved[0] not in {
        r["media_id"] for r in first.duplicates.to_pylist() if r["kept"]
    }

    fresh = tmp_path / "fresh"
    shutil.copytree(out, fresh)
    for name in ("dedup_units", "duplicates", "nn_distances"):
        shutil.rmtree(store.table_dir(fresh, name))
    scratch = run_dedup(fresh, cfg, BACKBONE, lines.append)
    assert lines[-1] == "dedup: 8 (profile, media type) recomputed, 0 reused"
    assert _rows(scratch) == _rows(changed)


def _rows(found) -> list[list[dict]]:
    return [found.duplicates.to_pylist(), found.nn_distances.to_pylist()]
