import numpy as np
import pyarrow as pa
import pytest

from popray.io.tables import table_schema
from popray.training.evaluate import PAPER_ACCURACY, compute_metrics
from popray.training.metrics_text import metrics_text


def _predictions(rows):
    base = {"scheme": "por_rolling", "backbone": "b", "features": "embedding", "model": "image"}
    base |= {"fold": 0, "protocol": "stratified_kfold"}
    return pa.Table.from_pylist(
        [base | {"profile_id": "p"} | r for r in rows], schema=table_schema("predictions")
    )


def _pooled(table):
    """The pooled row; with one profile, the profile's own row says the same."""
    pooled, own = table.to_pylist()
    assert pooled["profile_id"] is None and own["profile_id"] == "p"
    assert {**pooled, "profile_id": "p"} == own
    return pooled


def _row(seed, media_id, label, proba):
    return {
        "seed": seed,
        "k": len(proba),
        "media_id": media_id,
        "label": label,
        "pred": int(np.argmax(proba)),
        "proba": proba,
    }


def test_a_seed_pools_its_folds_and_seeds_give_mean_and_std():
    # seed 0: 3 of 4 right; seed 1: 2 of 4 right (labels 0, 0, 1, 2)
    labels = [0, 0, 1, 2]
    seed0 = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]]
    seed1 = [[0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]
    rows = [
        _row(s, f"m{i}", y, p)
        for s, probas in ((0, seed0), (1, seed1))
        for i, (y, p) in enumerate(zip(labels, probas, strict=True))
    ]
    m = _pooled(compute_metrics(_predictions(rows)))
    assert m["n_items"] == 4 and m["n_seeds"] == 2 and m["validated_on"] == "image"
    assert m["accuracy_mean"] == pytest.approx(0.625)
    assert m["accuracy_std"] == pytest.approx(0.125)  # ddof 0 over the two seeds
    # top-2: seed 0 all 4 (m1's 0 is 2nd); seed 1: m1 has 0 last -> 3 of 4
    assert m["top2_mean"] == pytest.approx((1.0 + 0.75) / 2)
    assert m["majority_accuracy"] == pytest.approx(0.5)
    assert m["paper_accuracy"] == PAPER_ACCURACY[("image", 3)]
    confusion = np.array(m["confusion_mean"])
    # true class 0: seed 0 predicts [0, 1] -> [.5, .5, 0]; seed 1 [0, 2] -> [.5, 0, .5]
    assert confusion[0] == pytest.approx([0.5, 0.25, 0.25])
    assert np.array(m["confusion_std"])[0] == pytest.approx([0, 0.25, 0.25])
    assert confusion.sum(axis=1) == pytest.approx([1, 1, 1])
    text = metrics_text(compute_metrics(_predictions(rows)))
    assert "0.62 ± 0.12 [0.54]" in text and "top-2 0.88" in text


def test_binary_has_no_top2_and_a_missing_class_row_is_zero():
    rows = [_row(0, "a", 0, [0.9, 0.1]), _row(0, "b", 0, [0.4, 0.6])]
    m = _pooled(compute_metrics(_predictions(rows)))
    assert m["top2_mean"] is None and m["accuracy_mean"] == 0.5
    assert m["confusion_mean"] == [[0.5, 0.5], [0.0, 0.0]]
    assert m["macro_f1_mean"] == pytest.approx((2 / 3 + 0) / 2)


def test_profiles_are_scored_alone_and_pooled():
    # profile a: 4 items, majority class 0 (3 of 4), model right on all;
    # profile b: 2 items, majority class 1 (2 of 2), model right on 1
    rows = [
        _row(0, "a0", 0, [0.9, 0.1]) | {"profile_id": "a"},
        _row(0, "a1", 0, [0.9, 0.1]) | {"profile_id": "a"},
        _row(0, "a2", 0, [0.9, 0.1]) | {"profile_id": "a"},
        _row(0, "a3", 1, [0.1, 0.9]) | {"profile_id": "a"},
        _row(0, "b0", 1, [0.1, 0.9]) | {"profile_id": "b"},
        _row(0, "b1", 1, [0.9, 0.1]) | {"profile_id": "b"},
    ]
    pooled, a, b = compute_metrics(_predictions(rows)).to_pylist()
    assert (pooled["profile_id"], a["profile_id"], b["profile_id"]) == (None, "a", "b")
    assert (a["accuracy_mean"], b["accuracy_mean"]) == (1.0, 0.5)
    assert pooled["accuracy_mean"] == pytest.approx(5 / 6) and pooled["n_items"] == 6
    # majority: each profile's own commonest class (a: 0, b: 1), not the pooled one
    assert (a["majority_accuracy"], b["majority_accuracy"]) == (0.75, 1.0)
    assert pooled["majority_accuracy"] == pytest.approx(5 / 6)
    assert "0.83 ± 0.00" in metrics_text(compute_metrics(_predictions(rows)))
    assert "2 profiles" in metrics_text(compute_metrics(_predictions(rows)))


def test_calibration_error():
    from popray.training.evaluate import expected_calibration_error

    y = np.array([0, 1, 1, 0])
    sure = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert expected_calibration_error(y, sure) == 0.0
    # 90% confident and always right: off by 0.1; 90% confident and half right: off by 0.4
    ninety = np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]])
    assert expected_calibration_error(y, ninety) == pytest.approx(0.1)
    assert expected_calibration_error(np.array([0, 1, 0, 1]), ninety) == pytest.approx(0.4)


def test_baselines_and_the_test_against_them():
    labels = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1] * 3  # 30 items, majority 0.7
    good = [_row(0, f"m{i}", y, [0.1, 0.9] if y else [0.9, 0.1]) for i, y in enumerate(labels)]
    recent = {
        ("stratified_kfold", 2, f"m{i}"): (labels[i - 1] if i else None) for i in range(len(labels))
    }
    m = _pooled(compute_metrics(_predictions(good), recent))
    assert m["majority_accuracy"] == pytest.approx(0.7)
    # recent: item i guesses item i-1's class; the first item guesses the majority (1)
    expect = np.mean([(labels[i - 1] if i else 1) == y for i, y in enumerate(labels)])
    assert m["recent_accuracy"] == pytest.approx(expect)
    best = max(0.7, expect)  # 30 of 30 right: P(X >= 30) = best ** 30
    assert m["accuracy_mean"] == 1.0 and m["p_value"] == pytest.approx(best**30)
    guess = [_row(0, f"m{i}", y, [0.4, 0.6]) for i, y in enumerate(labels)]  # always class 1
    g = _pooled(compute_metrics(_predictions(guess), recent))
    assert g["accuracy_mean"] == pytest.approx(0.7) and g["p_value"] > 0.5


def test_recent_baseline_sql_is_the_previous_item_of_the_same_type(tiny_out):
    from popray.io import store
    from popray.training.baselines import recent_baseline

    rows = store.read_table(tiny_out, "labels").to_pylist()
    for scheme, ks in (("por_rolling", (2, 3)), ("likes_moving_average", (2,))):
        recent = recent_baseline(tiny_out, scheme)
        for k in ks:
            for media_type in ("image", "video"):
                mine = sorted(
                    (
                        r
                        for r in rows
                        if (r["scheme"], r["k"], r["media_type"]) == (scheme, k, media_type)
                        and r["class"] is not None
                    ),
                    key=lambda r: (r["published_at"], r["media_id"]),
                )
                previous = [None] + [r["class"] for r in mine[:-1]]
                assert [recent[(k, r["media_id"])] for r in mine] == previous


def test_spearman_matches_scipy_with_ties_and_ranks_within_profiles():
    from scipy.stats import spearmanr

    from popray.training.ranking import spearman, within_profile

    pred = np.array([0.2, 1.0, 1.0, 0.4, 1.8, 0.4])  # ties in both
    score = np.array([0.1, 0.5, 0.3, 0.3, 0.9, 0.2])
    one = np.array(["p"] * 6)
    rho, p = spearman(pred, score, one)
    reference = spearmanr(pred, score, alternative="greater")
    assert rho == pytest.approx(reference.statistic) and p == pytest.approx(reference.pvalue)
    # by hand: ranks (average for ties) of pred 1, 4.5, 4.5, 2.5, 6, 2.5 and of score
    # 1, 5, 3.5, 3.5, 6, 2; Pearson of the ranks
    a = np.array([1, 4.5, 4.5, 2.5, 6, 2.5])
    b = np.array([1, 5, 3.5, 3.5, 6, 2])
    assert rho == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert within_profile(np.array([3.0, 1.0, 3.0]), np.array(["p"] * 3)).tolist() == [
        0.75,
        0.0,
        0.75,
    ]
    # two profiles on different scales: ranked within each, so a model that orders each
    # profile perfectly gets rho 1 though the scales differ 1000-fold
    profiles = np.array(["a"] * 4 + ["b"] * 4)
    target = np.array([1.0, 2.0, 3.0, 4.0, 1000.0, 2000.0, 3000.0, 4000.0])
    guess = np.array([0.1, 0.2, 0.3, 0.4, 0.01, 0.02, 0.03, 0.04])
    assert spearman(guess, target, profiles)[0] == pytest.approx(1.0)
    assert spearmanr(guess, target).statistic < 0.9  # pooled raw, it would not be
    assert spearman(np.ones(5), np.arange(5.0), np.array(["p"] * 5)) == (None, None)


def test_top_fifth_precision_by_hand():
    from popray.training.ranking import top_precision

    # profile a: 10 items, its top fifth (2) by pred are a9, a8 -> one in the top class;
    # profile b: 5 items, its top fifth (1) is b0 (the tie with b1 goes by media_id) -> hit
    ids = np.array([f"a{i}" for i in range(10)] + [f"b{i}" for i in range(5)])
    profiles = np.array(["a"] * 10 + ["b"] * 5)
    pred = np.array([*range(10), 9, 9, 1, 2, 3], dtype=float)
    top = np.zeros(15, bool)
    top[[9, 3, 10]] = True
    assert top_precision(pred, top, profiles, ids) == pytest.approx(2 / 3)


def test_ranking_columns_for_the_model_and_the_recent_baseline():
    k = 3
    labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 2]
    score = [0.1, 0.5, 0.9, 0.2, 0.4, 0.8, 0.15, 0.45, 0.95, 0.7]
    # seed 0 ranks exactly by score; seed 1 by the reverse
    probas = {
        0: [[1 - s, 0.0, s] for s in score],
        1: [[s, 0.0, 1 - s] for s in score],
    }
    rows = [
        _row(seed, f"m{i}", y, p)
        for seed, ps in probas.items()
        for i, (y, p) in enumerate(zip(labels, ps, strict=True))
    ]
    previous = [None, *score[:-1]]
    targets = {
        ("stratified_kfold", k, f"m{i}"): (s, g)
        for i, (s, g) in enumerate(zip(score, previous, strict=True))
    }
    m = _pooled(compute_metrics(_predictions(rows), None, targets))
    assert m["spearman_mean"] == pytest.approx(0.0) and m["spearman_std"] == pytest.approx(1.0)
    # seed 0's top fifth (2 items) are m8, m2: both top class; seed 1's m0, m6: neither
    assert m["top20_precision_mean"] == pytest.approx(0.5)
    assert m["top_class_share"] == pytest.approx(0.4)
    # the seeds' mean expected class is the same for every item: no ranking, no p-value
    assert m["spearman_p_value"] is None
    guess = np.array([np.median(score[:-1]), *score[:-1]])  # the first: the median guess
    from scipy.stats import spearmanr

    assert m["recent_spearman"] == pytest.approx(spearmanr(guess, score).statistic)
    assert compute_metrics(_predictions(rows)).to_pylist()[0]["spearman_mean"] is None


def test_a_profiles_rows_do_not_depend_on_the_other_profiles():
    """What lets a nightly run take over an unchanged profile's metrics: its rows are the
    same, to the bit, whether it is scored alone or among other profiles."""
    rng = np.random.default_rng(0)
    rows, recent, targets = [], {}, {}
    for profile in ("a", "b", "c"):
        for i in range(int(rng.integers(8, 20))):
            media_id, y = f"{profile}{i}", int(rng.integers(0, 3))
            for key in (("stratified_kfold", 3, media_id), ("stratified_kfold", 2, media_id)):
                recent[key] = None if i == 0 else int(rng.integers(0, key[1]))
                targets[key] = (float(rng.normal()), None if i < 2 else float(rng.normal()))
            for seed in (0, 1):
                for k in (2, 3):
                    proba = np.round(rng.dirichlet(np.ones(k)), 1) + 0.01
                    row = _row(seed, media_id, min(y, k - 1), (proba / proba.sum()).tolist())
                    rows.append(row | {"profile_id": profile})
    together = compute_metrics(_predictions(rows), recent, targets).to_pylist()
    for profile in ("a", "b", "c"):
        mine = [r for r in rows if r["profile_id"] == profile]
        alone = compute_metrics(_predictions(mine), recent, targets).to_pylist()
        assert [r for r in together if r["profile_id"] == profile] == alone[1::2]
        assert all(r["spearman_mean"] is not None for r in alone)
    pooled = [r for r in together if r["profile_id"] is None]
    assert [r["n_items"] for r in pooled] == [len({r["media_id"] for r in rows})] * 2
