"""The sample export's files: the media (images, videos, exact and near-duplicate reposts,
the corrupt ones) and the four input CSVs with their planted bad rows
(popray.tools.sample plans them; the same random generator draws in the same order).
"""

from __future__ import annotations

import csv
import os
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageOps

from popray.tools.sample import FPS_CHOICES, IMAGE_SIZES, VIDEO_SIZES, SampleSpec, _Media, _Post
from popray.tools.sample_media import (
    SUBJECT_FILES,
    compose,
    first_frame,
    reencode_video,
    save_image,
    subject_photo,
    write_video,
)


def _write_image(rng, root: Path, m: _Media, truth: dict) -> None:
    size = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    if m.subject in SUBJECT_FILES:
        img = compose(rng, m.subject, size)
    else:  # logo / product sheet: shown as is, as brands post them
        img = subject_photo(m.subject).resize(size)
    fmt = str(rng.choice(["JPEG"] * 7 + ["PNG"] * 2 + ["WEBP"]))
    rotate = fmt == "JPEG" and rng.random() < 0.12
    m.path += {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[fmt]
    save_image(img, root / m.path, fmt, exif_rotate=rotate)
    if rotate:
        truth["exif_rotated"].append(m.media_id)


def _write_video(rng, spec: SampleSpec, root: Path, m: _Media) -> None:
    duration = (
        rng.uniform(2.5, 14.5)
        if rng.random() < 0.3
        else rng.uniform(15.0, max(15.5, spec.max_video_s))
    )
    fps = FPS_CHOICES[int(rng.integers(len(FPS_CHOICES)))]
    size = VIDEO_SIZES[int(rng.integers(len(VIDEO_SIZES)))]
    write_video(root / m.path, rng, m.subject, duration, fps, size)
    if rng.random() < 0.5:  # an automatic cover: the first frame as the video shows it
        m.thumbnail_path = f"media/thumbs/{m.media_id}.jpg"
        save_image(Image.fromarray(first_frame(root / m.path)), root / m.thumbnail_path, "JPEG")


def _write_duplicate(rng, root: Path, m: _Media, orig: _Media, truth: dict) -> None:
    src = root / orig.path
    if m.media_type == "video":
        m.path = f"media/{m.media_id}.mp4"
        reencode_video(src, root / m.path, crf=int(rng.integers(24, 28)))
        kind = "reencoded"
    else:
        img = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
        kind = str(rng.choice(["exact", "reencoded", "resized", "cropped"]))
        if kind == "exact":
            m.path = f"media/{m.media_id}{Path(orig.path).suffix}"
            (root / m.path).write_bytes(src.read_bytes())
        else:
            if kind == "resized":
                img = img.resize((int(img.width * 0.85), int(img.height * 0.85)))
            elif kind == "cropped":
                dx, dy = int(img.width * 0.01), int(img.height * 0.01)
                img = img.crop((dx, dy, img.width - dx, img.height - dy))
            m.path = f"media/{m.media_id}.jpg"
            img.save(root / m.path, "JPEG", quality=int(rng.integers(86, 93)))
    truth["duplicates"].append(
        {"media_id": m.media_id, "duplicate_of": orig.media_id, "kind": kind}
    )


def _corrupt_media(rng, spec: SampleSpec, root: Path, posts: list[_Post], truth: dict) -> None:
    """Four posts whose media file is broken in a different way each."""
    kinds = ["truncated_jpeg", "zero_byte_mp4", "garbage_mp4", "overclaiming_mp4"]
    for j, kind in enumerate(kinds):
        anchor = posts[int(rng.integers(len(posts) // 4, len(posts)))]
        is_video = kind.endswith("mp4")
        post = _Post(
            f"pc{j}", anchor.published_at + timedelta(hours=2), "video" if is_video else "image"
        )
        m = _Media(
            f"mc{j}",
            post.post_id,
            0,
            post.post_type,
            str(rng.choice(list(SUBJECT_FILES))),
            f"media/mc{j}" + (".mp4" if is_video else ".jpg"),
        )
        post.media.append(m)
        path = root / m.path
        if kind == "truncated_jpeg":
            save_image(compose(rng, m.subject, (480, 480)), path, "JPEG")
            data = path.read_bytes()
            path.write_bytes(data[: len(data) * 55 // 100])
        elif kind == "zero_byte_mp4":
            path.write_bytes(b"")
        elif kind == "garbage_mp4":
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + rng.bytes(20_000))
        else:  # header (moov first) promises every frame; half of the data is gone
            write_video(path, rng, m.subject, 8.0, Fraction(25), (240, 240), faststart=True)
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        truth["corrupt_media"][m.media_id] = kind
        posts.append(post)


def _write_csv(
    path: Path,
    header: list[str],
    rows: list[list],
    bad: list[tuple[list, str]],
    rng,
    truth: dict,
    append: bool = False,
) -> None:
    """Write rows, with each bad row inserted at a random place (its row number recorded);
    `append`: after the rows already in the file (another profile's)."""
    tagged: list[tuple[list, str | None]] = [(row, None) for row in rows]
    for bad_row, what in bad:
        tagged.insert(int(rng.integers(0, len(tagged) + 1)), (bad_row, what))
    before = 0
    if append:
        with path.open(newline="", encoding="utf-8") as fh:
            before = sum(1 for _ in csv.reader(fh)) - 1
    for n, (_, what) in enumerate(tagged, start=before + 1):
        if what is not None:
            truth["bad_rows"].append({"file": path.name, "row": n, "what": what})
    with path.open("a" if append else "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if not append:
            writer.writerow(header)
        writer.writerows(row for row, _ in tagged)


def write_media(rng, spec: SampleSpec, out_dir: Path, posts: list, truth: dict) -> None:
    """Every media file of `posts` (duplicates copied and altered), then the corrupt ones."""
    by_id = {m.media_id: m for p in posts for m in p.media}
    for post in posts:
        for m in post.media:
            if post.duplicate_of:
                _write_duplicate(rng, out_dir, m, by_id[post.duplicate_of], truth)
            elif m.media_type == "video":
                _write_video(rng, spec, out_dir, m)
            else:
                _write_image(rng, out_dir, m, truth)
    _corrupt_media(rng, spec, out_dir, posts, truth)


def write_inputs(
    rng, spec: SampleSpec, out_dir: Path, posts: list, rows: dict, truth: dict, append: bool
) -> None:
    """The four input files, each with its planted bad rows (see `_write_csv`)."""
    when = posts[len(posts) // 2].published_at.isoformat()
    pid, x = spec.profile_id, spec.id_prefix
    bad = {
        "posts": [
            ([pid, f"{x}pbad0", when, -5, 1, "image", ""], "negative likes"),
            ([pid, f"{x}pbad1", "2021-02-30T10:00:00", 10, 1, "image", ""], "impossible date"),
            ([pid, f"{x}pbad2", when, 10, 1, "reel", ""], "unknown post_type"),
        ],
        "media": [
            (
                [f"{x}mbad0", f"{x}pbad0", 0, "image", f"media/{x}m00001.jpg", ""],
                "post is quarantined",
            ),
            ([f"{x}mbad1", posts[1].post_id, 7, "image", "/etc/passwd", ""], "absolute path"),
            ([f"{x}mbad2", posts[2].post_id, 7, "image", "../outside.jpg", ""], "escaping path"),
            ([f"{x}mbad3", posts[3].post_id, 8, "image", "media/missing.jpg", ""], "missing file"),
            ([f"{x}mbad4", posts[4].post_id, 9, "image", "media/link.jpg", ""], "symlink out"),
        ],
        "followers": [([pid, "2020-06-01", "n/a"], "followers not a number")],
        "exclude": [([f"{x}m99999", "no such media"], "unknown media_id")],
    }
    header = {
        "posts": [
            "profile_id",
            "post_id",
            "published_at",
            "likes",
            "comments",
            "post_type",
            "caption",
        ],
        "media": ["media_id", "post_id", "position", "media_type", "path", "thumbnail_path"],
        "followers": ["profile_id", "at", "followers"],
        "exclude": ["media_id", "reason"],
    }
    for name in ("posts", "media", "followers", "exclude"):  # the order of the rng's draws
        _write_csv(out_dir / f"{name}.csv", header[name], rows[name], bad[name], rng, truth, append)


def write_outside_link(out_dir: Path) -> None:
    """A media path that is a symbolic link leading out of the export (must be rejected)."""
    link = out_dir / "media" / "link.jpg"
    if not link.is_symlink():
        os.symlink("/etc/hostname", link)
