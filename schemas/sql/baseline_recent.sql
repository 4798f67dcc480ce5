-- The "recent PoR" baseline: each item is predicted to have the class of the profile's
-- previous item of the same media type (by publication time; ties by media_id). The
-- first item of a profile and type has none (NULL: scored as the majority class).
-- Inputs: view labels. Parameters: $labels ('rolling' | 'global').
SELECT media_id, k,
       lag(CASE WHEN $labels = 'global' THEN class_global ELSE class_rolling END)
           OVER (PARTITION BY profile_id, media_type, k ORDER BY published_at, media_id)
           AS recent_class
FROM labels
