"""Per-profile units of work (issue 16): a change to one profile recomputes only that
profile; the others' trials, predictions and final models are taken over, and the run
says so."""

from __future__ import annotations

import csv
import dataclasses
import shutil

import pytest

from popray.config import DedupConfig, EmbedConfig, GridConfig, LabelConfig, TrainConfig
from popray.io import store
from popray.training.units import unit_keys

BACKBONE = "mobilenetv3_small_050"
LABELS = LabelConfig(k=[2], scheme="por_global")
GRID = GridConfig(models=["image"], seeds=[0], train=TrainConfig(epochs=2))


def _stages(inp, out, lines):
    from popray.dedup import run_dedup
    from popray.embed import run_embed
    from popray.ingest import run_ingest
    from popray.labels import run_label
    from popray.train import run_train

    run_ingest(inp, out)
    run_label(out, LABELS)
    run_embed(out, EmbedConfig(backbone=BACKBONE, weights="random", views=1, device="cpu"))
    run_dedup(out, DedupConfig(threshold=1e-6), BACKBONE)
    return run_train(out, GRID, LABELS, BACKBONE, lines.append)


def _items(out) -> dict[str, int]:
    """profile -> its training items (images and videos)."""
    from popray.training.loading import load_keys

    ds = load_keys(out, BACKBONE, LABELS.k, LABELS.scheme).datasets()[LABELS.k[0]]
    return {p: sum(map(len, ds.rows_of(p))) for p in ds.profiles()}


def _by_profile(table, profile):
    rows = [r for r in table.to_pylist() if r["profile_id"] == profile]
    key = ("protocol", "model", "k", "seed", "fold", "cut_at", "media_id")
    return sorted(rows, key=lambda r: tuple(str(r.get(c)) for c in key))


@pytest.mark.slow
def test_a_change_to_one_profile_recomputes_only_that_profile(ray_session, tmp_path):
    from popray.tools.sample import generate_many, profile_specs

    inp, out = tmp_path / "input", tmp_path / "out"
    short = dict(max_video_s=4.0, video_share=0.15)  # the videos' decode is not under test
    specs = [dataclasses.replace(s, **short) for s in profile_specs(3, seed=4, posts=24)]
    generate_many(inp, specs)
    first_lines: list[str] = []
    first = _stages(inp, out, first_lines)
    assert first.profiles_trained == 3 and first.profiles_reused == 0
    items = _items(out)
    assert first.items_read == sum(items.values())  # (3 profiles: no cross-profile models)
    trials, predictions = store.read_table(out, "trials"), store.read_table(out, "predictions")
    models = store.read_table(out, "models")
    profiles = sorted(set(trials["profile_id"].to_pylist()))
    assert len(profiles) == 3

    # the least popular image post of one profile (class 0) gets many more likes: its
    # class changes (a change that moves no class still moves the walk-forward truth)
    changed = profiles[1]
    labels = [
        r
        for r in store.read_table(out, "labels").to_pylist()
        if r["profile_id"] == changed and r["scheme"] == "por_global" and r["k"] == 2
    ]
    low = min((r for r in labels if r["media_type"] == "image"), key=lambda r: r["por"])
    assert low["class"] == 0
    with (inp / "posts.csv").open(newline="") as fh:
        posts = list(csv.DictReader(fh))
    (post,) = [p for p in posts if p["post_id"] == low["post_id"]]
    post["likes"] = str(int(post["likes"]) * 100 + 20000)
    with (inp / "posts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(posts[0]))
        writer.writeheader()
        writer.writerows(posts)

    lines: list[str] = []
    second = _stages(inp, out, lines)
    (now,) = {
        r["class"]
        for r in store.read_table(out, "labels").to_pylist()
        if r["media_id"] == low["media_id"] and r["scheme"] == "por_global" and r["k"] == 2
    }
    assert now == 1
    assert (second.profiles_trained, second.profiles_reused) == (1, 2)
    assert "profiles: 1 recomputed, 2 reused" in second.line()
    # only the changed profile's embeddings were read: the others' trials are taken over
    assert second.items_read == _items(out)[changed] < sum(items.values())
    assert f"embeddings read for {second.items_read} items" in second.line()
    again = store.read_table(out, "trials")
    # only the changed profile's cells went to Tune: the grid names one profile
    trained = {r["profile_id"] for r in again.to_pylist() if r["grid"] != trials["grid"][0].as_py()}
    assert trained == {changed}
    for profile in profiles:
        old, new = _by_profile(trials, profile), _by_profile(again, profile)
        if profile == changed:  # its unit changed: trained again, at a new time
            assert {r["unit"] for r in old}.isdisjoint({r["unit"] for r in new})
            assert max(r["finished_at"] for r in old) < min(r["finished_at"] for r in new)
        else:  # taken over as published: the same rows, finish times included
            assert new == old
            old_p, new_p = (
                _by_profile(predictions, profile),
                _by_profile(store.read_table(out, "predictions"), profile),
            )
            assert [r for r in new_p if r["protocol"] != "profile_grouped"] == [
                r for r in old_p if r["protocol"] != "profile_grouped"
            ]
    # final models: the unchanged profiles' are reused (same folder, same creation time)
    new_models = store.read_table(out, "models")
    assert second.models_reused == sum(
        r["profile_id"] != changed for r in new_models.to_pylist() if r["profile_id"] != "*"
    )
    created = {r["path"]: r["created_at"] for r in models.to_pylist()}
    for row in new_models.to_pylist():
        if row["profile_id"] not in (changed, "*"):
            assert created[row["path"]] == row["created_at"]
        elif row["profile_id"] == changed:
            assert row["path"] not in created

    # nothing changed: every profile is reused, and no Tune grid runs at all
    third = _stages(inp, out, [])
    assert (third.profiles_trained, third.profiles_reused) == (0, 3)
    assert third.items_read == 0

    # a reused profile whose saved final model is gone: only its rows are read, to train
    # that model again
    lost = next(r for r in store.read_table(out, "models").to_pylist() if r["profile_id"] != "*")
    shutil.rmtree(out / lost["path"])
    fourth = _stages(inp, out, [])
    assert (fourth.profiles_trained, fourth.profiles_reused) == (0, 3)
    assert fourth.items_read == _items(out)[lost["profile_id"]]
    assert fourth.models_reused == third.models_reused - 1 and (out / lost["path"]).is_dir()
    assert third.grid.experiment is None
    assert third.grid.reused == len({(r["grid"], r["trial"]) for r in again.to_pylist()})


def test_a_unit_follows_its_own_profile_only():
    """The fingerprint of a profile moves with its own labels and items, not another's."""
    from grid_helpers import several

    ds = several(2, profiles=3)
    keys = unit_keys(GRID, {2: ds}, BACKBONE)
    assert len(set(keys.values())) == 3
    y = ds.images.y.copy()
    first = next(i for i, p in enumerate(ds.images.profile) if p == "prof1")
    y[first] = 1 - y[first]
    changed = unit_keys(GRID, {2: ds.with_classes(y, ds.videos.y)}, BACKBONE)
    assert changed[("prof1", 2)] != keys[("prof1", 2)]
    assert (
        changed[("prof0", 2)] == keys[("prof0", 2)] and changed[("prof2", 2)] == keys[("prof2", 2)]
    )
    # seeds, models and protocols are not in the unit (their rows are reused apart);
    # what a trial computes from is
    more = GRID.model_copy(update={"seeds": [0, 1, 2], "models": ["image"]})
    assert unit_keys(more, {2: ds}, BACKBONE) == keys
    longer = GRID.model_copy(update={"train": TrainConfig(epochs=3)})
    assert unit_keys(longer, {2: ds}, BACKBONE)[("prof0", 2)] != keys[("prof0", 2)]
