-- Training items for the image side: labelled, embedded, not excluded (never embedded),
-- not removed as a near-duplicate; all views of each image, view 0 first.
-- Inputs: views labels, embeddings_image, duplicates.
-- Parameters: $k, $labels ('rolling' | 'global'), $backbone.
SELECT l.media_id, any_value(e.sha256) AS sha256,
       CASE WHEN $labels = 'global' THEN l.class_global ELSE l.class_rolling END AS y,
       list(e.embedding ORDER BY e.view) AS views
FROM labels l
JOIN embeddings_image e USING (media_id)
WHERE l.k = $k
  AND e.backbone = $backbone
  AND l.media_id NOT IN (
      SELECT media_id FROM duplicates WHERE NOT kept AND backbone = $backbone)
GROUP BY l.media_id, y
ORDER BY l.media_id
