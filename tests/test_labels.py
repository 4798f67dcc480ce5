"""The labelling SQL against an independent numpy reference on many random inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popray import store
from popray.config import LabelConfig
from popray.labels import label_tables
from popray.tables import SCHEMAS

T0 = datetime(2020, 1, 1, tzinfo=UTC)
US = 1_000_000


def ref_followers(t: int, known: list[tuple[int, float]], window_us: int) -> tuple[float, bool]:
    """f(t_p): linear inside the known range, Theil-Sen log-linear outside (microseconds)."""
    known = sorted(known)
    ts = np.array([k[0] for k in known], dtype=np.int64)
    fs = np.array([k[1] for k in known], dtype=float)
    if ts[0] <= t <= ts[-1]:
        i = int(np.searchsorted(ts, t, side="right")) - 1
        if ts[i] == t:
            return fs[i], False
        t0, t1, f0, f1 = ts[i], ts[i + 1], fs[i], fs[i + 1]
        return f0 + (f1 - f0) * ((t - t0) / (t1 - t0)), False
    if t < ts[0]:
        sel = ts <= ts[0] + window_us
        anchor_t, anchor_f = ts[0], fs[0]
    else:
        sel = ts >= ts[-1] - window_us
        anchor_t, anchor_f = ts[-1], fs[-1]
    st_, sf = ts[sel], np.log(fs[sel])
    slopes = [
        (sf[j] - sf[i]) / (st_[j] - st_[i])
        for i in range(len(st_))
        for j in range(len(st_))
        if st_[i] < st_[j]
    ]
    slope = float(np.median(slopes)) if slopes else 0.0
    return anchor_f * np.exp(slope * (t - anchor_t)), True


def ref_labels(posts, media, followers, excluded, cfg: LabelConfig) -> dict:
    """(media_id, k) -> (followers_est, extrapolated, por, class_global, class_rolling)."""
    window_us = round(cfg.extrapolation_window_days * 86400 * US)
    half = round(cfg.window_days * 86400 * US / 2)
    known: dict[str, list] = {}
    for f in followers:
        known.setdefault(f["profile_id"], []).append((_us(f["at"]), float(f["followers"])))
    post = {p["post_id"]: p for p in posts}
    items = []
    for m in media:
        if m["media_id"] in excluded:
            continue
        p = post[m["post_id"]]
        t = _us(p["published_at"])
        f, extra = ref_followers(t, known[p["profile_id"]], window_us)
        items.append(
            (
                p["profile_id"],
                m["media_type"],
                t,
                m["media_id"],
                f,
                extra,
                (p["likes"] + p["comments"]) / f,
            )
        )
    out = {}
    for k in cfg.k:
        qs = [j / k for j in range(1, k)]
        for it in items:
            group = [x for x in items if x[0] == it[0] and x[1] == it[1]]
            por_all = np.array([x[6] for x in group])
            por_win = np.array([x[6] for x in group if abs(x[2] - it[2]) <= half])
            g = int(np.sum(np.quantile(por_all, qs) < it[6]))
            r = int(np.sum(np.quantile(por_win, qs) < it[6]))
            out[(it[3], k)] = (it[4], it[5], it[6], g, r, len(por_win))
    return out


def _us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@st.composite
def exports(draw):
    n_profiles = draw(st.integers(1, 3))
    posts, media, followers = [], [], []
    for pi in range(n_profiles):
        pid = f"prof{pi}"
        days = draw(st.lists(st.integers(0, 400), min_size=1, max_size=7, unique=True))
        for d in days:
            followers.append(
                {
                    "profile_id": pid,
                    "at": T0 + timedelta(days=d),
                    "followers": draw(st.integers(50, 2_000_000)),
                    "source_row": 0,
                }
            )
        n_posts = draw(st.integers(1, 14))
        for j in range(n_posts):
            # Few distinct hours, so equal timestamps and window edges happen often.
            when = T0 + timedelta(
                days=draw(st.integers(-60, 460)), hours=draw(st.sampled_from([0, 12]))
            )
            post_id = f"{pid}-p{j}"
            n_media = draw(st.integers(1, 3))
            posts.append(
                {
                    "profile_id": pid,
                    "post_id": post_id,
                    "published_at": when,
                    "likes": draw(st.integers(0, 100_000)),
                    "comments": draw(st.sampled_from([0, 1, 7, 300])),
                    "post_type": "carousel" if n_media > 1 else "image",
                    "caption": None,
                    "n_hashtags": None,
                    "source_row": 0,
                }
            )
            for pos in range(n_media):
                media.append(
                    {
                        "media_id": f"{post_id}-m{pos}",
                        "post_id": post_id,
                        "profile_id": pid,
                        "position": pos,
                        "media_type": draw(st.sampled_from(["image", "video"])),
                        "path": "x",
                        "thumbnail_path": None,
                        "sha256": "0",
                        "size_bytes": 0,
                        "source_row": 0,
                    }
                )
    excluded = draw(st.sets(st.sampled_from([m["media_id"] for m in media]), max_size=2))
    cfg = LabelConfig(
        k=draw(st.lists(st.integers(2, 4), min_size=1, max_size=2)),
        window_days=draw(st.sampled_from([1.0, 7.0, 30.5, 56.0, 400.0])),
        extrapolation_window_days=draw(st.sampled_from([1.0, 90.0, 1000.0])),
    )
    return posts, media, followers, excluded, cfg


def _tables(posts, media, followers, excluded):
    return dict(
        posts=pa.Table.from_pylist(posts, schema=SCHEMAS["posts"]),
        media=pa.Table.from_pylist(media, schema=SCHEMAS["media"]),
        followers=pa.Table.from_pylist(followers, schema=SCHEMAS["followers"]),
        excluded=pa.Table.from_pylist(
            [{"media_id": m, "reason": "r", "source_row": 0} for m in sorted(excluded)],
            schema=SCHEMAS["excluded"],
        ),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exports())
def test_sql_matches_numpy_reference(export):
    posts, media, followers, excluded, cfg = export
    got = label_tables(**_tables(posts, media, followers, excluded), config=cfg).to_pylist()
    want = ref_labels(posts, media, followers, excluded, cfg)
    assert {(r["media_id"], r["k"]) for r in got} == set(want)
    for r in got:
        f, extra, por, g, roll, n = want[(r["media_id"], r["k"])]
        assert r["followers_est"] == pytest.approx(f, rel=1e-9)
        assert r["followers_extrapolated"] == extra
        assert r["por"] == pytest.approx(por, rel=1e-9)
        assert (r["class_global"], r["class_rolling"], r["window_n"]) == (g, roll, n), r


def test_extrapolation_recovers_exponential_growth_and_flags_it():
    # followers double every 100 days; known only from day 200 to day 400
    known = [
        {
            "profile_id": "p",
            "at": T0 + timedelta(days=d),
            "followers": round(1000 * 2 ** (d / 100)),
            "source_row": 0,
        }
        for d in range(200, 401, 10)
    ]
    posts = [
        {
            "profile_id": "p",
            "post_id": f"x{d}",
            "published_at": T0 + timedelta(days=d),
            "likes": 10,
            "comments": 0,
            "post_type": "image",
            "caption": None,
            "n_hashtags": None,
            "source_row": 0,
        }
        for d in (100, 205, 300, 500)
    ]
    media = [
        {
            "media_id": p["post_id"],
            "post_id": p["post_id"],
            "profile_id": "p",
            "position": 0,
            "media_type": "image",
            "path": "x",
            "thumbnail_path": None,
            "sha256": "0",
            "size_bytes": 0,
            "source_row": 0,
        }
        for p in posts
    ]
    got = {
        r["post_id"]: r
        for r in label_tables(
            **_tables(posts, media, known, set()), config=LabelConfig(k=[2])
        ).to_pylist()
    }
    assert got["x100"]["followers_est"] == pytest.approx(2000, rel=0.01)
    assert got["x500"]["followers_est"] == pytest.approx(32000, rel=0.01)
    assert got["x100"]["followers_extrapolated"] and got["x500"]["followers_extrapolated"]
    assert got["x300"]["followers_est"] == 8000 and not got["x300"]["followers_extrapolated"]
    # linear between day 200 (4000) and 210 (4287)
    assert got["x205"]["followers_est"] == pytest.approx((4000 + 4287) / 2)


def test_tiny_sample_labels(tiny_out, tiny_truth):
    labels = store.read_table(tiny_out, "labels").to_pylist()
    media = store.read_table(tiny_out, "media").to_pylist()
    excluded = set(tiny_truth["excluded"])
    labelled = {r["media_id"] for r in labels}
    assert labelled == {m["media_id"] for m in media} - excluded
    assert {r["k"] for r in labels} == {2, 3}
    assert all(0 <= r["class_rolling"] < r["k"] and 0 <= r["class_global"] < r["k"] for r in labels)
    assert any(r["followers_extrapolated"] for r in labels)  # no history for the first months
