"""The typed records that cross stage boundaries: what they keep through their wire
forms (a Ray Data row, a trial's metrics.json)."""

import json
from datetime import UTC, datetime

import pytest

from popray.records import Embedded, FoldResult, MediaItem, TrialResult

FOLD = FoldResult("p1", 2, 7, 0.625, 40, 3, 10, 1.5)
WINDOW = FoldResult("p2", 0, 4, 0.5, 30, 0, 5, 0.75, 2_592_000_000_000, 3_024_000_000_000)


def test_a_trial_result_survives_its_metrics_file():
    result = TrialResult((FOLD, WINDOW), 1_765_000_000.5)
    again = TrialResult.from_json(result.to_json())
    assert again == result
    raw = json.loads(result.to_json())
    assert raw["n_profiles"] == 2 and raw["val_accuracy"] == pytest.approx(0.5625)
    assert raw["best_epoch"] == 5 and raw["train_s"] == pytest.approx(2.25)
    assert "cut_at" not in raw["profiles"][0] and raw["profiles"][1]["cut_at"] == WINDOW.cut_at


def test_a_metrics_file_written_before_the_records_still_reads():
    """Grids finished by an earlier popray are resumed, not retrained: their files read."""
    old = (
        '{"val_accuracy": 0.6, "best_epoch": 3, "train_s": 0.4, "n_profiles": 1, '
        '"finished_at": 1765000000.0, "profiles": [{"profile_id": "p", "fold": 0, '
        '"cut_at": 86400000000, "window_end": 172800000000, "best_epoch": 3, '
        '"val_accuracy": 0.6, "n_train": 12, "n_extra": 0, "n_val": 4, "train_s": 0.4}]}'
    )
    result = TrialResult.from_json(old)
    assert result.profiles[0].cut_at == 86_400_000_000 and result.summary()["best_epoch"] == 3


def test_a_fold_row_carries_the_window_bounds_as_times():
    row = WINDOW.row()
    assert row["cut_at"] == datetime(1970, 1, 31, tzinfo=UTC)
    assert row["window_end"] == datetime(1970, 2, 5, tzinfo=UTC)
    assert FOLD.row()["cut_at"] is None and FOLD.row()["profile_id"] == "p1"


def test_media_items_from_the_media_table_and_back_from_the_pipeline():
    media = {
        "media_id": "m1",
        "sha256": "ab",
        "media_type": "video",
        "path": "media/m1.mp4",
        "thumbnail_path": None,
        "profile_id": "p",
    }
    item = MediaItem.of_media(media, "part-3")
    assert item.row() == {
        "media_id": "m1",
        "sha256": "ab",
        "kind": "video",
        "path": "media/m1.mp4",
        "thumb": "",
        "part": "part-3",
    }
    with pytest.raises(ValueError, match="kind 'gif'"):
        MediaItem.of_media(media | {"media_type": "gif"})
    row = {"media_id": "m1", "sha256": "ab", "kind": "video", "error": None, "device": "cpu"}
    back = Embedded.from_row(row)
    assert back == Embedded("m1", "ab", "video", "", "cpu") and back.embeddings is None


def test_a_saved_models_file_keeps_its_format_and_reads_files_written_before():
    """model.json: a nightly run reuses models saved by earlier runs, so the file's keys
    stay those it had (a profile's model has no `profiles`; a cross-profile one has)."""
    from popray.records import SavedModel

    # as `final` wrote it before SavedModel existed (from a demo run)
    before = {
        "profile_id": "sample_brand",
        "context_features": False,
        "model": "image",
        "k": 2,
        "scheme": "por_rolling",
        "backbone": "efficientnet_lite0",
        "epochs": 2,
        "seed": 0,
        "train": {"epochs": 2, "lr": 0.001, "batch_size": 32},
        "snapshot": "ecac7c865168c902318fe10fac6f109d7d1459aff7f9dbeb81149ab0261cf1d6",
        "grid_accuracy_mean": 0.714759535655058,
        "width": 1280,
        "created_at": "2026-12-07T02:07:56.092775+00:00",
    }
    meta = SavedModel.from_json(json.dumps(before, indent=2))
    assert (meta.model, meta.k, meta.width, meta.profiles) == ("image", 2, 1280, None)
    assert json.loads(meta.to_json()) == before
    pooled = SavedModel(**(before | {"profile_id": "*", "profiles": ["a", "b"]}))
    assert json.loads(pooled.to_json())["profiles"] == ["a", "b"]
    assert SavedModel.from_json(pooled.to_json()) == pooled
