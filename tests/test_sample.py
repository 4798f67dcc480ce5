import hashlib
import os
import subprocess
import sys
from datetime import timedelta

import decord
import numpy as np
import pytest
from PIL import Image, ImageOps

from popray.tools import sample, sample_media
from popray.tools.sample import SampleSpec, generate, spec_for


def _digest(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.slow
def test_same_seed_same_bytes_in_one_process(tiny_input, tmp_path):
    """The session's export was made earlier in this process, with other tests' work in
    between (the heap full of their leftovers): a second export is byte-identical."""
    again = tmp_path / "again"
    generate(again, spec_for("tiny", seed=0))
    assert _digest(again) == _digest(tiny_input)


@pytest.mark.slow
def test_same_seed_same_bytes_across_processes(tiny_input, tmp_path):
    """A fresh process whose malloc fills every new block with a byte pattern
    (MALLOC_PERTURB_): a read of memory nobody initialised shows up as different bytes."""
    again = tmp_path / "again"
    code = "import sys; from popray.tools.sample import generate, spec_for; "
    code += "generate(sys.argv[1], spec_for('tiny', seed=0))"
    env = os.environ | {"MALLOC_PERTURB_": "165"}
    subprocess.run([sys.executable, "-c", code, str(again)], env=env, check=True)
    assert _digest(again) == _digest(tiny_input)


def _smooth_rgb(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1).astype(
        np.uint8
    )


@pytest.mark.parametrize("size", [(240, 240), (180, 320), (250, 144)])
def test_yuv_conversion_matches_ffmpeg_and_inverts(size):
    """The generator's own RGB <-> yuv420p (no libswscale) agrees with FFmpeg's within a
    level or two, at widths that are and are not multiples of 32."""
    import av

    h, w = size
    rgb = _smooth_rgb(h, w)
    ours = sample_media.rgb_to_yuv420p(Image.fromarray(rgb))
    assert ours.shape == (h * 3 // 2, w) and ours.dtype == np.uint8
    ffmpeg = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    assert np.abs(ours.astype(int) - ffmpeg.to_ndarray()).max() <= 2
    back = sample_media.yuv420p_to_rgb(ours)
    assert back.shape == rgb.shape
    assert np.abs(back.astype(int) - rgb).mean() < 2  # smooth colours survive 4:2:0
    with pytest.raises(ValueError, match="even width and height"):
        sample_media.rgb_to_yuv420p(Image.fromarray(rgb[:, :-1]))


def test_reencoded_video_keeps_frames_rate_and_size(tmp_path):
    from fractions import Fraction

    src, dst = tmp_path / "a.mp4", tmp_path / "b.mp4"
    sample_media.write_video(src, np.random.default_rng(2), "coffee", 2.0, Fraction(25), (240, 240))
    sample_media.reencode_video(src, dst, crf=30)
    a, b = decord.VideoReader(str(src)), decord.VideoReader(str(dst))
    assert len(a) == len(b) == 50 and abs(b.get_avg_fps() - 25) < 0.01
    assert b[0].shape == (240, 240, 3)
    first = sample_media.first_frame(dst).astype(int)
    assert np.abs(first - a[0].asnumpy()).mean() < 6  # the same picture, re-encoded


def test_export_has_what_a_real_profile_has(tiny_input, tiny_truth):
    files = {p.suffix for p in (tiny_input / "media").rglob("*") if p.is_file()}
    assert {".jpg", ".png", ".webp", ".mp4"} <= files
    assert tiny_truth["duplicates"], "no planted duplicates"
    assert set(tiny_truth["corrupt_media"].values()) == {
        "truncated_jpeg",
        "zero_byte_mp4",
        "garbage_mp4",
        "overclaiming_mp4",
    }
    assert len(tiny_truth["bad_rows"]) == 10


def test_videos_are_h264_that_decord_reads(tiny_input, tiny_truth):
    corrupt = set(tiny_truth["corrupt_media"])
    videos = [p for p in (tiny_input / "media").glob("*.mp4") if p.stem not in corrupt]
    assert videos
    durations = []
    for path in videos:
        vr = decord.VideoReader(str(path))
        fps = vr.get_avg_fps()
        assert any(abs(fps - float(f)) < 0.05 for f in sample.FPS_CHOICES)
        frame = vr[0].asnumpy()
        assert frame.ndim == 3 and frame.shape[2] == 3
        durations.append(len(vr) / fps)
    assert min(durations) < 15 or len(durations) < 4  # short videos exist at tiny size


def test_exif_rotation_displays_upright(tmp_path):
    rng = np.random.default_rng(0)
    img = sample_media.compose(rng, "cat", (300, 200))
    sample_media.save_image(img, tmp_path / "r.jpg", "JPEG", exif_rotate=True)
    stored = Image.open(tmp_path / "r.jpg")
    assert stored.size == (200, 300)  # pixels stored turned
    shown = ImageOps.exif_transpose(stored)
    assert shown.size == (300, 200)
    diff = np.abs(np.asarray(shown, dtype=int) - np.asarray(img, dtype=int)).mean()
    assert diff < 6  # JPEG noise only


def test_planted_signal_drives_por():
    """PoR follows the subject effect, falls with followers, and is lower with video."""
    spec = SampleSpec(posts=10, years=4.0)
    rng = np.random.default_rng(1)
    early, late = spec.start, spec.start + timedelta(days=1400)

    def mean_por(subject, media_type, when, n=400):
        post = sample._Post(
            "p", when, media_type, [sample._Media("m", "p", 0, media_type, subject, "x")]
        )
        return float(np.mean([np.log(sample._por(rng, spec, post)) for _ in range(n)]))

    assert mean_por("cat", "image", early) > mean_por("text", "image", early) + 0.7
    assert mean_por("cat", "image", early) > mean_por("cat", "image", late) + 0.5
    gap = mean_por("rocket", "image", early) - mean_por("rocket", "video", early)
    assert gap == pytest.approx(-np.log(sample.VIDEO_FACTOR), abs=0.08)


def test_unknown_size_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown sample size"):
        spec_for("huge", 0)
