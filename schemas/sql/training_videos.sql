-- Training items for the video side: labelled, embedded, not removed as near-duplicates.
-- Inputs: views labels, embeddings_video, duplicates.
-- Only rows of the learnt label scheme that have a class.
-- Parameters: $k, $scheme, $backbone.
SELECT l.profile_id, l.media_id, e.sha256,
       l.class AS y,
       e.frames, e.pooled
FROM labels l
JOIN embeddings_video e USING (media_id)
WHERE l.k = $k AND l.scheme = $scheme AND l.class IS NOT NULL
  AND e.backbone = $backbone
  AND l.media_id NOT IN (
      SELECT media_id FROM duplicates WHERE NOT kept AND backbone = $backbone)
ORDER BY l.profile_id, l.media_id
