-- What the capacity plan (popray/tools/plan.py, plan_check.py) reads off a finished run.

-- name: run_size
-- how much each stage of the run processed, to divide its time by
SELECT
    (SELECT count(*) FROM posts) AS posts,
    (SELECT count(*) FROM media) AS media_files,
    (SELECT count(*) FROM followers) AS follower_rows,
    (SELECT count(*) FROM quarantine WHERE stage = 'ingest') AS quarantined_rows,
    (SELECT count(DISTINCT media_id) FROM embeddings_image) AS images,
    (SELECT max(view) FROM embeddings_image) AS views,
    (SELECT count(*) FROM embeddings_video) AS videos,
    -- the pairs dedup compares: within a profile and media type, at the smallest k
    (SELECT sum(n * n) / 2 FROM (
        SELECT count(*) AS n FROM labels
        WHERE scheme = 'por_rolling' AND k = (SELECT min(k) FROM labels)
        GROUP BY profile_id, media_type)) AS pairs,
    (SELECT count(DISTINCT media_id) FROM predictions
     WHERE model IN ('image', 'video')) AS trained,
    -- the share of the train stage spent in walk-forward trials
    (SELECT coalesce(sum(train_s) FILTER (WHERE protocol = 'walk_forward')
        / nullif(sum(train_s), 0), 0) FROM trials) AS forward_share,
    (SELECT count(DISTINCT profile_id) FROM posts) AS profiles;

-- name: run_mix
-- the run's profiles, posts, images and videos
SELECT
    (SELECT count(DISTINCT profile_id) FROM posts) AS profiles,
    (SELECT count(*) FROM posts) AS posts,
    (SELECT count(*) FILTER (WHERE media_type = 'image') FROM media) AS images,
    (SELECT count(*) FILTER (WHERE media_type = 'video') FROM media) AS videos;
