-- Images to compare for near-duplicates: the view-0 embedding of every embedded image,
-- with what decides which duplicate is kept (single post beats carousel, then recency).
-- Inputs: views embeddings_image, media, posts. Parameters: $backbone.
SELECT m.profile_id, m.media_id, epoch_us(p.published_at) AS t,
       p.post_type <> 'carousel' AS single, e.embedding AS v
FROM embeddings_image e
JOIN media m USING (media_id)
JOIN posts p USING (post_id)
WHERE e.backbone = $backbone AND e.view = 0
ORDER BY m.profile_id, m.media_id
