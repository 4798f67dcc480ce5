-- What the ranking metrics compare predictions with, per labelled item: its rank_score
-- (labels_<scheme>.sql), and the "recent PoR" baseline's guess of it: the rank_score of
-- the profile's previous item of the same media type (by publication time; ties by
-- media_id), as baseline_recent.sql does with classes; NULL for the first item.
-- Inputs: view labels. Parameters: $scheme.
SELECT media_id, k, rank_score,
       lag(rank_score) OVER (PARTITION BY profile_id, media_type, k ORDER BY published_at, media_id)
           AS recent_score
FROM labels
WHERE scheme = $scheme AND class IS NOT NULL
