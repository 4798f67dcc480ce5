"""Generator of realistic sample profiles (no public dataset has media + likes + follower
history of one profile, so popray ships its own).

    popray sample --out data/demo --size demo --seed 7

The planted signal (documented in tools/README.md, recorded in `sample_truth.json`):
    ln PoR = ln 0.08 - 0.35 ln(f(t) / f(t_0))      # PoR falls as followers grow
             + mean subject effect of the post's media (SUBJECT_EFFECTS)
             + ln 0.69 if the post contains a video    # image-only posts ~45% better
             + N(0, NOISE_SD)
and likes + comments = PoR * f(t) (comments ~3%). The rest is what a real export has:
follower history with gaps and no data for the first months, carousels with a logo or a
product sheet listed in `exclude.csv`, exact and near-duplicate reposts, EXIF-rotated
JPEGs, PNG and WebP, H.264 videos shorter and longer than 15 s at several frame rates,
and a few corrupt media files and bad metadata rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np

from popray.errors import ConfigError
from popray.tools.sample_media import (
    SUBJECT_FILES,
)

SUBJECT_EFFECTS = {
    "cat": 0.45,
    "coffee": 0.30,
    "astronaut": 0.15,
    "rocket": 0.0,
    "motorcycle": -0.10,
    "horse": -0.20,
    "coins": -0.30,
    "text": -0.45,
}
assert set(SUBJECT_EFFECTS) == set(SUBJECT_FILES)
VIDEO_FACTOR = 0.69
NOISE_SD = 0.30
BASE_POR = 0.08
POR_FOLLOWER_ELASTICITY = -0.35
# name -> (posts, years); `paper` gives about 1,600 images and 575 videos, like the paper's data
SIZES = {"tiny": (36, 1.0), "demo": (240, 2.5), "paper": (1800, 5.0)}
IMAGE_SIZES = [(540, 540), (480, 600), (600, 314), (720, 720), (405, 720), (640, 480)]
VIDEO_SIZES = [(320, 180), (180, 320), (240, 240), (256, 320)]
FPS_CHOICES = [Fraction(24), Fraction(25), Fraction(30), Fraction(30000, 1001), Fraction(15)]
WORDS = ("new drop summer trail ride coffee morning team gear launch weekend city sea").split()


@dataclass(frozen=True)
class SampleSpec:
    posts: int = 240
    years: float = 2.5
    seed: int = 0
    profile_id: str = "sample_brand"
    start: datetime = datetime(2019, 1, 1, tzinfo=UTC)
    video_share: float = 0.25
    carousel_share: float = 0.08
    duplicate_share: float = 0.05
    max_video_s: float = 30.0
    id_prefix: str = ""  # prefixes post and media ids (several profiles in one export)
    signal: float = 1.0  # scales the planted visual effects (0 = no visual signal)


@dataclass
class _Media:
    media_id: str
    post_id: str
    position: int
    media_type: str
    subject: str
    path: str
    thumbnail_path: str | None = None
    excluded: str | None = None


@dataclass
class _Post:
    post_id: str
    published_at: datetime
    post_type: str
    media: list[_Media] = field(default_factory=list)
    duplicate_of: str | None = None


def spec_for(size: str, seed: int, posts: int | None = None) -> SampleSpec:
    """The spec of a named size (`tiny`, `demo`, `paper`), optionally with N posts."""
    if size not in SIZES:
        raise ConfigError(f"unknown sample size {size!r}; choose from {sorted(SIZES)}")
    n, years = SIZES[size]
    kwargs = {"posts": posts or n, "years": years, "seed": seed}
    if size == "tiny":
        kwargs["max_video_s"] = 18.0
    if size == "paper":
        kwargs["video_share"] = 0.29  # the paper's profile posted more video than most
    return SampleSpec(**kwargs)


def followers_true(spec: SampleSpec, t: datetime) -> float:
    """The profile's real follower curve (logistic growth from ~3k to ~120k)."""
    u = (t - spec.start).total_seconds() / (spec.years * 365.25 * 86400)
    return 3_000 + 117_000 / (1 + math.exp(-(u - 0.55) * 7))


def _timeline(rng: np.random.Generator, spec: SampleSpec) -> list[_Post]:
    span_s = spec.years * 365.25 * 86400
    offsets = np.sort(rng.uniform(0, span_s, spec.posts))
    posts = []
    for i, off in enumerate(offsets):
        when = spec.start + timedelta(seconds=float(off))
        when = when.replace(hour=int(rng.choice([8, 12, 13, 18, 19, 20, 21])), microsecond=0)
        r = rng.random()
        kind = (
            "video"
            if r < spec.video_share
            else ("carousel" if r < spec.video_share + spec.carousel_share else "image")
        )
        posts.append(_Post(post_id=f"{spec.id_prefix}p{i:05d}", published_at=when, post_type=kind))
    return posts


def _plan_media(rng: np.random.Generator, spec: SampleSpec, posts: list[_Post]) -> None:
    """Give each post its media; some later single posts repost an earlier one."""
    subjects = list(SUBJECT_EFFECTS)
    counter = 0

    def new(post: _Post, pos: int, mtype: str, subject: str) -> _Media:
        nonlocal counter
        counter += 1
        mid = f"{spec.id_prefix}m{counter:05d}"
        ext = ".mp4" if mtype == "video" else ""
        return _Media(mid, post.post_id, pos, mtype, subject, f"media/{mid}{ext}")

    for i, post in enumerate(posts):
        earlier = [
            p
            for p in posts[:i]
            if p.post_type == post.post_type != "carousel" and p.duplicate_of is None
        ]
        if earlier and i > len(posts) * 0.2 and rng.random() < spec.duplicate_share:
            orig = earlier[int(rng.integers(len(earlier)))]
            post.duplicate_of = orig.media[0].media_id
            post.media.append(new(post, 0, post.post_type, orig.media[0].subject))
            continue
        if post.post_type == "carousel":
            n = int(rng.integers(2, 5))
            for pos in range(n):
                mtype = "video" if rng.random() < 0.15 else "image"
                post.media.append(new(post, pos, mtype, str(rng.choice(subjects))))
            if rng.random() < 0.4:
                extra = "logo" if rng.random() < 0.5 else "product_sheet"
                m = new(post, n, "image", extra)
                m.excluded = f"{extra.replace('_', ' ')} inside a carousel"
                post.media.append(m)
        else:
            post.media.append(new(post, 0, post.post_type, str(rng.choice(subjects))))


def _por(rng, spec: SampleSpec, post: _Post) -> float:
    kept = [m for m in post.media if m.excluded is None]
    effect = spec.signal * float(np.mean([SUBJECT_EFFECTS.get(m.subject, 0.0) for m in kept]))
    growth = followers_true(spec, post.published_at) / followers_true(spec, spec.start)
    log_por = math.log(BASE_POR) + POR_FOLLOWER_ELASTICITY * math.log(growth) + effect
    if any(m.media_type == "video" for m in post.media):
        log_por += math.log(VIDEO_FACTOR)
    return math.exp(log_por + rng.normal(0.0, NOISE_SD))


def _follower_history(rng, spec: SampleSpec, last_post: datetime) -> list[tuple[str, int]]:
    """Known follower points: none for the first ~15% of the span, every 2-9 days after,
    with two gaps of 1-2 months, ending a few days before the last post."""
    span = timedelta(days=spec.years * 365.25)
    t = spec.start + span * 0.15
    end = last_post - timedelta(days=5)
    gaps = [spec.start + span * float(u) for u in rng.uniform(0.3, 0.9, 2)]
    gap_len = [timedelta(days=float(d)) for d in rng.uniform(30, 60, 2)]
    points = []
    while t <= end:
        if not any(g <= t < g + d for g, d in zip(gaps, gap_len, strict=True)):
            f = followers_true(spec, t) * (1 + rng.normal(0, 0.003))
            points.append((t.date().isoformat(), round(f)))
        t += timedelta(days=int(rng.integers(2, 10)))
    return points


def _caption(rng) -> str:
    words = rng.choice(WORDS, size=int(rng.integers(3, 9))).tolist()
    tags = [f"#{w}" for w in rng.choice(WORDS, size=int(rng.integers(0, 5)), replace=False)]
    return " ".join(words + tags)


def generate(out_dir: Path, spec: SampleSpec, append: bool = False) -> dict:
    """Write a sample profile export to `out_dir`; returns (and writes) its ground truth.
    `append`: add this profile to the export already there (see `generate_many`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    truth: dict = {
        "spec": {k: str(v) for k, v in asdict(spec).items()},
        "subject_effects": SUBJECT_EFFECTS,
        "video_factor": VIDEO_FACTOR,
        "noise_sd": NOISE_SD,
        "media_subject": {},
        "duplicates": [],
        "corrupt_media": {},
        "bad_rows": [],
        "exif_rotated": [],
        "excluded": [],
    }
    posts = _timeline(rng, spec)
    _plan_media(rng, spec, posts)
    from popray.tools.sample_files import write_inputs, write_media, write_outside_link

    write_media(rng, spec, out_dir, posts, truth)
    posts.sort(key=lambda p: (p.published_at, p.post_id))
    rows = _rows(rng, spec, posts, truth)  # in this order: the same rng draws as before
    last = posts[-1].published_at
    rows["followers"] = [[spec.profile_id, at, f] for at, f in _follower_history(rng, spec, last)]
    write_outside_link(out_dir)
    write_inputs(rng, spec, out_dir, posts, rows, truth, append)
    (out_dir / "sample_truth.json").write_text(json.dumps(truth, indent=1, default=str))
    return truth


def _rows(rng, spec: SampleSpec, posts: list, truth: dict) -> dict[str, list[list]]:
    """The rows of posts.csv (engagement from the planted PoR), media.csv and exclude.csv."""
    rows: dict[str, list[list]] = {"posts": [], "media": [], "exclude": []}
    for post in posts:
        por = _por(rng, spec, post)
        engagement = max(1, round(por * followers_true(spec, post.published_at)))
        comments = int(rng.binomial(engagement, 0.03))
        rows["posts"].append(
            [
                spec.profile_id,
                post.post_id,
                post.published_at.isoformat(),
                engagement - comments,
                comments,
                post.post_type,
                _caption(rng),
            ]
        )
        for m in post.media:
            rows["media"].append(
                [m.media_id, m.post_id, m.position, m.media_type, m.path, m.thumbnail_path or ""]
            )
            truth["media_subject"][m.media_id] = m.subject
            if m.excluded:
                rows["exclude"].append([m.media_id, m.excluded])
                truth["excluded"].append(m.media_id)
    return rows


def generate_many(out_dir: Path, specs: list[SampleSpec]) -> dict:
    """One export holding several profiles (distinct `profile_id` and `id_prefix`);
    `sample_truth.json` then maps each profile to its ground truth."""
    if len({s.profile_id for s in specs}) < len(specs) or len({s.id_prefix for s in specs}) < len(
        specs
    ):
        raise ConfigError("every profile of a multi-profile sample needs its own id and prefix")
    truths = {s.profile_id: generate(out_dir, s, append=i > 0) for i, s in enumerate(specs)}
    combined = {"profiles": truths}
    (Path(out_dir) / "sample_truth.json").write_text(json.dumps(combined, indent=1, default=str))
    return combined


def profile_specs(n: int, seed: int, posts: int = 60, years: float = 1.5) -> list[SampleSpec]:
    """`n` profiles of different sizes (0.5x to 1.5x `posts`) and signal strengths
    (0.5x to 1.5x the planted effects), named brand000, brand001, ..."""
    rng = np.random.default_rng(seed)
    return [
        SampleSpec(
            posts=max(12, round(posts * rng.uniform(0.5, 1.5))),
            years=years,
            seed=seed * 1000 + i,
            profile_id=f"brand{i:03d}",
            id_prefix=f"b{i:03d}_",
            signal=float(rng.uniform(0.5, 1.5)),
            max_video_s=18.0,
        )
        for i in range(n)
    ]
