-- Training items for the image side: labelled, embedded, not excluded (never embedded),
-- not removed as a near-duplicate; all views of each image, view 0 first.
-- Inputs: views labels, embeddings_image, duplicates.
-- Only rows of the learnt label scheme that have a class.
-- Parameters: $k, $scheme, $backbone.
SELECT l.profile_id, l.media_id, any_value(e.sha256) AS sha256,
       l.class AS y,
       list(e.embedding ORDER BY e.view) AS views
FROM labels l
JOIN embeddings_image e USING (media_id)
WHERE l.k = $k AND l.scheme = $scheme AND l.class IS NOT NULL
  AND e.backbone = $backbone
  AND l.media_id NOT IN (
      SELECT media_id FROM duplicates WHERE NOT kept AND backbone = $backbone)
GROUP BY l.profile_id, l.media_id, y
ORDER BY l.profile_id, l.media_id
