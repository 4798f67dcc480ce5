-- The walk-forward timelines (popray/training/timelines.py), over the ingested tables.

-- name: window_end
-- each profile's last window end: the midnight (UTC) after its last post
SELECT profile_id, (epoch_us(max(published_at)) // $day + 1) * $day AS end_us
FROM posts GROUP BY profile_id;

-- name: posts_as_of
-- the posts published before each profile's time in `as_of`
SELECT p.* FROM posts p JOIN as_of a USING (profile_id) WHERE p.published_at < a.t;

-- name: followers_as_of
-- the follower counts dated before each profile's time in `as_of`
SELECT f.* FROM followers f JOIN as_of a USING (profile_id) WHERE f."at" < a.t;

-- name: published
-- each media item's post's publication time (µs since the epoch)
SELECT m.media_id, epoch_us(p.published_at) AS published_us
FROM media m JOIN posts p USING (post_id);
