"""Walk-forward validation: what a cut's models may know, and how its windows are scored."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from popray.config import SCHEMES, GridConfig, LabelConfig, TrainConfig, WalkForwardConfig
from popray.io import store
from popray.training.dataset import Items, TrainingSet
from popray.training.timelines import NO_CLASS, Timeline, labels_as_of
from popray.training.walkforward import run_windows, usable, usable_windows

DAY = 86_400_000_000


def _tables(out) -> dict[str, pa.Table]:
    return {n: store.read_table(out, n) for n in ("posts", "media", "followers", "excluded")}


def _us(column) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy()


def _scale_after(table: pa.Table, time_col: str, cut: int, columns: dict[str, int]) -> pa.Table:
    """`table` with each of `columns` multiplied by its factor on rows at or after `cut`."""
    later = _us(table[time_col]) >= cut
    for name, factor in columns.items():
        values = table[name].to_numpy()
        scaled = np.where(later, values * factor, values)
        table = table.set_column(
            table.schema.get_field_index(name),
            name,
            pa.array(scaled, table.schema.field(name).type),
        )
    return table


def _rows(labels: pa.Table) -> list[dict]:
    return labels.sort_by(
        [("scheme", "ascending"), ("k", "ascending"), ("media_id", "ascending")]
    ).to_pylist()


@pytest.fixture(scope="module")
def cut_setup(tiny_out):
    tables = _tables(tiny_out)
    profile = tables["posts"]["profile_id"][0].as_py()
    times = np.sort(_us(tables["posts"]["published_at"]))
    cut = int(times[len(times) * 2 // 3])
    return tables, profile, cut


@pytest.mark.parametrize("scheme", SCHEMES)
def test_labels_at_a_cut_ignore_everything_published_or_counted_after_it(cut_setup, scheme):
    tables, profile, cut = cut_setup
    config = LabelConfig(scheme=scheme)
    before = labels_as_of(tables, {profile: cut}, config)
    assert before.num_rows and (_us(before["published_at"]) < cut).all()
    assert scheme in before["scheme"].to_pylist()
    # the future rewritten: later posts 50x the likes, later follower counts tripled
    future = dict(tables)
    future["posts"] = _scale_after(tables["posts"], "published_at", cut, {"likes": 50})
    future["followers"] = _scale_after(tables["followers"], "at", cut, {"followers": 3})
    assert _rows(labels_as_of(future, {profile: cut}, config)) == _rows(before)
    # the same change 60 days earlier reaches posts before the cut: labels move (the test
    # can see a leak)
    past = dict(tables)
    past["posts"] = _scale_after(tables["posts"], "published_at", cut - 60 * DAY, {"likes": 50})
    assert _rows(labels_as_of(past, {profile: cut}, config)) != _rows(before)


def test_rolling_windows_near_the_cut_end_at_it(cut_setup, tiny_out):
    tables, profile, cut = cut_setup
    config = LabelConfig()
    at_cut = labels_as_of(tables, {profile: cut}, config).to_pylist()
    full = {
        (r["media_id"], r["k"]): r["reference_n"]
        for r in store.read_table(tiny_out, "labels").to_pylist()
        if r["scheme"] == "por_rolling"
    }
    half = config.window_days / 2 * DAY
    near = [
        r
        for r in at_cut
        if r["scheme"] == "por_rolling" and _us(pa.array([r["published_at"]]))[0] >= cut - half
    ]
    assert near
    # an item within half a window of the cut has its window cut short: fewer reference items
    assert all(r["reference_n"] <= full[(r["media_id"], r["k"])] for r in near)
    assert any(r["reference_n"] < full[(r["media_id"], r["k"])] for r in near)


def _toy(seed: int = 0) -> tuple[TrainingSet, Timeline]:
    """40 images a day apart with a planted signal, two windows of 5 days at the end."""
    rng = np.random.default_rng(seed)
    n, width = 40, 8
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 2, width)).astype(np.float32) + y[:, None, None] * 1.5
    no_video = np.zeros((0, width), np.float32)
    ds = TrainingSet(
        Items([f"m{i:02d}" for i in range(n)], [f"s{i}" for i in range(n)], y, x),
        Items([], [], np.zeros(0, np.int64), np.zeros((0, 15, width), np.float32), no_video),
    )
    t = np.arange(n, dtype=np.int64) * DAY
    bounds = np.array([30, 35, 40], np.int64) * DAY
    known = np.stack([np.where(t < b, y, NO_CLASS) for b in bounds[:-1]])
    timeline = Timeline(
        bounds,
        t,
        np.zeros(0, np.int64),
        known,
        np.zeros((2, 0), np.int64),
        np.stack([y, y]),
        np.zeros((2, 0), np.int64),
    )
    return ds, timeline


GRID = GridConfig(models=["image"], seeds=[0], train=TrainConfig(epochs=4))


def test_each_window_trains_on_the_past_and_scores_its_own_items():
    ds, tl = _toy()
    entries, tables = run_windows("image", 2, 0, ds, tl, GRID, "cpu", "p")
    assert [e.fold for e in entries] == [0, 1]
    assert [e.n_train for e in entries] == [30, 35]  # an expanding window
    scored = [t["media_id"].to_pylist() for t in tables]
    assert scored == [[f"m{i:02d}" for i in range(30, 35)], [f"m{i:02d}" for i in range(35, 40)]]
    assert [t["cut_at"][0].cast(pa.int64()).as_py() for t in tables] == [30 * DAY, 35 * DAY]


def test_the_scored_window_never_picks_the_model():
    """The epoch count comes from the latest training items, not from the window: the
    window's own labels can change without changing a single prediction."""
    ds, tl = _toy()
    _, before = run_windows("image", 2, 0, ds, tl, GRID, "cpu", "p")
    flipped = Timeline(
        tl.bounds,
        tl.image_t,
        tl.video_t,
        tl.image_class,
        tl.video_class,
        np.where(tl.image_t >= tl.bounds[0], 1 - tl.image_truth, tl.image_truth),
        tl.video_truth,
    )
    _, after = run_windows("image", 2, 0, ds, flipped, GRID, "cpu", "p")
    for b, a in zip(before, after, strict=True):
        assert b["proba"].to_pylist() == a["proba"].to_pylist()
        assert b["label"].to_pylist() != a["label"].to_pylist()


def test_a_window_needs_training_items_of_every_class_and_items_to_score():
    _, tl = _toy()
    assert usable(tl, "image", 2, 0, WalkForwardConfig(min_train_per_class=15))
    assert not usable(tl, "image", 2, 0, WalkForwardConfig(min_train_per_class=16))
    empty = Timeline(
        tl.bounds,
        tl.image_t,
        tl.video_t,
        tl.image_class,
        tl.video_class,
        np.full_like(tl.image_truth, NO_CLASS),
        tl.video_truth,
    )
    assert not usable(empty, "image", 2, 0, WalkForwardConfig())
    assert not usable(tl, "video", 2, 0, WalkForwardConfig())  # no videos at all


def _usable_by_rows(tl: Timeline, media: str, k: int, window: int, least: int) -> bool:
    """The definition, window by window: items to score, and `least` training items of
    every class among the rows `Timeline.rows` trains on."""
    train, test = tl.rows(media, window)
    cls = (tl.image_class if media == "image" else tl.video_class)[window]
    return len(test) > 0 and np.bincount(cls[train], minlength=k).min() >= least


@pytest.mark.parametrize("seed", range(8))
def test_every_window_checked_at_once_agrees_with_the_rows_of_each_window(seed):
    """The grid's plan checks all windows of a profile in one go (`usable_windows`); on
    random timelines (items on the window bounds, unpublished and unsettled items, sparse
    and empty media types, k 2 and 3, thresholds that cut some windows) it says what the
    rows of each window say."""
    rng = np.random.default_rng(seed)
    cuts, k = 6, 2 + seed % 2
    bounds = np.sort(rng.choice(np.arange(0, 60, 2), cuts + 1, replace=False)) * DAY

    def media(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = rng.choice(bounds, n) if seed % 2 else rng.integers(0, 61, n) * DAY
        cls = rng.integers(-1, k, (cuts, n))  # -1: NO_CLASS at that cut
        truth = np.where(rng.random((cuts, n)) < 0.3, NO_CLASS, rng.integers(0, k, (cuts, n)))
        return t, cls, truth

    (it, ic, itr), (vt, vc, vtr) = (
        media(int(rng.integers(3, 12 if seed % 2 else 80))),
        media(seed % 3 * 4),
    )
    tl = Timeline(bounds, it, vt, ic, vc, itr, vtr)
    for media_type in ("image", "video"):
        for least in (1, 2, 3, 5):
            cfg = WalkForwardConfig(min_train_per_class=least)
            got = usable_windows(tl, media_type, k, cfg)
            want = [_usable_by_rows(tl, media_type, k, w, least) for w in range(cuts)]
            assert got.tolist() == want, (media_type, least)
