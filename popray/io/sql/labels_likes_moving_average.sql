-- The `likes_moving_average` scheme (Carta et al., cited by the paper), k = 2 only:
-- per profile and media type, over the posts holding a media item of that type, ordered
-- by publication time (ties by post_id), score = likes - the mean likes of the previous
-- $previous posts (fewer at the start of the history); class 1 when the score is > 0.
-- The first post has no previous post: score and class NULL (not used for training).
-- Only earlier posts enter the mean: no later post can change a post's class.
-- Inputs: view items (label_items.sql). Parameters: $previous (INTEGER >= 1).
WITH posts_ AS (
    SELECT DISTINCT profile_id, media_type, post_id, published_at, likes FROM items
),
averaged AS (
    SELECT *,
           avg(likes) OVER w AS mean_previous,
           count(*) OVER w AS n
    FROM posts_
    WINDOW w AS (
        PARTITION BY profile_id, media_type ORDER BY published_at, post_id
        ROWS BETWEEN $previous PRECEDING AND 1 PRECEDING
    )
)
SELECT i.*, 'likes_moving_average' AS scheme, 2 AS k, i.likes - a.mean_previous AS score,
       (i.likes > a.mean_previous)::INTEGER AS class,
       NULL::DOUBLE AS window_days, a.n AS reference_n,
       i.likes - a.mean_previous AS rank_score
FROM items i
JOIN averaged a USING (profile_id, media_type, post_id)
