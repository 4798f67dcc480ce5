"""Walk-forward timelines computed by Ray tasks over groups of profiles."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from popray.config import DedupConfig, LabelConfig, WalkForwardConfig
from popray.io import store
from popray.io.tables import table_schema
from popray.training.timeline_groups import TABLES, profile_groups
from popray.training.timelines import NO_CLASS, build_timelines, labels_as_of


@pytest.fixture(scope="module")
def grouped_out(tmp_path_factory, ray_session):
    """5 synthetic profiles of 150 posts, a third of two profiles' media excluded,
    labelled and de-duplicated, with their training keys for k = 2 and 3."""
    from popray.dedup import run_dedup
    from popray.labels import run_label
    from popray.tools.bench_scale import BACKBONE, synthetic_out
    from popray.training.loading import load_datasets

    out = tmp_path_factory.mktemp("timelines")
    synthetic_out(out, profiles=5, posts=150)
    media = store.read_table(out, "media")
    owners = sorted(set(media["profile_id"].to_pylist()))[:2]
    dropped = [  # every third item of two profiles: their neighbours' classes change
        m
        for i, (m, p) in enumerate(
            zip(media["media_id"].to_pylist(), media["profile_id"].to_pylist(), strict=True)
        )
        if p in owners and i % 3 == 0
    ]
    n = len(dropped)
    excluded = {"media_id": dropped, "reason": ["test"] * n, "source_row": list(range(n))}
    store.write_table(out, "excluded", pa.table(excluded, schema=table_schema("excluded")))
    labels = LabelConfig()
    run_label(out, labels)
    run_dedup(out, DedupConfig(threshold=1e-6), BACKBONE)  # no item is a duplicate
    return out, load_datasets(out, BACKBONE, [2, 3], labels.scheme), labels, dropped


def test_profiles_are_cut_into_runs_of_posts_each_profile_whole():
    from popray.tools.plan_costs import LABEL_TASK_POSTS
    from popray.training.timelines import POSTS_PER_TASK

    assert LABEL_TASK_POSTS == POSTS_PER_TASK  # the plan's copy
    posts = pa.table({"profile_id": ["b", "a", "a", "c", "b", "a", "d"]})
    assert profile_groups(posts, 1) == [["a"], ["b"], ["c"], ["d"]]
    assert profile_groups(posts, 3) == [["a"], ["b", "c"], ["d"]]
    assert profile_groups(posts, 4) == [["a", "b"], ["c", "d"]]
    assert profile_groups(posts, 100) == [["a", "b", "c", "d"]]


def test_any_grouping_of_the_profiles_gives_the_same_timelines(grouped_out):
    """One labelling task for every profile, or one per profile: the same windows, classes,
    baselines and ranking targets, the profiles in the same order; the excluded media
    are in neither."""
    out, datasets, labels, dropped = grouped_out
    cfg = WalkForwardConfig()
    assert len(profile_groups(store.read_table(out, "posts"), 1)) == 5
    whole = build_timelines(out, datasets, labels, cfg, 10**9)
    split = build_timelines(out, datasets, labels, cfg, 1)
    one, recent_one, targets_one = whole.timelines, whole.recent, whole.targets
    many, recent_many, targets_many = split.timelines, split.recent, split.targets
    assert list(one) == list(many) == [2, 3]
    for k in one:
        assert list(one[k]) == list(many[k]) == datasets[k].profiles()
        for profile, tl in one[k].items():
            other = many[k][profile]
            for name in tl.__dataclass_fields__:
                assert np.array_equal(getattr(tl, name), getattr(other, name)), (k, profile, name)
            img, vid = datasets[k].rows_of(profile)
            assert tl.image_class.shape == (cfg.cuts, len(img))
            assert tl.video_truth.shape == (cfg.cuts, len(vid))
        classes = np.concatenate([tl.image_truth.ravel() for tl in one[k].values()])
        assert (classes != NO_CLASS).sum() > 100  # windows with settled classes to compare
        assert not set(dropped) & set(datasets[k].images.ids + datasets[k].videos.ids)
    assert recent_one == recent_many and len(recent_one) > 100
    assert targets_one == targets_many and len(targets_one) == len(recent_one)


def test_the_tasks_classes_are_those_of_the_whole_export_at_each_cut(grouped_out):
    """Each window's classes from the per-profile tasks equal a labelling of the whole
    export (every profile, the excluded media left out) as it stood at the cut."""
    out, datasets, labels, _ = grouped_out
    cfg = WalkForwardConfig()
    timelines = build_timelines(out, datasets, labels, cfg, 1).timelines
    tables = {n: store.read_table(out, n) for n in TABLES}
    for window in range(cfg.cuts):
        as_of = {p: int(tl.bounds[window]) for p, tl in timelines[2].items()}
        rows = labels_as_of(tables, as_of, labels).to_pylist()
        want = {(r["k"], r["media_id"]): r["class"] for r in rows}
        for k, per in timelines.items():
            for profile, tl in per.items():
                img, vid = datasets[k].rows_of(profile)
                ids = [datasets[k].images.ids[i] for i in img]
                expected = [NO_CLASS if want.get((k, m)) is None else want[k, m] for m in ids]
                assert tl.image_class[window].tolist() == expected, (window, k, profile)
                ids = [datasets[k].videos.ids[i] for i in vid]
                expected = [NO_CLASS if want.get((k, m)) is None else want[k, m] for m in ids]
                assert tl.video_class[window].tolist() == expected, (window, k, profile)
