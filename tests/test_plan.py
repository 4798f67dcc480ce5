"""The capacity plan: the stage model's arithmetic, and unit costs read off a real run."""

from __future__ import annotations

import pytest
from plan_helpers import write_run

from popray.tools.plan import plan, plan_text
from popray.tools.plan_costs import (
    IMAGES_PER_POST,
    LABEL_TASK_POSTS,
    VIDEOS_PER_POST,
    WALK_FORWARD_LABELLINGS,
    UnitCosts,
)


def _by_name(stages):
    return {s.name: s for s in stages}


def test_parallel_stages_divide_by_the_cluster_and_driver_stages_do_not():
    costs = UnitCosts()
    small = _by_name(plan(costs, profiles=100, posts_per_profile=200, cpus=8))
    big = _by_name(plan(costs, profiles=100, posts_per_profile=200, cpus=80))
    assert big["decode + embed"].seconds == pytest.approx(small["decode + embed"].seconds / 10)
    assert big["grid + final models"].seconds == pytest.approx(
        small["grid + final models"].seconds / 10
    )
    assert big["ingest"].seconds == small["ingest"].seconds
    # 20,000 posts: every file under PARALLEL_ROWS, validated in the driver; at 100 times
    # the posts they go to tasks and the driver only parses
    huge = _by_name(plan(costs, profiles=10_000, posts_per_profile=200, cpus=8))
    per_post = [s["ingest"].seconds / posts for s, posts in ((small, 20_000), (huge, 2e6))]
    assert per_post[1] < per_post[0] / 5
    assert huge["ingest: tasks"].seconds > small["ingest: tasks"].seconds * 50
    # the walk-forward labellings: tasks of LABEL_TASK_POSTS posts, no faster than one
    wf = [
        _by_name(plan(costs, 10_000, 500, cpus=c))["walk-forward labels"]
        for c in (64, 128, 1_000_000)
    ]
    assert wf[0].where == "cluster" and wf[1].seconds == pytest.approx(wf[0].seconds / 2)
    one_task = LABEL_TASK_POSTS * WALK_FORWARD_LABELLINGS * costs.walk_forward_label_post_core_s
    assert wf[2].seconds == pytest.approx(one_task)
    cluster = ("dedup", "explain", "walk-forward grid", "embed: assemble")
    for name in (*cluster, "dedup: read", "train: read"):
        assert big[name].seconds == pytest.approx(small[name].seconds / 10), name
    driver = (
        *("ingest", "labels", "embed: parts to OUT"),
        *("dedup: send", "train: send", "train: driver"),
    )
    for name in (*driver, "fixed"):
        assert small[name].where == "driver" and big[name].seconds == small[name].seconds
    folds_only = _by_name(plan(costs, 100, 200, cpus=8, walk_forward=False))
    assert "walk-forward grid" in small and "walk-forward grid" not in folds_only
    posts = 100 * 200
    expect = (
        posts * (IMAGES_PER_POST * costs.image_core_s + VIDEOS_PER_POST * costs.video_core_s) / 8
    )
    assert small["decode + embed"].seconds == pytest.approx(expect)


def test_the_metrics_tasks_wait_on_the_largest_cell_once_every_cell_has_a_core():
    from dataclasses import replace

    from popray.tools.plan_costs import METRICS_LARGEST_CELL

    costs = replace(UnitCosts(), metrics_item_core_s=0.01)
    items = 100 * 200 * (IMAGES_PER_POST + VIDEOS_PER_POST)
    two = _by_name(plan(costs, 100, 200, cpus=2))["metrics"]
    many = _by_name(plan(costs, 100, 200, cpus=512))["metrics"]
    assert two.where == "cluster" and two.seconds == pytest.approx(items * 0.01 / 2)
    assert many.seconds == pytest.approx(items * 0.01 * METRICS_LARGEST_CELL)


def test_gpus_move_the_forward_pass_and_leave_decoding_on_the_cpus():
    costs = UnitCosts()
    cpu_only = _by_name(plan(costs, 10_000, 500, cpus=512))
    with_gpus = _by_name(plan(costs, 10_000, 500, cpus=512, gpus=16))
    assert with_gpus["decode + embed"].seconds < cpu_only["decode + embed"].seconds
    assert "CPU decode" in with_gpus["decode + embed"].how  # forward is 10k frames/s a GPU
    stages = plan(costs, 10_000, 500, cpus=512, gpus=16)
    lines = plan_text(stages).splitlines()
    assert lines[-1].startswith("total") and "bottleneck:" in lines[-1]
    driver = [line for line in lines if line.startswith("driver total")]
    slowest = max((s for s in stages if s.where == "driver"), key=lambda s: s.seconds)
    assert len(driver) == 1 and driver[0].endswith(f"slowest: {slowest.name}")


def test_unit_costs_read_off_a_run(tmp_path, monkeypatch):
    """costs_from_run divides each stage's time by what it processed."""
    import duckdb

    from popray.io import store
    from popray.tools import plan_costs as plan_module

    out = tmp_path / "out"
    out.mkdir()
    write_run(out, stages={"dedup": 0.2})
    tables = (
        "CREATE TABLE posts AS SELECT 'p' AS profile_id FROM range(100);"
        "CREATE TABLE media AS SELECT 1 FROM range(110);"
        "CREATE TABLE followers AS SELECT 1 FROM range(40);"
        "CREATE TABLE quarantine AS SELECT 'ingest' AS stage FROM range(10);"
        "CREATE TABLE embeddings_image AS "
        "SELECT i // 5 AS media_id, i % 5 AS view FROM range(400) t(i);"
        "CREATE TABLE embeddings_video AS SELECT 1 FROM range(25);"
        "CREATE TABLE labels AS SELECT 'p' AS profile_id, 'image' AS media_type, "
        "'por_rolling' AS scheme, 2 AS k FROM range(80);"
        "CREATE TABLE predictions AS SELECT i AS media_id, 'image' AS model FROM range(70) t(i);"
        "CREATE TABLE trials AS SELECT * FROM (VALUES ('stratified_kfold', 3.0), "
        "('walk_forward', 1.0)) t(protocol, train_s)"
    )

    def connect(out):
        con = duckdb.connect()
        con.sql(tables)
        return con

    monkeypatch.setattr(store, "connect", connect)
    costs = plan_module.costs_from_run(out, cpus=2)
    rows, files = 100 + 110 + 40 + 10, 110
    parse = rows * UnitCosts.ingest_parse_row_s
    files_s = files * (UnitCosts.ingest_file_driver_s + UnitCosts.ingest_hash_file_core_s)
    assert costs.ingest_validate_row_core_s == pytest.approx((1 - parse - files_s) / rows)
    assert costs.label_post_s == UnitCosts.label_post_s  # 100 posts: too few to time
    labellings = plan_module.WALK_FORWARD_LABELLINGS
    assert costs.walk_forward_label_post_core_s == pytest.approx(3 * 2 / (100 * labellings))
    frames = 80 * 5 + 25 * 16
    assert costs.image_core_s == pytest.approx(40 * 2 / frames * 5)
    assert costs.video_core_s == pytest.approx(40 * 2 / frames * 16)
    assert costs.dedup_profile_s == pytest.approx(0.2 * 2 - 80 * 80 / 2 * costs.dedup_pair_s)
    # the rest of the train stage split by where its trials spent their time (3 : 1)
    assert costs.grid_item_core_s == pytest.approx(27 * 0.75 * 2 / 70)
    assert costs.walk_forward_item_core_s == pytest.approx(27 * 0.25 * 2 / 70)
    assert costs.train_read_item_core_s == pytest.approx(2 * 2 / 70)  # the load phase
    assert costs.train_driver_item_s == pytest.approx(4 / 70)  # plan, collect, metrics
    # the pooled phase less its one profile's own models (at their default cost)
    pooled = 4 - UnitCosts.pooled_profile_core_s / 2
    assert costs.pooled_item_core_s == pytest.approx(pooled * 2 / 70)
    assert costs.fixed_s == 3 + 6 + 1 and costs.profile_s == 4 * 2 and costs.views == 4
    saved = tmp_path / "costs.json"
    costs.save(saved)
    assert UnitCosts.load(saved) == costs
    # a run that recorded the assembly of the embedding tables: it is taken out of the
    # cluster's embedding cost; its builders' CPU and the driver's writing are priced
    # per MB of vectors
    assert costs.assemble_vector_mb_core_s == UnitCosts.assemble_vector_mb_core_s  # none
    assert costs.assemble_write_mb_s == UnitCosts.assemble_write_mb_s
    # (and 1 s of the train stage waiting on the cells' metrics tasks, out of the grid)
    recorded = {"embed_assemble": 4, "embed_assemble_core": 6, "embed_assemble_write": 0.5}
    write_run(out, stages={"dedup": 0.2} | recorded, phases={"metrics_tasks": 1})
    split = plan_module.costs_from_run(out, cpus=2)
    assert split.metrics_item_core_s == pytest.approx(1 * 2 / 70)
    assert split.grid_item_core_s == pytest.approx(26 * 0.75 * 2 / 70)
    vector_mb = (80 * 5 + 25 * 17) * 1280 * 4 / 1e6
    assert split.assemble_vector_mb_core_s == pytest.approx(6 / vector_mb)
    assert split.assemble_write_mb_s == pytest.approx(0.5 / vector_mb)
    assert split.image_core_s == pytest.approx((40 - 4) * 2 / frames * 5)


def test_the_pooled_cap_bounds_the_cross_profile_fits_and_leaves_small_runs_alone():
    costs = UnitCosts()

    def pooled(profiles: int, cap: int | None) -> float:
        stages = _by_name(plan(costs, profiles, 500, cpus=512, pooled_max_items=cap))
        return stages["cross-profile models"].seconds

    assert pooled(10_000, 50_000) < pooled(10_000, None) / 20  # 100k items, not 5.85M
    assert pooled(10_000, 50_000) < pooled(20_000, 50_000)  # the per-profile models still grow
    assert pooled(40, 50_000) == pooled(40, None)  # 17,600 images: under the cap


def test_the_drivers_transfers_are_bound_by_its_disk_or_its_network_link():
    """Writing the built parts into OUT and sending OUT's files to the read tasks: per MB
    of vectors, the driver's own cost or its link's, whichever is slower."""
    from dataclasses import replace

    from popray.tools.plan_costs import DRIVER_LINK_MB_S, PART_BYTES, VIDEO_VECTORS

    posts = 100 * 200
    vector_mb = posts * (IMAGES_PER_POST * 5 + VIDEOS_PER_POST * VIDEO_VECTORS) * 1280 * 4 / 1e6
    for per_mb, expect in ((1e-9, PART_BYTES / DRIVER_LINK_MB_S), (0.01, 0.01)):
        costs = replace(UnitCosts(), assemble_write_mb_s=per_mb, send_mb_s=per_mb)
        stages = _by_name(plan(costs, 100, 200, cpus=8))
        for name in ("embed: parts to OUT", "dedup: send", "train: send"):
            assert stages[name].where == "driver"
            assert stages[name].seconds == pytest.approx(vector_mb * expect), name
