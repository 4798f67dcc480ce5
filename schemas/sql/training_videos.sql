-- Training items for the video side: labelled, embedded, not removed as near-duplicates.
-- Inputs: views labels, embeddings_video, duplicates.
-- Parameters: $k, $labels ('rolling' | 'global'), $backbone.
SELECT l.media_id, e.sha256,
       CASE WHEN $labels = 'global' THEN l.class_global ELSE l.class_rolling END AS y,
       e.frames, e.pooled
FROM labels l
JOIN embeddings_video e USING (media_id)
WHERE l.k = $k
  AND e.backbone = $backbone
  AND l.media_id NOT IN (
      SELECT media_id FROM duplicates WHERE NOT kept AND backbone = $backbone)
ORDER BY l.media_id
