-- The items every label scheme scores: media that are not excluded, with their post's
-- time, likes, comments, hashtags and the followers at post time (followers_at_post.sql).
-- A media item inherits its post's numbers. Inputs: views posts, media, excluded,
-- post_followers. No parameters.
SELECT m.profile_id, m.post_id, m.media_id, m.media_type, p.post_type, p.published_at,
       epoch_us(p.published_at) AS t,
       p.likes, p.comments, coalesce(p.n_hashtags, 0) AS n_hashtags,
       pf.followers_est, pf.followers_extrapolated,
       (p.likes + p.comments) / pf.followers_est AS por
FROM media m
JOIN posts p USING (post_id)
JOIN post_followers pf USING (post_id)
WHERE m.media_id NOT IN (SELECT media_id FROM excluded)
