-- What the figures (popray/figures.py) draw. The models' figures show the paper's
-- setting: embeddings alone, one label scheme, backbone and protocol at a time.

-- name: labels_over_time
-- each item's PoR and its class under the global and the rolling scheme, by time
SELECT l.media_id, l.media_type, l.published_at, l.por, l.followers_est,
       l.followers_extrapolated, l.post_type,
       any_value(l.class) FILTER (WHERE l.scheme = 'por_global') AS class_global,
       any_value(l.class) FILTER (WHERE l.scheme = 'por_rolling') AS class_rolling
FROM labels l WHERE l.k = $k AND l.scheme IN ('por_global', 'por_rolling')
GROUP BY ALL ORDER BY l.published_at, l.media_id;

-- name: post_kinds
SELECT p.post_id, any_value(l.por) AS por, bool_or(l.media_type = 'video') AS has_video
FROM labels l JOIN posts p USING (post_id) WHERE l.k = $k GROUP BY p.post_id;

-- name: follower_points
SELECT "at", followers FROM followers ORDER BY "at";

-- name: nn_distances
SELECT media_type, distance FROM nn_distances WHERE distance IS NOT NULL;

-- name: closest_pairs
-- the $n closest image pairs, each pair once
SELECT d.media_id, d.nn_media_id, d.distance, a.path AS a, b.path AS b
FROM nn_distances d JOIN media a ON a.media_id = d.media_id
JOIN media b ON b.media_id = d.nn_media_id
WHERE d.media_type = 'image' AND d.media_id < d.nn_media_id
ORDER BY d.distance LIMIT $n;

-- name: tsne_items
-- the embedded, labelled items (an image's first view, a video's thumbnail) and how
-- many there are in all; at most $points of them, picked by a hash of (media_id, $seed)
WITH items AS (
    SELECT l.media_id, l.media_type, l.class AS cls, m.path, m.thumbnail_path,
           coalesce(i.embedding, v.thumbnail) AS v
    FROM labels l JOIN media m USING (media_id)
    LEFT JOIN embeddings_image i ON i.media_id = l.media_id AND i.view = 0
        AND i.backbone = $backbone
    LEFT JOIN embeddings_video v ON v.media_id = l.media_id AND v.backbone = $backbone
    WHERE l.k = $k AND l.scheme = $scheme AND coalesce(i.embedding, v.thumbnail) IS NOT NULL
)
SELECT *, (SELECT count(*) FROM items) AS total FROM items
ORDER BY hash(media_id, $seed) LIMIT $points;

-- name: pooled_metrics
-- the metrics rows pooling every profile (profile_id NULL)
SELECT * FROM metrics
WHERE k = $k AND scheme = $scheme AND backbone = $backbone AND features = 'embedding'
  AND protocol = $protocol AND profile_id IS NULL;

-- name: validation_predictions
SELECT model, label, proba FROM predictions
WHERE k = $k AND scheme = $scheme AND backbone = $backbone AND features = 'embedding'
  AND protocol = $protocol;

-- name: walk_forward_windows
-- each walk-forward window's accuracy (pooled over seeds and profiles) per model and k
SELECT model, k, cut_at, avg((pred = label)::DOUBLE) AS accuracy,
       count(DISTINCT media_id) AS n
FROM predictions
WHERE scheme = $scheme AND backbone = $backbone AND features = 'embedding'
  AND protocol = 'walk_forward'
GROUP BY ALL ORDER BY model, k, cut_at;

-- name: walk_forward_majority
-- the share of a window's images in their commonest class (guessing it is right that often)
SELECT k, cut_at, max(n) / sum(n) AS accuracy FROM (
    SELECT k, cut_at, label, count(DISTINCT media_id) AS n
    FROM predictions
    WHERE scheme = $scheme AND backbone = $backbone AND features = 'embedding'
      AND protocol = 'walk_forward' AND model = 'image'
    GROUP BY ALL)
GROUP BY ALL;

-- name: protocols
SELECT DISTINCT protocol FROM metrics;

-- name: label_ks
SELECT DISTINCT k FROM labels WHERE scheme = $scheme;
