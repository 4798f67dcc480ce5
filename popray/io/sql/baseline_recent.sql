-- The "recent PoR" baseline: each item is predicted to have the class of the profile's
-- previous item of the same media type (by publication time; ties by media_id) under the
-- same scheme and k. The first item of a profile and type has none (NULL: scored as the
-- majority class). Items without a class are not trained on and are skipped here too.
-- Inputs: view labels. Parameters: $scheme.
SELECT media_id, k,
       lag(class) OVER (PARTITION BY profile_id, media_type, k ORDER BY published_at, media_id)
           AS recent_class
FROM labels
WHERE scheme = $scheme AND class IS NOT NULL
