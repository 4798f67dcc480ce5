-- Followers of the profile at the time each post was published, f(t_p).
-- Inside the known range: linear interpolation in time between the two nearest known
-- points. Outside it: a log-linear trend anchored at the nearest known point, with the
-- Theil-Sen slope (median of pairwise slopes of ln(followers) over time) of the known
-- points within $extrapolation_window_us of that end; robust to a few bad points.
-- Inputs: views posts, followers. Parameters: $extrapolation_window_us (BIGINT).
WITH known AS (
    SELECT profile_id, epoch_us("at") AS t, followers::DOUBLE AS f
    FROM followers
),
bounds AS (
    SELECT profile_id,
           min(t) AS t_first, arg_min(f, t) AS f_first,
           max(t) AS t_last, arg_max(f, t) AS f_last
    FROM known
    GROUP BY profile_id
),
ends AS (
    SELECT k.profile_id, 'head' AS side, k.t, k.f
    FROM known k JOIN bounds b USING (profile_id)
    WHERE k.t <= b.t_first + $extrapolation_window_us
    UNION ALL
    SELECT k.profile_id, 'tail' AS side, k.t, k.f
    FROM known k JOIN bounds b USING (profile_id)
    WHERE k.t >= b.t_last - $extrapolation_window_us
),
trend AS (
    SELECT a.profile_id, a.side,
           median((ln(b.f) - ln(a.f)) / (b.t - a.t)::DOUBLE) AS slope
    FROM ends a
    JOIN ends b ON a.profile_id = b.profile_id AND a.side = b.side AND a.t < b.t
    GROUP BY a.profile_id, a.side
),
p AS (
    SELECT post_id, profile_id, epoch_us(published_at) AS t FROM posts
),
below AS (
    SELECT p.post_id, p.profile_id, p.t, lo.t AS t0, lo.f AS f0
    FROM p ASOF LEFT JOIN known lo ON p.profile_id = lo.profile_id AND p.t >= lo.t
),
around AS (
    SELECT below.*, hi.t AS t1, hi.f AS f1
    FROM below ASOF LEFT JOIN known hi ON below.profile_id = hi.profile_id AND below.t <= hi.t
)
SELECT
    a.post_id,
    -- at least 1 follower and at most 1e10 (more than there are people): a trend
    -- extrapolated far from a steep stretch would otherwise reach 0 or overflow, and
    -- PoR would be NaN or 0 for every post there
    greatest(1.0, least(1e10, CASE
        WHEN a.t0 IS NOT NULL AND a.t1 IS NOT NULL AND a.t1 = a.t0 THEN a.f0
        WHEN a.t0 IS NOT NULL AND a.t1 IS NOT NULL
            THEN a.f0 + (a.f1 - a.f0) * ((a.t - a.t0)::DOUBLE / (a.t1 - a.t0)::DOUBLE)
        WHEN a.t0 IS NULL
            THEN b.f_first * exp(coalesce(head.slope, 0.0) * (a.t - b.t_first)::DOUBLE)
        ELSE b.f_last * exp(coalesce(tail.slope, 0.0) * (a.t - b.t_last)::DOUBLE)
    END)) AS followers_est,
    (a.t0 IS NULL OR a.t1 IS NULL) AS followers_extrapolated
FROM around a
JOIN bounds b USING (profile_id)
LEFT JOIN trend head ON head.profile_id = a.profile_id AND head.side = 'head'
LEFT JOIN trend tail ON tail.profile_id = a.profile_id AND tail.side = 'tail'
