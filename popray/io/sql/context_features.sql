-- Context features of every labelled media item (the paper's future work (i); the
-- metadata features of shared/papers/vit-multimodal-likes.txt): when and how its post was
-- published, and how the profile's earlier posts did. Fixed transforms only (no statistic
-- over other items), so that nothing about other posts leaks in except through `por_trend`,
-- which reads strictly earlier posts of the same profile: never the item's own post, never
-- a later one, nor one published at the same instant (EXCLUDE GROUP).
--   hour_sin, hour_cos, weekday_sin, weekday_cos   time of posting, cyclic (UTC)
--   post_image, post_video, post_carousel          the post type, one-hot
--   carousel_size      media in the post / 10
--   caption_length     ln(1 + characters) / 5
--   hashtags           ln(1 + hashtags) / 3
--   video_duration     ln(1 + seconds) / 3 (0 for images; from the video's embedding row)
--   por_trend          mean ln PoR of the profile's previous 5 posts minus that of the 15
--                      before them, clipped to [-3, 3] (0 while fewer posts are known)
-- Inputs: views labels, posts, media, embeddings_video. Parameters: $backbone.
WITH post_por AS (
    SELECT DISTINCT profile_id, post_id, published_at, por FROM labels
),
trend AS (
    SELECT post_id,
           avg(ln(1e-6 + por)) OVER (
               PARTITION BY profile_id ORDER BY published_at
               ROWS BETWEEN 5 PRECEDING AND 1 PRECEDING EXCLUDE GROUP) AS recent,
           avg(ln(1e-6 + por)) OVER (
               PARTITION BY profile_id ORDER BY published_at
               ROWS BETWEEN 20 PRECEDING AND 6 PRECEDING EXCLUDE GROUP) AS older
    FROM post_por
),
sizes AS (
    SELECT post_id, count(*) AS n_media FROM media GROUP BY post_id
),
items AS (
    SELECT DISTINCT l.media_id, l.post_id, l.media_type FROM labels l
)
SELECT i.media_id,
       [
           sin(2 * pi() * (hour(p.published_at) + minute(p.published_at) / 60) / 24),
           cos(2 * pi() * (hour(p.published_at) + minute(p.published_at) / 60) / 24),
           sin(2 * pi() * (isodow(p.published_at) - 1) / 7),
           cos(2 * pi() * (isodow(p.published_at) - 1) / 7),
           (p.post_type = 'image')::DOUBLE,
           (p.post_type = 'video')::DOUBLE,
           (p.post_type = 'carousel')::DOUBLE,
           s.n_media / 10,
           ln(1 + length(coalesce(p.caption, ''))) / 5,
           ln(1 + coalesce(p.n_hashtags, 0)) / 3,
           ln(1 + coalesce(v.duration_s, 0)) / 3,
           greatest(-3, least(3, coalesce(t.recent - t.older, 0)))
       ]::FLOAT[12] AS context
FROM items i
JOIN posts p USING (post_id)
JOIN sizes s USING (post_id)
JOIN trend t USING (post_id)
LEFT JOIN embeddings_video v ON v.media_id = i.media_id AND v.backbone = $backbone
ORDER BY i.media_id
