-- The paper's schemes (Sections 2-3) for one k: score = Popularity Rate
-- PoR = (likes + comments) / followers_est. Classes per profile and media type: the
-- thresholds are the quantiles j/k (j = 1..k-1, linear interpolation, as numpy's
-- default) and an item's class is the number of thresholds strictly below its score
-- (0 = least popular; a threshold that ties with the score is not below it, see
-- ties_macro.sql).
-- por_global: thresholds over the whole history; por_rolling: over the items published
-- within +-half the window of the item (inclusive, the item itself included).
-- reference_n: how many items the thresholds were computed from. rank_score, the
-- continuous score ranking metrics compare predictions with: the PoR (por_global), or the
-- PoR over the median PoR of its window (por_rolling: the quantity its classes cut;
-- NULL when that median is 0).
-- Inputs: view items (label_items.sql). Parameters: $k, $quantiles (DOUBLE[]),
-- $half_window_us (BIGINT), $window_days.
WITH global_thresholds AS (
    SELECT profile_id, media_type, quantile_cont(por, $quantiles) AS thresholds,
           count(*) AS n
    FROM items
    GROUP BY profile_id, media_type
),
rolling AS (
    SELECT *,
           quantile_cont(por, $quantiles) OVER w AS thresholds,
           count(*) OVER w AS n,
           quantile_cont(por, 0.5) OVER w AS window_median
    FROM items
    WINDOW w AS (
        PARTITION BY profile_id, media_type ORDER BY t
        RANGE BETWEEN $half_window_us PRECEDING AND $half_window_us FOLLOWING
    )
)
SELECT i.*, 'por_global' AS scheme, $k::INTEGER AS k, i.por AS score,
       class_of(g.thresholds, i.por) AS class,
       NULL::DOUBLE AS window_days, g.n AS reference_n, i.por AS rank_score
FROM items i
JOIN global_thresholds g USING (profile_id, media_type)
UNION ALL
SELECT r.* EXCLUDE (thresholds, n, window_median), 'por_rolling' AS scheme, $k::INTEGER AS k,
       r.por AS score,
       class_of(r.thresholds, r.por) AS class,
       $window_days::DOUBLE AS window_days, r.n AS reference_n,
       r.por / nullif(r.window_median, 0) AS rank_score
FROM rolling r
