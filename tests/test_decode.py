from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from popray.config import AugmentConfig
from popray.errors import DecodeError
from popray.media import decode


def write_counter_video(path, n_frames, fps, size=(64, 48)):
    """A video whose frame i is a flat grey of level (i * 7) % 256 (to check sampling)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "1", "preset": "ultrafast", "g": "1"}
        for i in range(n_frames):
            arr = np.full((size[1], size[0], 3), (i * 7) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_frame_rule_long_short_and_boundary():
    assert decode.frame_times(40.0).tolist() == list(range(15))
    assert decode.frame_times(15.0).tolist() == list(range(15))
    short = decode.frame_times(6.0)
    assert len(short) == 15 and short[1] == pytest.approx(0.4) and short[-1] < 6.0
    idx = decode.frame_indices(decode.frame_times(20.0), 30000 / 1001, 600)
    assert idx[:3].tolist() == [0, 30, 60] and idx[-1] == round(14 * 30000 / 1001)
    tiny = decode.frame_indices(decode.frame_times(0.2), 10.0, 2)
    assert tiny.min() == 0 and tiny.max() <= 1  # fewer frames than samples: repeats


@pytest.mark.parametrize("n_frames,fps", [(25 * 20, 25), (90, 30), (37, Fraction(30000, 1001))])
def test_video_sampling_picks_the_right_frames(tmp_path, n_frames, fps):
    path = tmp_path / "v.mp4"
    write_counter_video(path, n_frames, fps)
    got = decode.video_frames(path, timeout_s=60)
    assert got["frames"].shape == (15, 224, 224, 3)
    assert got["n_frames_total"] == n_frames
    expected = decode.frame_indices(decode.frame_times(n_frames / float(fps)), float(fps), n_frames)
    levels = got["frames"].reshape(15, -1).mean(axis=1)
    assert np.allclose(levels, (expected * 7) % 256, atol=3), (levels, expected)


def test_broken_videos_end_in_a_decode_error(tiny_input, tiny_truth):
    for media_id, kind in tiny_truth["corrupt_media"].items():
        if kind.endswith("mp4"):
            with pytest.raises(DecodeError):
                decode.video_frames(tiny_input / "media" / f"{media_id}.mp4", timeout_s=30)


def test_image_orientation_transparency_and_guards(tmp_path, tiny_input, tiny_truth):
    rotated = tiny_truth["exif_rotated"]
    if rotated:
        path = next((tiny_input / "media").glob(f"{rotated[0]}.*"))
        raw = Image.open(path)
        assert decode.load_image(path).size == raw.size[::-1]
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.save(tmp_path / "t.png")
    assert decode.load_image(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(DecodeError, match="truncated"):
        decode.load_image(tiny_input / "media" / "mc0.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.gif")
    with pytest.raises(DecodeError, match="allowed format"):
        decode.load_image(tmp_path / "x.gif")
    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode.load_image(tmp_path / "big.png", max_pixels=10_000)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DecodeError):
        decode.load_image(tmp_path / "empty.jpg")


def test_views_are_seeded_distinct_and_view0_is_the_image(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    aug = AugmentConfig()
    a = decode.image_views(tmp_path / "a.png", 3, 0, "ab" * 32, aug, 10**8)
    b = decode.image_views(tmp_path / "a.png", 3, 0, "ab" * 32, aug, 10**8)
    c = decode.image_views(tmp_path / "a.png", 3, 1, "ab" * 32, aug, 10**8)
    assert a.shape == (4, 224, 224, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a[1:], c[1:])
    assert np.array_equal(a[0], decode.resize(Image.fromarray(arr)))
    assert all(not np.array_equal(a[0], a[v]) for v in range(1, 4))
