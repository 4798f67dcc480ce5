-- The `residual` scheme (Merrick et al., shared/papers/merrick-selfie-labels.txt) for one k.
-- Per profile, over its posts (one row each), ordinary least squares of
--     y = log10(1 + likes)  on  x1 = log10(1 + followers_est)  and  x2 = n_hashtags,
-- solved from the (population) covariances; the residual y - y_hat is the score, and a
-- media item inherits its post's. Degenerate fits: when x1 and x2 are collinear or x2 is
-- constant, x2 gets no weight (b2 = 0); when x1 is constant, b1 = 0; when both are, the
-- fit is the mean. The residual is rounded to 9 decimals, so that posts the fit explains
-- equally well tie instead of being ordered by rounding noise. Classes per profile and
-- media type, as por_global does with the score (quantiles j/k), or, with
-- $keep_extremes = e, for k = 2 only: class 1 at or above the (1 - e) quantile, 0 at or
-- below the e quantile, NULL (not used) in between.
-- Inputs: view items (label_items.sql). Parameters: $k, $quantiles (DOUBLE[]),
-- $keep_extremes (DOUBLE or NULL).
WITH posts_ AS (
    SELECT DISTINCT profile_id, post_id, log10(1 + likes) AS y,
           log10(1 + followers_est) AS x1, n_hashtags::DOUBLE AS x2
    FROM items
),
moments AS (
    SELECT profile_id, avg(y) AS my, avg(x1) AS m1, avg(x2) AS m2,
           var_pop(x1) AS s11, var_pop(x2) AS s22, covar_pop(x1, x2) AS s12,
           covar_pop(x1, y) AS s1y, covar_pop(x2, y) AS s2y
    FROM posts_
    GROUP BY profile_id
),
fit AS (
    SELECT *, s11 * s22 - s12 * s12 AS det,
           s11 * s22 - s12 * s12 > 1e-12 * s11 * s22 AND s11 > 0 AND s22 > 0 AS full_rank
    FROM moments
),
coef AS (
    SELECT profile_id, my, m1, m2,
           CASE WHEN full_rank THEN (s22 * s1y - s12 * s2y) / det
                WHEN s11 > 0 THEN s1y / s11 ELSE 0 END AS b1,
           CASE WHEN full_rank THEN (s11 * s2y - s12 * s1y) / det
                WHEN s11 = 0 AND s22 > 0 THEN s2y / s22 ELSE 0 END AS b2
    FROM fit
),
scored AS (
    SELECT i.*, round(p.y - (c.my + c.b1 * (p.x1 - c.m1) + c.b2 * (p.x2 - c.m2)), 9) AS score
    FROM items i
    JOIN posts_ p USING (profile_id, post_id)
    JOIN coef c USING (profile_id)
),
thresholds AS (
    SELECT profile_id, media_type, count(*) AS n,
           quantile_cont(score, $quantiles) AS thresholds,
           quantile_cont(score, coalesce($keep_extremes, 0.0)) AS low,
           quantile_cont(score, 1 - coalesce($keep_extremes, 0.0)) AS high
    FROM scored
    GROUP BY profile_id, media_type
)
SELECT s.* EXCLUDE (score), 'residual' AS scheme, $k::INTEGER AS k, s.score,
       CASE WHEN $keep_extremes IS NULL
                THEN class_of(t.thresholds, s.score)
            WHEN at_least(s.score, t.high) THEN 1
            WHEN at_most(s.score, t.low) THEN 0
       END::INTEGER AS class,
       NULL::DOUBLE AS window_days, t.n AS reference_n, s.score AS rank_score
FROM scored s
JOIN thresholds t USING (profile_id, media_type)
WHERE $keep_extremes IS NULL OR $k = 2
