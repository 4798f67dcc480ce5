-- The images Grad-CAM explains (popray/explain.py), besides scored_images.sql.

-- name: class_samples
-- the labelled images of one profile, scheme and k, to draw each class's samples from
SELECT l.media_id, l.class AS label, m.path FROM labels l
JOIN media m USING (media_id)
WHERE l.k = $k AND l.scheme = $scheme AND l.profile_id = $profile AND l.media_type = 'image'
  AND l.class IS NOT NULL
ORDER BY l.media_id;
