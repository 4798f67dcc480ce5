-- Videos to compare for near-duplicates: the thumbnail embedding, length and frame rate.
-- Inputs: views embeddings_video, media, posts. Parameters: $backbone.
SELECT m.profile_id, m.media_id, epoch_us(p.published_at) AS t,
       p.post_type <> 'carousel' AS single, e.thumbnail AS v, e.duration_s, e.fps
FROM embeddings_video e
JOIN media m USING (media_id)
JOIN posts p USING (post_id)
WHERE e.backbone = $backbone
ORDER BY m.profile_id, m.media_id
