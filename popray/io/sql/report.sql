-- What the HTML report (popray/report.py) reads, besides the run summary (summary.sql).

-- name: metrics
-- every validation row, the pooled and the per-profile ones
SELECT * FROM metrics ORDER BY k;

-- name: cross_profile
SELECT * FROM cross_profile;

-- name: heatmaps
-- the Grad-CAM heatmaps of the class samples and the --media files, by profile and class
SELECT * FROM explanations
WHERE path IS NOT NULL AND picked IN ('class_sample', 'file')
ORDER BY profile_id, label NULLS LAST, media_id;

-- name: explanations
-- every explained image, the profile's highest-scored first
SELECT * FROM explanations ORDER BY profile_id, score DESC;

-- name: ranked_candidates
-- the latest `popray predict` ranking, files that could not be scored last
SELECT * FROM predictions_new ORDER BY rank NULLS LAST;
