-- Popularity Rate and popularity classes for one k (paper, Sections 2-3).
-- A media item inherits its post's PoR = (likes + comments) / followers_est. Classes are
-- computed per profile and media type over the media items of that type: thresholds are
-- the quantiles j/k (j = 1..k-1, linear interpolation, as numpy's default) and a media's
-- class is the number of thresholds strictly below its PoR (0 = least popular).
-- class_global: over the whole history; class_rolling: over the items published within
-- +-half the window of the item (inclusive, the item itself included).
-- Inputs: views posts, media, excluded, post_followers.
-- Parameters: $k (INTEGER), $quantiles (DOUBLE[]), $half_window_us (BIGINT), $window_days.
WITH items AS (
    SELECT m.profile_id, m.post_id, m.media_id, m.media_type, p.post_type, p.published_at,
           epoch_us(p.published_at) AS t,
           pf.followers_est, pf.followers_extrapolated,
           (p.likes + p.comments) / pf.followers_est AS por
    FROM media m
    JOIN posts p USING (post_id)
    JOIN post_followers pf USING (post_id)
    WHERE m.media_id NOT IN (SELECT media_id FROM excluded)
),
global_thresholds AS (
    SELECT profile_id, media_type, quantile_cont(por, $quantiles) AS thresholds
    FROM items
    GROUP BY profile_id, media_type
),
rolling AS (
    SELECT *,
           quantile_cont(por, $quantiles) OVER w AS rolling_thresholds,
           count(*) OVER w AS window_n
    FROM items
    WINDOW w AS (
        PARTITION BY profile_id, media_type ORDER BY t
        RANGE BETWEEN $half_window_us PRECEDING AND $half_window_us FOLLOWING
    )
)
SELECT r.profile_id, r.post_id, r.media_id, r.media_type, r.post_type, r.published_at,
       r.followers_est, r.followers_extrapolated, r.por,
       $k::INTEGER AS k,
       $window_days::DOUBLE AS window_days,
       r.window_n,
       len(list_filter(g.thresholds, lambda x: x < r.por))::INTEGER AS class_global,
       len(list_filter(r.rolling_thresholds, lambda x: x < r.por))::INTEGER AS class_rolling
FROM rolling r
JOIN global_thresholds g USING (profile_id, media_type)
ORDER BY r.profile_id, r.media_type, r.published_at, r.media_id
