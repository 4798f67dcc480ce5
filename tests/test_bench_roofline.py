"""The embedding roofline's arithmetic and its photos (the timings are benchmarks only)."""

from __future__ import annotations

import pytest
from PIL import Image

from popray.tools.bench_roofline import limit, photos_1080


def test_the_limit_shares_the_cores_on_cpu_and_overlaps_on_gpu():
    # issue 17's figures: 2 cores, 354 img/s decode per core, 63 img/s forward
    assert limit(354, 63, 2, gpu=False) == pytest.approx(2 / (1 / 354 + 2 / 63))
    assert limit(354, 63, 2, gpu=False) == pytest.approx(57.9, abs=0.1)
    assert limit(354, 63, 2, gpu=False, frames=5) == pytest.approx(2 / (1 / 354 + 10 / 63))
    assert limit(150, 12_000, 16, gpu=True) == 2400
    assert limit(150, 1_000, 16, gpu=True, frames=2) == 500


def test_photos_are_instagram_sized_jpegs_and_all_different(tmp_path):
    items = photos_1080(tmp_path, 8)
    assert len({i.sha256 for i in items}) == 8
    with Image.open(items[7].path) as photo:
        assert (photo.format, photo.size) == ("JPEG", (1080, 1350))
    again = photos_1080(tmp_path, 8)  # kept: not made twice
    assert [i.sha256 for i in again] == [i.sha256 for i in items]
