-- The sections of the run summary (`popray summary`, the report's "Run summary"),
-- in the order they are shown. popray/summary.py runs each whose table exists.

-- name: inputs
SELECT (SELECT count(*) FROM posts) AS posts,
       (SELECT count(*) FROM media WHERE media_type = 'image') AS images,
       (SELECT count(*) FROM media WHERE media_type = 'video') AS videos,
       (SELECT count(*) FROM followers) AS follower_points,
       (SELECT count(*) FROM excluded) AS excluded_media,
       (SELECT count(*) FROM quarantine) AS quarantined_rows;

-- name: quarantine
SELECT stage, source, "row", coalesce(media_id, '') AS media_id, field, reason
FROM quarantine ORDER BY stage DESC, source, "row";

-- name: class_balance
SELECT scheme, media_type, k, class, count(*) AS media,
       round(100.0 * count(*)
           / sum(count(*)) OVER (PARTITION BY scheme, media_type, k), 1) AS pct,
       round(median(por), 4) AS median_por
FROM labels GROUP BY scheme, media_type, k, class
ORDER BY scheme, media_type, k, class NULLS FIRST;

-- name: embeddings
SELECT (SELECT count(DISTINCT media_id) FROM embeddings_image) AS images_embedded,
       (SELECT count(*) FROM embeddings_image) AS image_views,
       (SELECT count(*) FROM embeddings_video) AS videos_embedded,
       (SELECT count(*) FROM quarantine WHERE stage = 'embed') AS quarantined_at_embed;

-- name: duplicates
SELECT media_type, count(DISTINCT group_id) AS groups,
       count(*) FILTER (WHERE NOT kept) AS removed,
       round(max(distance), 3) AS max_distance
FROM duplicates GROUP BY media_type ORDER BY media_type;

-- name: followers
SELECT count(DISTINCT post_id) FILTER (WHERE followers_extrapolated)
           AS posts_extrapolated,
       count(DISTINCT post_id) AS posts_labelled
FROM labels;
