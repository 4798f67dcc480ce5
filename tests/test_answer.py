"""The report's answers (popray/answer.py): the verdict and the model it is about."""

from __future__ import annotations

import pytest

from popray.answer import chosen, ranking_table, verdict


def _row(**given) -> dict:
    base = {
        "profile_id": "p",
        "protocol": "stratified_kfold",
        "model": "image",
        "k": 2,
        "validated_on": "image",
        "accuracy_mean": 0.6,
        "spearman_mean": 0.4,
        "spearman_p_value": 0.001,
        "recent_spearman": 0.1,
        "top20_precision_mean": 0.7,
        "recent_top20_precision": 0.5,
        "top_class_share": 0.5,
    }
    return base | given


@pytest.mark.parametrize(
    ("given", "good", "why"),
    [
        ({}, True, "ρ 0.40 > baseline 0.10, p = 0.001"),
        ({"recent_spearman": None}, True, "ρ 0.40, p = 0.001"),
        ({"spearman_p_value": 0.2}, False, "ρ 0.40 could be chance (p = 0.2)"),
        ({"spearman_mean": -0.1}, False, "ranks no better than random (ρ -0.10)"),
        ({"recent_spearman": 0.5}, False, "the recent-PoR baseline ranks as well"),
        ({"spearman_mean": None}, False, "nothing to rank"),
    ],
)
def test_better_than_guessing_needs_significance_and_beating_the_baseline(given, good, why):
    found, reason = verdict(_row(**given))
    assert found is good and reason.startswith(why)


def test_the_answer_is_about_the_model_predict_uses_and_walk_forward_when_it_ran():
    rows = [
        _row(model="image", k=2, accuracy_mean=0.9),
        _row(model="image", k=3, accuracy_mean=0.5),
        _row(model="gbdt", k=3, accuracy_mean=0.55),
        _row(model="video", k=3, validated_on="video", accuracy_mean=0.6),
        _row(model="video_to_image", k=3, validated_on="video", accuracy_mean=0.7),
        _row(model="gbdt", k=3, protocol="walk_forward", spearman_mean=-0.2),
        _row(model="image", k=3, protocol="walk_forward", spearman_mean=0.9),
        _row(model="gbdt", k=3, profile_id=None),
    ]
    (image, image_wf), (video, video_wf) = chosen(rows, "p")
    # the largest k, then the best accuracy in the folds for each media type
    assert (image["model"], image["k"], video["model"]) == ("gbdt", 3, "video_to_image")
    assert image_wf["spearman_mean"] == -0.2 and video_wf is None
    html = ranking_table(rows)
    # the gbdt row is judged on its walk-forward windows, the video row on its folds
    assert html.count('<td class="no"><b>no</b>: ranks no better than random') == 1
    assert html.count('<td class="yes"><b>yes</b>') == 1  # the video row (one profile: no overview)
    assert chosen(rows, "nobody") == []
