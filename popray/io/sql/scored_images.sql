-- One profile's validated images ranked by their out-of-fold score: the image model's
-- expected class (sum of p_c * c over the classes), mean over seeds, from the paper's
-- stratified folds, over k - 1 (0 = surely the least popular class, 1 = surely the most).
-- The report's "what works" shows the highest and the lowest (popray explain).
-- Inputs: views predictions, media. Parameters: $profile, $scheme, $backbone, $k.
SELECT p.media_id, any_value(p.label) AS label, any_value(m.path) AS path,
       avg(list_sum(list_transform(p.proba, lambda x, i: x * (i - 1))))::DOUBLE / ($k - 1)
           AS score
FROM predictions p
JOIN media m USING (media_id)
WHERE p.profile_id = $profile AND p.scheme = $scheme AND p.backbone = $backbone
  AND p.k = $k AND p.model = 'image' AND p.features = 'embedding'
  AND p.protocol = 'stratified_kfold'
GROUP BY p.media_id
ORDER BY score DESC, p.media_id
