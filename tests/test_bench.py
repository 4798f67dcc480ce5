"""The benchmarks' command line runs and reports what the README quotes (tiny sizes; the
timings themselves are measured, never asserted)."""

from __future__ import annotations

import json

import pytest

from popray.tools.bench_main import main


def _run(capsys, *argv: str) -> list[dict]:
    assert main(list(argv)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_dedup_bench_finds_the_planted_clusters(capsys):
    (row,) = _run(capsys, "dedup", "--items", "600")
    # 600 items from 200 tight clusters (within the threshold): a cluster drawn twice or
    # more is a group (about 160 of 200 at 3 items a cluster on average)
    assert row["bench"] == "dedup" and row["items"] == 600
    assert 150 < row["groups"] <= 200 and row["seconds"] >= 0


def test_labels_bench_labels_every_scheme_of_every_post(capsys):
    (row,) = _run(capsys, "labels", "--posts", "400", "--per-profile", "100")
    assert (row["bench"], row["posts"]) == ("labels_synthetic", 400)
    # one image per post; k = 2 and 3 for the three quantile schemes, k = 2 only for the
    # two binary ones (ratio_threshold, likes_moving_average)
    assert row["label_rows"] == 400 * (3 * 2 + 2) and row["best_s"] > 0


@pytest.mark.slow
def test_step_bench_times_each_paper_model(capsys):
    rows = _run(capsys, "step", "--repeats", "1", "--steps", "2")
    assert [r["model"] for r in rows] == ["image", "video", "image_to_video", "video_to_image"]
    assert all(r["step_ms"] > 0 and len(r["passes_ms"]) == 1 for r in rows)
